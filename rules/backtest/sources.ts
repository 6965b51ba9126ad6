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
 */

/** A directory of rule files, after the default pack when `defaultPack`. */
export function directoryRules(dir: string, defaultPack: boolean): RuleSource {
  const path = resolve(dir);
  return {
    label: `${defaultPack ? "pack + " : ""}${dir}`,
    load: () => loadRules({ defaultPack, directories: [{ dir: path, label: basename(path) }] }),
  };
}

/** The rule files `ingest.rules` names, read now. */
export function configuredRules(config: IngestConfig["rules"]): RuleSource {
  return {
    label: "configured rules",
    load: () => loadRules({ defaultPack: config.defaultPack, directories: config.directories }),
  };
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
  };
}
