import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, posix, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { formatRuleProblems, loadRules } from "../../rules/load.js";

/*
 * citywatch stands on its own: a city that installs it gets every fact it relies on in its own
 * docs (docs/standards.md, docs/hj212.md, docs/protocol.md …). No file may point at the team's
 * workspace outside the repository (its notes on standards, design, protocol and style), since
 * evidence or documentation that cites a file the reader cannot see is worthless. And every
 * relative link of the docs and the README must lead to a file in the repository.
 */

const ROOT = new URL("../../", import.meta.url).pathname;

/*
 * The needles are built from pieces so that this file does not match itself. Names of the
 * workspace notes are matched case-sensitively: docs/standards.md and docs/hj212.md are the
 * project's own pages and may be named.
 */
const MD = ".md";
const WORKSPACE_NOTES = ["STANDARDS", "DESIGN", "HJ212", "STYLE"].map((name) => name + MD);
const SHARED = "shared" + "/";
const WORKSPACE_PATHS = [".." + "/" + SHARED, "/work/" + SHARED];
/** The shared folder as the start of a path (not a folder inside the repository, `a/x/`). */
const SHARED_AS_ROOT = new RegExp(String.raw`(?<![\w.$@/-])` + SHARED);

interface Mention {
  readonly line: number;
  readonly needle: string;
  readonly text: string;
}

/** Every line of `text` that points at the workspace, with what it matched. */
function workspaceMentions(text: string): Mention[] {
  const out: Mention[] = [];
  text.split("\n").forEach((line, i) => {
    const found = [...WORKSPACE_NOTES, ...WORKSPACE_PATHS].filter((n) => line.includes(n));
    if (found.length === 0 && SHARED_AS_ROOT.test(line)) found.push(SHARED);
    for (const needle of found) out.push({ line: i + 1, needle, text: line.trim().slice(0, 160) });
  });
  return out;
}

/** The relative link targets of a markdown text (outside fenced code), without their anchors. */
function relativeLinks(markdown: string): Array<{ line: number; target: string }> {
  const out: Array<{ line: number; target: string }> = [];
  let fenced = false;
  markdown.split("\n").forEach((line, i) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return;
    }
    if (fenced) return;
    const prose = line.replace(/`[^`]*`/g, "");
    const links = [
      ...[...prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]),
      ...[...prose.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/g)].map((m) => m[1]),
    ];
    for (const link of links) {
      if (link === undefined || link.startsWith("#")) continue;
      if (/^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith("//")) continue; // http:, mailto:
      const target = decodeURIComponent(link.replace(/[#?].*$/, ""));
      if (target !== "") out.push({ line: i + 1, target });
    }
  });
  return out;
}

/** Links of `markdown` (a file at `file`, repository-relative) whose target does not exist. */
function brokenLinks(
  markdown: string,
  file: string,
  exists: (repoPath: string) => boolean,
): string[] {
  return relativeLinks(markdown)
    .map(({ line, target }) => ({
      line,
      target,
      resolved: target.startsWith("/")
        ? posix.normalize(target.slice(1))
        : posix.normalize(posix.join(posix.dirname(file), target)),
    }))
    .filter((l) => l.resolved.startsWith("../") || !exists(l.resolved))
    .map((l) => `${file}:${l.line}: ${l.target}`);
}

/** The repository's files: tracked, plus new ones not ignored; a walk when git is unavailable. */
function repositoryFiles(): string[] {
  try {
    const listed = execFileSync(
      "git",
      ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
      { cwd: ROOT, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
    );
    return [...new Set(listed.split("\0").filter((f) => f !== ""))];
  } catch {
    const out: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir)) {
        if (entry === "node_modules" || entry === ".git" || entry === "data") continue;
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path);
        else out.push(relative(ROOT, path));
      }
    };
    walk(ROOT);
    return out;
  }
}

/** A file's text, or undefined when it is gone (deleted, not yet committed) or binary. */
function textOf(file: string): string | undefined {
  const path = join(ROOT, file);
  if (!existsSync(path) || !statSync(path).isFile()) return undefined;
  const bytes = readFileSync(path);
  if (bytes.includes(0)) return undefined;
  return bytes.toString("utf8");
}

describe("the matchers", () => {
  it("find the workspace's notes and paths, and leave the project's own docs alone", () => {
    const mentioned = (text: string) => workspaceMentions(text).map((m) => m.needle);
    expect(mentioned("see " + "STANDARDS" + MD + ", Noise")).toEqual(["STANDARDS" + MD]);
    expect(mentioned("(DESIGN" + MD + ' "Delivery guarantee")')).toEqual(["DESIGN" + MD]);
    expect(mentioned("frames (HJ212" + MD + ")")).toEqual(["HJ212" + MD]);
    expect(mentioned("STYLE" + MD + ", Tooling")).toEqual(["STYLE" + MD]);
    expect(mentioned("in `../" + SHARED + "x`")).toEqual([".." + "/" + SHARED]);
    expect(mentioned("built from `" + SHARED + "S.md`")).toEqual([SHARED]);
    expect(mentioned("read /work/" + SHARED + "x")).toEqual(["/work/" + SHARED]);
    expect(mentioned("docs/standards.md and docs/hj212.md, docs/protocol.md")).toEqual([]);
    expect(
      mentioned("tests/" + SHARED + "fixtures.ts, $share/group, shared subscriptions"),
    ).toEqual([]);
    expect(workspaceMentions("a\nb " + "STYLE" + MD)).toMatchObject([{ line: 2 }]);
  });

  it("find relative links that lead nowhere, and skip anchors, URLs and code", () => {
    const exists = (p: string) => ["docs/rules.md", "docs/standards.md", "README.md"].includes(p);
    const markdown = [
      "[rules](rules.md#fields) and [standards](./standards.md) and [top](#top)",
      "[readme](../README.md) [web](https://example.org/x.md) [mail](mailto:a@b.c)",
      "[gone](missing.md) and [out](../../outside.md)",
      "`[not a link](nowhere.md)`",
      "```",
      "[in code](nowhere.md)",
      "```",
      "[ref]: gone-too.md",
    ].join("\n");
    expect(brokenLinks(markdown, "docs/x.md", exists)).toEqual([
      "docs/x.md:3: missing.md",
      "docs/x.md:3: ../../outside.md",
      "docs/x.md:8: gone-too.md",
    ]);
  });
});

describe("citywatch stands on its own", () => {
  const files = repositoryFiles();

  it("lists the repository's files", () => {
    expect(files).toContain("package.json");
    expect(files).toContain("docs/standards.md");
    expect(files).toContain("docs/hj212.md");
  });

  it("no file points at the team's workspace (its notes or its shared folder)", () => {
    const found: string[] = [];
    for (const file of files) {
      const text = textOf(file);
      if (text === undefined) continue;
      for (const m of workspaceMentions(text)) found.push(`${file}:${m.line}: ${m.text}`);
    }
    expect(found).toEqual([]);
  });

  it("every relative link in docs/*.md and README.md leads to a file in the repository", () => {
    const markdown = files.filter((f) => f === "README.md" || /^docs\/[^/]+\.md$/.test(f));
    expect(markdown.length).toBeGreaterThan(5);
    const exists = (p: string) => existsSync(join(ROOT, p));
    const broken = markdown.flatMap((file) => {
      const text = textOf(file);
      return text === undefined ? [] : brokenLinks(text, file, exists);
    });
    expect(broken).toEqual([]);
  });

  it("docs/standards.md holds, word for word, every clause the default pack seals into evidence", () => {
    const loaded = loadRules();
    if (!loaded.ok) throw new Error(formatRuleProblems(loaded.problems));
    const rows = (textOf("docs/standards.md") ?? "")
      .split("\n")
      .filter((line) => line.startsWith("| `"))
      .map((line) => line.split("|").map((cell) => cell.trim()));
    const has = (label: string, standard: string, section: string) =>
      rows.some((r) => r[1] === label && r[2] === standard && r[3] === section);
    const missing: string[] = [];
    for (const { rule } of loaded.rules) {
      const { standard, section } = rule.clause;
      if (!has("`" + rule.id + "`", standard, section))
        missing.push(`${rule.id}: ${standard}, ${section}`);
      for (const row of rule.limits?.rows ?? []) {
        if (row.clause === undefined) continue;
        const when = Object.entries(row.when).map(([k, v]) => `${k} ${String(v)}`);
        const label = "`" + rule.id + "`, " + when.join(", ");
        if (!has(label, row.clause.standard, row.clause.section)) {
          missing.push(`${label}: ${row.clause.standard}, ${row.clause.section}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it("the standards and HJ 212 pages are linked from the docs that rely on them", () => {
    expect(textOf("docs/rules.md")).toContain("](standards.md");
    expect(textOf("docs/edge-drivers.md")).toContain("](hj212.md");
  });
});
