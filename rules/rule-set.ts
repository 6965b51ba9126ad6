import type { SensorKind } from "../contracts/index.js";
import type { Rule } from "../contracts/index.js";
import { type LoadedRule, loadRules, type LoadRulesOptions, type RuleProblem } from "./load.js";

export interface RuleSetOptions extends LoadRulesOptions {
  /** The loader; tests and the CLI's `rules check` may pass another. Default: {@link loadRules}. */
  readonly load?: (options: LoadRulesOptions) => ReturnType<typeof loadRules>;
}

/**
 * The rules in force. `reload()` reads the files again and swaps the whole set only when every
 * file is valid; on any problem the previous set stays in force and the problems are returned.
 * Before the first successful load the set is empty (`generation` 0).
 *
 * A reload is also refused when a rule's definition changed but its version did not rise, or its
 * version went down: evidence cites rule id and version, so one version must mean one definition.
 */
export class RuleSet {
  readonly #options: RuleSetOptions;
  #loaded: readonly LoadedRule[] = [];
  #rules: readonly Rule[] = [];
  #byId = new Map<string, LoadedRule>();
  #byKind = new Map<SensorKind, readonly Rule[]>();
  #generation = 0;

  constructor(options: RuleSetOptions = {}) {
    this.#options = options;
  }

  /** Every rule in force (enabled or not: overrides can enable a rule for one site). */
  get rules(): readonly Rule[] {
    return this.#rules;
  }

  /** Rules in force with their file and definition hash. */
  get loaded(): readonly LoadedRule[] {
    return this.#loaded;
  }

  /** Increases by one on every successful load; 0 before the first. */
  get generation(): number {
    return this.#generation;
  }

  get(id: string): Rule | undefined {
    return this.#byId.get(id)?.rule;
  }

  /** Where a rule came from and the hash of its definition. */
  source(id: string): Pick<LoadedRule, "file" | "index" | "hash"> | undefined {
    return this.#byId.get(id);
  }

  /** Rules whose scope includes sensor kind `kind`. */
  forKind(kind: SensorKind): readonly Rule[] {
    return this.#byKind.get(kind) ?? [];
  }

  /** Load the files again. Returns the problems (empty on success); on problems nothing changes. */
  reload(): readonly RuleProblem[] {
    const load = this.#options.load ?? loadRules;
    const result = load(this.#options);
    if (!result.ok) return result.problems;
    const problems = this.#versionProblems(result.rules);
    if (problems.length > 0) return problems;
    this.#loaded = result.rules;
    this.#rules = Object.freeze(result.rules.map((l) => l.rule));
    this.#byId = new Map(result.rules.map((l) => [l.rule.id, l]));
    const byKind = new Map<SensorKind, Rule[]>();
    for (const { rule } of result.rules) {
      for (const kind of rule.scope.kinds) byKind.set(kind, [...(byKind.get(kind) ?? []), rule]);
    }
    this.#byKind = byKind;
    this.#generation += 1;
    return [];
  }

  #versionProblems(next: readonly LoadedRule[]): RuleProblem[] {
    const problems: RuleProblem[] = [];
    for (const loaded of next) {
      const previous = this.#byId.get(loaded.rule.id);
      if (previous === undefined) continue;
      const was = previous.rule.version;
      const is = loaded.rule.version;
      const where = { file: loaded.file, path: `rules.${loaded.index}.version` };
      if (is < was) {
        problems.push({
          ...where,
          message: `rule ${loaded.rule.id} version went down from ${was} to ${is}; versions only rise`,
        });
      } else if (is === was && loaded.hash !== previous.hash) {
        problems.push({
          ...where,
          message: `rule ${loaded.rule.id} changed but its version is still ${is}; set version: ${is + 1} (evidence cites id and version)`,
        });
      }
    }
    return problems;
  }
}
