import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { stringify } from "yaml";

type Tree = Record<string, unknown>;

/** A valid enforcement rule on noise; tests patch one field to make it invalid. */
export const VALID_RULE: Tree = {
  id: "test.noise",
  version: 1,
  title: "Test rule",
  clause: { standard: "GB 3096-2008", section: "§5, Table 1" },
  confidence: "verified",
  taskKind: "enforcement",
  scope: { kinds: ["noise"] },
  subject: "device",
  condition: {
    type: "threshold",
    quantity: "LAeq",
    aggregate: "energy_mean",
    window: "10m",
    op: ">",
    raise: 60,
    clear: 55,
  },
};

function isTree(value: unknown): value is Tree {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `base` with `patch` merged in; a value of `undefined` deletes the key. */
export function patched(base: Tree, patch: Tree): Tree {
  const out: Tree = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const current = out[key];
    if (value === undefined) delete out[key];
    else out[key] = isTree(current) && isTree(value) ? patched(current, value) : value;
  }
  return out;
}

/** A rule file holding these rules (and file-level overrides). */
export function ruleFile(rules: readonly Tree[], overrides?: readonly Tree[]): string {
  return stringify(overrides === undefined ? { rules } : { rules, overrides });
}

/** The temporary directories ruleDirectory made, removed after the test file's tests. */
const made: string[] = [];
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory named `name` holding these files; returns its path. */
export function ruleDirectory(files: Readonly<Record<string, string>>, name = "rules"): string {
  const parent = mkdtempSync(join(tmpdir(), "cw-rules-"));
  made.push(parent);
  const dir = join(parent, name);
  mkdirSync(dir);
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  return dir;
}
