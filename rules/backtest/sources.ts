import { readdirSync, readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import type { IngestConfig } from "../../contracts/index.js";
import type { BacktestRuleFile } from "../../contracts/model/backtest.js";
import {
  assembleRules,
  DEFAULT_PACK_DIR,
  loadRules,
  type ParsedRuleFile,
  parseRuleText,
  type RuleLoad,
} from "../load.js";
import type { RuleSource } from "./index.js";

/*
 * Where a backtest's rules come from. A directory, like the ingest's: loaded after the default
 * pack unless told not to, so local rules and overrides of pack rules mean what they mean live.
 * The rules the configuration names. Or rule files sent to the API as text, loaded the same way.
 * Each source says where it comes from as data too (its spec), so a worker thread of a backtest
 * split into parts loads the same rules (ruleSourceOf).
 */

/** A rule source as data: what a worker thread needs to load the same rules. */
export type RuleSourceSpec =
  | { readonly type: "directory"; readonly dir: string; readonly defaultPack: boolean }
  | { readonly type: "configured"; readonly config: IngestConfig["rules"] }
  | {
      readonly type: "inline";
      readonly label: string;
      readonly files: readonly BacktestRuleFile[];
      readonly defaultPack: boolean;
    }
  | { readonly type: "pack" };

/** The source a spec describes. */
export function ruleSourceOf(spec: RuleSourceSpec): RuleSource {
  switch (spec.type) {
    case "directory":
      return directoryRules(spec.dir, spec.defaultPack);
    case "configured":
      return configuredRules(spec.config);
    case "inline":
      return inlineRules(spec.label, spec.files, spec.defaultPack);
    case "pack":
      return packRules();
  }
}

/** A directory of rule files, after the default pack when `defaultPack`. */
export function directoryRules(dir: string, defaultPack: boolean): RuleSource {
  const path = resolve(dir);
  return {
    label: `${defaultPack ? "pack + " : ""}${dir}`,
    load: () => loadRules({ defaultPack, directories: [{ dir: path, label: basename(path) }] }),
    spec: { type: "directory", dir: path, defaultPack },
  };
}

/** The rule files `ingest.rules` names, read now. */
export function configuredRules(config: IngestConfig["rules"]): RuleSource {
  return {
    label: "configured rules",
    load: () => loadRules({ defaultPack: config.defaultPack, directories: config.directories }),
    spec: { type: "configured", config },
  };
}

/** The default pack alone. */
export function packRules(): RuleSource {
  return { label: "pack", load: () => loadRules(), spec: { type: "pack" } };
}

/** The default pack's files, parsed. */
function packFiles(): ParsedRuleFile[] {
  return readdirSync(DEFAULT_PACK_DIR)
    .filter((name) => /\.(ya?ml|json)$/.test(name))
    .sort()
    .map((name) =>
      parseRuleText(`pack/${name}`, readFileSync(`${DEFAULT_PACK_DIR}/${name}`, "utf8")),
    );
}

/** Rule files given as text (named `<label>/<name>` in problems), after the pack when `defaultPack`. */
export function inlineRules(
  label: string,
  files: readonly BacktestRuleFile[],
  defaultPack: boolean,
): RuleSource {
  const sorted = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    label: `${defaultPack ? "pack + " : ""}${sorted.length} inline file${sorted.length === 1 ? "" : "s"}`,
    load: (): RuleLoad =>
      assembleRules([
        ...(defaultPack ? packFiles() : []),
        ...sorted.map((f) => parseRuleText(`${label}/${f.name}`, f.text)),
      ]),
    spec: { type: "inline", label, files: sorted, defaultPack },
  };
}
