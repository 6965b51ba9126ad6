import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import type { Problem } from "../contracts/index.js";
import {
  FileOverride,
  overrideProblems,
  resolvedRuleProblems,
  Rule,
  type RuleOverride,
} from "../contracts/index.js";

/** The default rule pack shipped with citywatch (its sources: docs/standards.md). */
export const DEFAULT_PACK_DIR = fileURLToPath(new URL("./pack/", import.meta.url));

/** A problem in a rule file: which file, where in it (dotted path, and line/column when known), what. */
export interface RuleProblem extends Problem {
  /** The directory's label and the file name, e.g. `rules/noise.yaml`, `pack/water.yaml`. */
  readonly file: string;
  readonly line?: number;
  readonly column?: number;
}

/** A rule that loaded, with where it came from and a hash of its definition (for version checks). */
export interface LoadedRule {
  readonly rule: Rule;
  readonly file: string;
  /** Position in its file's `rules` list. */
  readonly index: number;
  /** sha256 of the rule as defined in its file (file-level overrides excluded). */
  readonly hash: string;
}

export type RuleLoad =
  | { readonly ok: true; readonly rules: readonly LoadedRule[] }
  | { readonly ok: false; readonly problems: readonly RuleProblem[] };

export interface RuleDirectory {
  readonly dir: string;
  /** Shown in problems; default: the directory's base name. */
  readonly label?: string;
}

export interface LoadRulesOptions {
  /** Directories of local rule files, loaded after the pack, in this order. */
  readonly directories?: readonly (string | RuleDirectory)[];
  /** Load the default pack first; default true. */
  readonly defaultPack?: boolean;
}

/** Problems one per line: `rules/noise.yaml: rules.2.condition.clear: … (line 14, column 9)`. */
export function formatRuleProblems(problems: readonly RuleProblem[]): string {
  const lines = problems.map((p) => {
    const where = p.line === undefined ? "" : ` (line ${p.line}, column ${p.column ?? 1})`;
    return `  - ${p.file}: ${p.path}: ${p.message}${where}`;
  });
  const n = problems.length;
  return `rules: ${n} problem${n === 1 ? "" : "s"}\n${lines.join("\n")}`;
}

/** One rule file after parsing: the rules and overrides that are valid, and every problem found. */
export interface ParsedRuleFile {
  readonly file: string;
  readonly rules: ReadonlyArray<{ readonly rule: Rule; readonly index: number }>;
  readonly overrides: ReadonlyArray<{ readonly override: FileOverride; readonly index: number }>;
  /** `rules[i].id` as written, valid rule or not, for duplicate detection. */
  readonly ids: ReadonlyArray<{ readonly id: string; readonly index: number }>;
  readonly problems: readonly RuleProblem[];
  /** Line and column of a dotted path in the file, as near as the YAML allows. */
  readonly locate: (path: readonly PropertyKey[]) => { line: number; column: number } | undefined;
}

const FileShape = z.strictObject({
  rules: z.array(z.unknown(), { error: "rules must be a list" }).default([]),
  overrides: z.array(z.unknown(), { error: "overrides must be a list" }).default([]),
});

function dotted(path: readonly PropertyKey[]): string {
  return path.length === 0 ? "(root)" : path.map(String).join(".");
}

function locator(doc: Document, lines: LineCounter) {
  return (path: readonly PropertyKey[]): { line: number; column: number } | undefined => {
    let node: unknown = doc.contents;
    let offset: number | undefined = (node as { range?: [number] } | null)?.range?.[0];
    for (const key of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
        if (pair === undefined) break;
        offset = isScalar(pair.key) ? pair.key.range?.[0] : offset;
        node = pair.value;
      } else if (isSeq(node) && typeof key === "number") {
        const item: unknown = node.items[key];
        if (item === undefined) break;
        offset = (item as { range?: [number] }).range?.[0] ?? offset;
        node = item;
      } else break;
    }
    if (offset === undefined) return undefined;
    const pos = lines.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
}

/**
 * Parse one rule file's text. Pure (no I/O): `file` only names the file in problems. Every rule
 * and override is validated on its own, so one bad rule does not hide the others' problems.
 */
export function parseRuleText(file: string, text: string): ParsedRuleFile {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const locate = locator(doc, lines);
  const empty = { file, rules: [], overrides: [], ids: [], locate };
  if (doc.errors.length > 0) {
    return {
      ...empty,
      problems: doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return {
          file,
          path: pos ? `line ${pos.line}, column ${pos.col}` : "(syntax)",
          message: (e.message.split("\n")[0] ?? e.message).replace(
            / at line \d+, column \d+:?$/,
            "",
          ),
          ...(pos ? { line: pos.line, column: pos.col } : {}),
        };
      }),
    };
  }
  const problems: RuleProblem[] = [];
  const problem = (path: readonly PropertyKey[], message: string, locatePath = path) => {
    const pos = locate(locatePath);
    problems.push({
      file,
      path: dotted(path),
      message,
      ...(pos ? { line: pos.line, column: pos.column } : {}),
    });
  };
  const report = (error: z.ZodError, prefix: readonly PropertyKey[]) => {
    for (const issue of error.issues) {
      const path = [...prefix, ...issue.path];
      // Point at the unknown key itself, not at the object holding it.
      const first = issue.code === "unrecognized_keys" ? issue.keys[0] : undefined;
      problem(path, issue.message, first === undefined ? path : [...path, first]);
    }
  };

  const tree: unknown = doc.toJS() ?? {};
  const shape = FileShape.safeParse(tree);
  if (!shape.success) {
    if (typeof tree !== "object" || Array.isArray(tree)) {
      problem([], "a rule file must be a mapping with rules: and/or overrides:");
    } else report(shape.error, []);
    return { ...empty, problems };
  }
  const rules: Array<{ rule: Rule; index: number }> = [];
  const ids: Array<{ id: string; index: number }> = [];
  shape.data.rules.forEach((raw, index) => {
    const id = (raw as { id?: unknown } | null)?.id;
    if (typeof id === "string") ids.push({ id, index });
    const parsed = Rule.safeParse(raw);
    if (parsed.success) rules.push({ rule: parsed.data, index });
    else report(parsed.error, ["rules", index]);
  });
  const overrides: Array<{ override: FileOverride; index: number }> = [];
  shape.data.overrides.forEach((raw, index) => {
    const parsed = FileOverride.safeParse(raw);
    if (parsed.success) overrides.push({ override: parsed.data, index });
    else report(parsed.error, ["overrides", index]);
  });
  return { file, rules, overrides, ids, problems, locate };
}

/** JSON with sorted keys, so the hash does not depend on key order in the file. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** sha256 of a rule's definition. */
export function ruleHash(rule: Rule): string {
  return createHash("sha256").update(canonical(rule)).digest("hex");
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Read every `*.yaml`, `*.yml` and `*.json` file of a directory (YAML parses JSON), sorted by name. */
function readDirectory(source: RuleDirectory): {
  files: Array<{ file: string; text: string }>;
  problems: RuleProblem[];
} {
  const label = source.label ?? basename(source.dir);
  let names: string[];
  try {
    names = readdirSync(source.dir)
      .filter((n) => /\.(ya?ml|json)$/.test(n))
      .sort();
  } catch (error) {
    return {
      files: [],
      problems: [
        {
          file: label,
          path: "(directory)",
          message: `cannot read ${source.dir}: ${(error as Error).message}`,
        },
      ],
    };
  }
  const files: Array<{ file: string; text: string }> = [];
  const problems: RuleProblem[] = [];
  for (const name of names) {
    const file = `${label}/${name}`;
    try {
      files.push({ file, text: readFileSync(`${source.dir}/${name}`, "utf8") });
    } catch (error) {
      problems.push({ file, path: "(file)", message: `cannot read: ${(error as Error).message}` });
    }
  }
  return { files, problems };
}

/**
 * Check rule files together: duplicate ids across files, overrides aimed at rules of any file.
 * Returns the rules with every override (in-rule and file-level, in load order) attached and
 * stamped with its source file, or every problem of every file.
 */
export function assembleRules(files: readonly ParsedRuleFile[]): RuleLoad {
  const problems: RuleProblem[] = files.flatMap((f) => f.problems);
  const at = (f: ParsedRuleFile, path: readonly PropertyKey[], message: string) => {
    const pos = f.locate(path);
    problems.push({
      file: f.file,
      path: dotted(path),
      message,
      ...(pos ? { line: pos.line, column: pos.column } : {}),
    });
  };

  const firstDefinition = new Map<string, { file: string; index: number }>();
  for (const f of files) {
    for (const { id, index } of f.ids) {
      const first = firstDefinition.get(id);
      if (first === undefined) firstDefinition.set(id, { file: f.file, index });
      else {
        at(
          f,
          ["rules", index, "id"],
          `duplicate rule id ${id}; first defined in ${first.file} at rules.${first.index}`,
        );
      }
    }
  }

  // Only the first definition of an id is kept; its duplicates were reported above.
  const byId = new Map<string, { rule: Rule; file: string; index: number; hash: string }>();
  for (const f of files) {
    for (const { rule, index } of f.rules) {
      const first = firstDefinition.get(rule.id);
      if (first?.file !== f.file || first.index !== index) continue;
      const overrides = rule.overrides.map((o) => ({ ...o, source: f.file }));
      byId.set(rule.id, {
        rule: { ...rule, overrides },
        file: f.file,
        index,
        hash: ruleHash(rule),
      });
    }
  }

  for (const f of files) {
    for (const { override, index } of f.overrides) {
      const path = ["overrides", index];
      const target = byId.get(override.rule);
      if (target === undefined) {
        if (!firstDefinition.has(override.rule)) {
          at(f, [...path, "rule"], `no rule with id ${override.rule} in any loaded file`);
        }
        continue; // the target exists but is invalid: its own problems say why
      }
      const { rule: _target, ...fields } = override;
      const added: RuleOverride = { ...fields, source: f.file };
      const before = overrideProblems(target.rule, added);
      for (const p of before) at(f, [...path, ...p.path], `rule ${override.rule}: ${p.message}`);
      if (before.length > 0) continue;
      const merged: Rule = { ...target.rule, overrides: [...target.rule.overrides, added] };
      const known = new Set(resolvedRuleProblems(target.rule).map((p) => dotted(p.path)));
      for (const p of resolvedRuleProblems(merged)) {
        if (known.has(dotted(p.path))) continue;
        at(f, path, `with this override, rule ${override.rule} ${dotted(p.path)}: ${p.message}`);
      }
      target.rule = merged;
    }
  }

  if (problems.length > 0) return { ok: false, problems };
  const rules = [...byId.values()].map((r) => deepFreeze({ ...r }));
  return { ok: true, rules };
}

/**
 * Load the default pack and every `*.yaml` file of the given directories: each validated, ids
 * unique across files, overrides attached to their rules. Either all the rules or all the
 * problems, each named by file and path.
 */
export function loadRules(options: LoadRulesOptions = {}): RuleLoad {
  const sources: RuleDirectory[] = [
    ...(options.defaultPack === false ? [] : [{ dir: DEFAULT_PACK_DIR, label: "pack" }]),
    ...(options.directories ?? []).map((d) => (typeof d === "string" ? { dir: d } : d)),
  ];
  const problems: RuleProblem[] = [];
  const parsed: ParsedRuleFile[] = [];
  for (const source of sources) {
    const read = readDirectory(source);
    problems.push(...read.problems);
    for (const { file, text } of read.files) parsed.push(parseRuleText(file, text));
  }
  const assembled = assembleRules(parsed);
  if (problems.length === 0) return assembled;
  return { ok: false, problems: [...problems, ...(assembled.ok ? [] : assembled.problems)] };
}
