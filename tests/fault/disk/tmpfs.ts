import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import type { Provided } from "../../support/provide.js";

/*
 * A small file system for the full-disk tests: an 8 MiB tmpfs mounted by the test (it runs as
 * root here). Where mount is not permitted the suite is skipped with a line saying so, or fails
 * under CITYWATCH_REQUIRE_SERVICES=1 (requireService). The handle's url is the mount point.
 */
export async function mountTmpfs(): Promise<Provided> {
  const root = await makeTempDir("cw-disk-");
  const mountPoint = join(root, "small");
  mkdirSync(mountPoint);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint], {
      stdio: "pipe",
    });
  } catch (error) {
    await removeTempDir(root);
    return {
      ok: false,
      reason: `cannot mount an 8 MiB tmpfs (${(error as Error).message.split("\n")[0] ?? ""}); run as root or with CAP_SYS_ADMIN`,
    };
  }
  return {
    ok: true,
    service: {
      url: mountPoint,
      source: "local-binary",
      stop: async () => {
        execFileSync("umount", ["-l", mountPoint], { stdio: "pipe" });
        await removeTempDir(root);
      },
    },
  };
}

/** Fill the file system with a ballast file until it refuses more; returns its path. */
export function fill(dir: string): string {
  const file = join(dir, "ballast");
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(16 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    closeSync(fd);
  }
  return file;
}
