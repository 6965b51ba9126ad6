import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IngestState } from "../../../ingest/state.js";
import { makePrivate, secretsFileText, writeOwnerOnly } from "../../../registry/private-files.js";
import { RegistryStore } from "../../../registry/store.js";

/*
 * Issue #16 item 8: the data directory and its files (dead letters with raw payloads, evidence,
 * hashes, SQLite files) were world-readable, and the first start printed secrets to stdout.
 */

const mode = (path: string) => statSync(path).mode & 0o777;

describe("a private data directory", () => {
  let root: string;
  let umask: number;
  beforeEach(() => {
    umask = process.umask();
    process.umask(0o022); // what a shell usually gives: files 0644, directories 0755
    root = mkdtempSync(join(tmpdir(), "cw-private-"));
  });
  afterEach(() => {
    process.umask(umask);
    rmSync(root, { recursive: true, force: true });
  });

  it("tightens what an older version left open, and creates everything after owner-only", () => {
    const data = join(root, "data");
    mkdirSync(join(data, "evidence"), { recursive: true, mode: 0o755 });
    chmodSync(data, 0o755);
    writeFileSync(join(data, "evidence", "case-1.json"), "{}", { mode: 0o644 });
    writeFileSync(join(data, "ingest.db"), "", { mode: 0o664 });
    const changed = makePrivate(data);
    expect(changed.sort()).toEqual(
      [
        data,
        join(data, "evidence"),
        join(data, "evidence", "case-1.json"),
        join(data, "ingest.db"),
      ].sort(),
    );
    expect(mode(data)).toBe(0o700);
    expect(mode(join(data, "evidence"))).toBe(0o700);
    expect(mode(join(data, "evidence", "case-1.json"))).toBe(0o600);
    expect(mode(join(data, "ingest.db"))).toBe(0o600);
    // SQLite files created from now on, WAL and shared memory included, are owner-only.
    rmSync(join(data, "ingest.db"));
    const state = new IngestState(join(data, "ingest.db"));
    const registry = new RegistryStore(join(data, "registry.db"));
    for (const file of [
      "ingest.db",
      "ingest.db-wal",
      "registry.db",
      "registry.db-wal",
      "registry.db-shm",
    ])
      expect([file, mode(join(data, file))]).toEqual([file, 0o600]);
    mkdirSync(join(data, "later"));
    expect(mode(join(data, "later"))).toBe(0o700);
    state.close();
    registry.close();
    // Nothing left to tighten the second time.
    expect(makePrivate(data)).toEqual([]);
  });

  it("writes the secrets file 0600 even over a file that was readable by others", () => {
    const file = join(root, "first-start-secrets.txt");
    writeFileSync(file, "old", { mode: 0o644 });
    writeOwnerOnly(
      file,
      secretsFileText(
        [
          { id: "demo-noise-1", what: "noise", secret: "s3cr3t" },
          { id: "first-admin", what: "token:admin", secret: "cwt_abc" },
        ],
        Date.parse("2026-12-06T00:00:00Z"),
      ),
    );
    expect(mode(file)).toBe(0o600);
    const text = readFileSync(file, "utf8");
    expect(text).toMatch(/^demo-noise-1\s+noise\s+s3cr3t$/m);
    expect(text).toMatch(/^first-admin\s+token:admin\s+cwt_abc$/m);
    expect(text).not.toContain("old");
  });
});
