import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { ConfigError, type Problem, problemsOf } from "./problems.js";

type Tree = Record<string, unknown>;

function isTree(value: unknown): value is Tree {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Deep merge of plain objects; arrays and scalars from `over` replace those in `base`. */
export function mergeTrees(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isTree(current) && isTree(value) ? mergeTrees(current, value) : value;
  }
  return out;
}

function setPath(tree: Tree, path: readonly string[], value: unknown): void {
  let node = tree;
  path.forEach((key, i) => {
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (isTree(next)) {
      node = next;
    } else {
      const created: Tree = {};
      node[key] = created;
      node = created;
    }
  });
}

/** Read a YAML (or JSON) configuration file; syntax errors become problems with line and column. */
export function readConfigFile(file: string): { tree: Tree; problems: Problem[] } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    return {
      tree: {},
      problems: [{ path: "(file)", message: `cannot read ${file}: ${(error as Error).message}` }],
    };
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      tree: {},
      problems: doc.errors.map((e) => ({
        path: e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "(syntax)",
        message: e.message.split("\n")[0] ?? e.message,
      })),
    };
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return { tree: {}, problems: [] };
  if (!isTree(value)) {
    return {
      tree: {},
      problems: [{ path: "(root)", message: "the file must hold a mapping (key: value)" }],
    };
  }
  return { tree: value, problems: [] };
}

/** Configuration values named by environment variables, as a tree of strings. */
export function envTree(
  env: Readonly<Record<string, string | undefined>>,
  mapping: Readonly<Record<string, readonly string[]>>,
): Tree {
  const tree: Tree = {};
  for (const [name, path] of Object.entries(mapping)) {
    const value = env[name];
    if (value !== undefined && value !== "") setPath(tree, path, value);
  }
  return tree;
}

export interface LoadOptions {
  /** YAML/JSON file; optional. */
  readonly file?: string | undefined;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly envMapping?: Readonly<Record<string, readonly string[]>>;
  /** Values from command-line flags, as a partial tree; they win over the file and the environment. */
  readonly overrides?: Tree;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/**
 * Load a component's configuration once: defaults < file < environment < flags, validated by the
 * component's zod schema. On failure every problem is listed (ConfigError), not just the first.
 * The result is deeply frozen.
 */
export function loadConfig<S extends z.ZodType>(schema: S, options: LoadOptions = {}): z.infer<S> {
  const source = options.file ?? "configuration";
  let tree: Tree = {};
  if (options.file !== undefined) {
    const read = readConfigFile(options.file);
    if (read.problems.length > 0) throw new ConfigError(options.file, read.problems);
    tree = read.tree;
  }
  if (options.env !== undefined && options.envMapping !== undefined) {
    tree = mergeTrees(tree, envTree(options.env, options.envMapping));
  }
  if (options.overrides !== undefined) tree = mergeTrees(tree, options.overrides);
  const parsed = schema.safeParse(tree);
  if (!parsed.success) throw new ConfigError(source, problemsOf(parsed.error));
  return deepFreeze(parsed.data);
}
