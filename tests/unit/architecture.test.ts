import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Components import contracts/ and never each other (STYLE.md, Layout); only the composition root
 * (cli/) wires them together. contracts/ imports no component.
 */
const ROOT = new URL("../../", import.meta.url).pathname;
const COMPONENTS = ["broker", "registry", "ingest", "edge", "simulators", "dashboards"];

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
    else if (/\.(ts|js)$/.test(entry)) out.push(path);
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

function topFolderOf(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const target = relative(ROOT, join(file, "..", specifier));
  return target.split("/")[0];
}

describe("architecture", () => {
  for (const component of COMPONENTS) {
    it(`${component}/ imports only contracts/ and itself`, () => {
      const violations = sources(join(ROOT, component)).flatMap((file) =>
        importsOf(file)
          .map((spec) => ({ spec, top: topFolderOf(file, spec) }))
          .filter(({ top }) => top !== undefined && top !== component && top !== "contracts")
          .map(({ spec }) => `${relative(ROOT, file)} imports ${spec}`),
      );
      expect(violations).toEqual([]);
    });
  }

  it("contracts/ imports no component", () => {
    const violations = sources(join(ROOT, "contracts")).flatMap((file) =>
      importsOf(file)
        .filter(
          (spec) =>
            topFolderOf(file, spec) !== undefined && topFolderOf(file, spec) !== "contracts",
        )
        .map((spec) => `${relative(ROOT, file)} imports ${spec}`),
    );
    expect(violations).toEqual([]);
  });

  it("the check sees real imports", () => {
    expect(importsOf(join(ROOT, "broker/app.ts"))).toContain("../contracts/index.js");
  });
});
