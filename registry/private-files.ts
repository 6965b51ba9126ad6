import { chmodSync, lstatSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

/*
 * The data directory holds what must stay with its owner: the registry's secret hashes, the API
 * token hashes, dead letters with devices' raw payloads, evidence packages and their hashes, the
 * SQLite files. A process that runs a component makes it private before it opens anything:
 * files it creates are 0600 and directories 0700 (umask 077), and what an older version left
 * readable to others is tightened to the same modes.
 */

import { PRIVATE_DIR } from "../infra/owner-only.js";

export { PRIVATE_DIR, PRIVATE_FILE, writeOwnerOnly } from "../infra/owner-only.js";

/** Where the first start writes the secrets it issued (in the data directory). */
export const FIRST_START_SECRETS = "first-start-secrets.txt";

/**
 * Make `dataDir` private: set the process umask to 077 (every file and directory created from
 * now on, by SQLite included, is owner-only), create the directory 0700, and tighten what is in
 * it (at most `depth` levels; symbolic links are left alone). Returns the paths whose modes it
 * changed, for the start log.
 */
export function makePrivate(dataDir: string, depth = 4): string[] {
  process.umask(0o077);
  mkdirSync(dataDir, { recursive: true, mode: PRIVATE_DIR });
  const changed: string[] = [];
  const tighten = (path: string, level: number) => {
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (stat === undefined || stat.isSymbolicLink()) return;
    // The group's and others' bits are taken away; the owner's stay as they are.
    if ((stat.mode & 0o077) !== 0 && (stat.isDirectory() || stat.isFile())) {
      chmodSync(path, stat.mode & 0o700);
      changed.push(path);
    }
    if (stat.isDirectory() && level < depth)
      for (const entry of readdirSync(path)) tighten(join(path, entry), level + 1);
  };
  tighten(dataDir, 0);
  return changed;
}

/** One issued secret: a device, a service account or an API token. */
export interface IssuedSecret {
  readonly id: string;
  /** The device's kind, `service:<role>` or `token:<role>`. */
  readonly what: string;
  readonly secret: string;
}

/**
 * The first-start secrets file: one secret a line as `id what secret` (so
 * `awk '$1=="demo-noise-1"{print $3}' file` reads one), under a header saying what to do.
 */
export function secretsFileText(issued: readonly IssuedSecret[], nowMs: number): string {
  return [
    `# citywatch first start, ${new Date(nowMs).toISOString()}: secrets issued at this start, shown nowhere else.`,
    "# Copy them where they belong (the devices, a password manager), then delete this file.",
    "# id                     what                 secret",
    ...issued.map((s) => `${s.id.padEnd(24)} ${s.what.padEnd(20)} ${s.secret}`),
    "",
  ].join("\n");
}
