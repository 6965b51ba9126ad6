import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, expect, it } from "vitest";

/*
 * The import rule. Components import contracts/ (what crosses a boundary) and infra/ (shared
 * infrastructure: SQLite files, backoff, metrics) and never each other; only the composition root
 * (cli/) wires them together, so the flow ingest → rules → tasks → notify is visible in one place.
 * contracts/ and infra/ import no component, and infra/ imports no contracts/ either.
 *
 * And no circles: at every depth of the tree, the folders (each with the files directly in it)
 * form an acyclic graph of imports, so a folder and its subfolder never import each other.
 */
const ROOT = new URL("../../", import.meta.url).pathname;
const COMPONENTS = [
  "broker",
  "registry",
  "ingest",
  "rules",
  "tasks",
  "edge",
  "simulators",
  "dashboards",
] as const;
/** Folders every component may import. */
const SHARED = ["contracts", "infra"] as const;
/** Source folders checked for circles (tests and benches are clients, not part of the layering). */
const SOURCE_ROOTS = [...COMPONENTS, ...SHARED, "cli"];

function sources(dir: string): string[] {
  const out: string[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out; // a component that does not exist yet has nothing to check
  }
  for (const entry of entries) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (/\.(ts|tsx|js)$/.test(entry)) out.push(path);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [
    ...text.matchAll(
      /(?:import|export)\s[^'"]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g,
    ),
  ].map((m) => m[1] ?? m[2] ?? "");
}

/** The repository-relative file a relative specifier names; undefined for a package. */
function targetOf(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  return relative(ROOT, join(file, "..", specifier));
}

const topFolderOf = (path: string) => path.split("/")[0];

/** The folder of `file` cut to `depth` segments (a file higher up keeps its own folder). */
function folderAt(file: string, depth: number): string {
  return dirname(file).split("/").slice(0, depth).join("/");
}

/** Every import edge between source files, repository-relative. */
function importEdges(): Array<{ from: string; to: string }> {
  return SOURCE_ROOTS.flatMap((root) => sources(join(ROOT, root))).flatMap((path) => {
    const from = relative(ROOT, path);
    return importsOf(path)
      .map((spec) => targetOf(path, spec))
      .filter((to): to is string => to !== undefined)
      .map((to) => ({ from, to }));
  });
}

/** The circles of a directed graph, each as a path that returns to its start (Tarjan's SCCs). */
export function circlesOf(edges: ReadonlyArray<readonly [string, string]>): string[][] {
  const next = new Map<string, Set<string>>();
  for (const [a, b] of edges) {
    if (a === b) continue;
    if (!next.has(a)) next.set(a, new Set());
    next.get(a)?.add(b);
    if (!next.has(b)) next.set(b, new Set());
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter);
    counter += 1;
    stack.push(node);
    onStack.add(node);
    for (const to of next.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node) ?? 0, low.get(to) ?? 0));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node) ?? 0, index.get(to) ?? 0));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string | undefined;
      do {
        member = stack.pop();
        if (member === undefined) break;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const node of [...next.keys()].sort()) if (!index.has(node)) visit(node);
  return components;
}

describe("architecture", () => {
  const edges = importEdges();

  for (const component of COMPONENTS) {
    it(`${component}/ imports only ${SHARED.join("/, ")}/ and itself`, () => {
      const violations = edges
        .filter(({ from }) => topFolderOf(from) === component)
        .filter(({ to }) => {
          const top = topFolderOf(to);
          return top !== component && !(SHARED as readonly string[]).includes(top ?? "");
        })
        .map(({ from, to }) => `${from} imports ${to}`);
      expect(violations).toEqual([]);
    });
  }

  it("contracts/ imports no component, infra/ neither (nor contracts/)", () => {
    const violations = edges
      .filter(({ from, to }) => {
        const [a, b] = [topFolderOf(from), topFolderOf(to)];
        if (a === "contracts") return b !== "contracts";
        if (a === "infra") return b !== "infra";
        return false;
      })
      .map(({ from, to }) => `${from} imports ${to}`);
    expect(violations).toEqual([]);
  });

  it("no circle of imports between folders at any depth", () => {
    const deepest = Math.max(...edges.map(({ from }) => dirname(from).split("/").length));
    const circles: string[] = [];
    for (let depth = 1; depth <= deepest; depth += 1) {
      const folderEdges = edges.map(
        ({ from, to }) => [folderAt(from, depth), folderAt(to, depth)] as const,
      );
      for (const circle of circlesOf(folderEdges)) {
        const witnesses = edges
          .filter(
            ({ from, to }) =>
              circle.includes(folderAt(from, depth)) &&
              circle.includes(folderAt(to, depth)) &&
              folderAt(from, depth) !== folderAt(to, depth),
          )
          .map(({ from, to }) => `${from} -> ${to}`);
        circles.push(`${circle.join(" <-> ")}: ${witnesses.join(", ")}`);
      }
    }
    expect([...new Set(circles)]).toEqual([]);
  });

  it("the checks see real imports and real circles", () => {
    expect(importsOf(join(ROOT, "broker/app.ts"))).toContain("../contracts/index.js");
    expect(
      circlesOf([
        ["a", "b"],
        ["b", "c"],
        ["c", "a"],
        ["c", "d"],
      ]),
    ).toEqual([["a", "b", "c"]]);
    expect(
      circlesOf([
        ["a", "b"],
        ["b", "c"],
        ["a", "c"],
      ]),
    ).toEqual([]);
    expect(folderAt("tasks/notify/outbox.ts", 1)).toBe("tasks");
    expect(folderAt("tasks/notify/outbox.ts", 2)).toBe("tasks/notify");
    expect(folderAt("tasks/store.ts", 2)).toBe("tasks");
  });
});
