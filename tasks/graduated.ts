import type { TasksConfig } from "../contracts/config/tasks.js";
import type { Site } from "../contracts/model/registry.js";
import type { RecheckOutcome } from "../contracts/model/alarms.js";
import type { GraduatedResponse } from "../contracts/model/tasks.js";
import { formatDuration } from "../contracts/model/rules.js";

/*
 * Graduated response of enforcement cases (docs/standards.md, Enforcement process: education
 * first; repeat offences within a configurable period escalate). Pure: the service stores the
 * result and writes the audit trail.
 *
 *   first case of a party within `periodMs` → warning notice, rectify by the deadline, re-check
 *   another case of the party within the period, a repeat while warned, a failed re-check → referred
 *   re-check without data `recheckAttempts` times → inspection on site
 */

type Graduation = Pick<TasksConfig, "graduated">["graduated"];

/** The regulated party of a site, keyed by credit code (one party may run several sites). */
export function partyOf(site: Site | undefined): GraduatedResponse["party"] | undefined {
  if (site === undefined || !("regulatedParty" in site)) return undefined;
  const party = site.regulatedParty;
  return { key: party.creditCode ?? `site:${site.id}`, name: party.name };
}

/** The response to a new case, given the party's earlier cases within the period. */
export function firstResponse(
  config: Graduation,
  input: {
    party: GraduatedResponse["party"];
    ruleId: string;
    earlierCases: readonly string[];
    nowMs: number;
  },
): GraduatedResponse {
  if (input.earlierCases.length > 0) {
    return {
      stage: "referred",
      party: input.party,
      reason: `repeat violation: earlier case ${input.earlierCases.join(", ")} within ${formatDuration(config.periodMs)}`,
    };
  }
  const deadlineMs =
    input.nowMs + (config.rectifyWithinByRule[input.ruleId] ?? config.rectifyWithinMs);
  const deadline = new Date(deadlineMs).toISOString();
  return {
    stage: "warning",
    party: input.party,
    reason: `first violation within ${formatDuration(config.periodMs)}: warning notice`,
    deadline,
    recheck: { dueAt: deadline, attempts: 0 },
  };
}

/** The response after a repeat attached to the case: a warned party is referred. */
export function afterRepeat(current: GraduatedResponse): GraduatedResponse | undefined {
  if (current.stage !== "warning") return undefined;
  return {
    ...current,
    stage: "referred",
    reason: "violated again before the rectification deadline",
    ...(current.recheck === undefined
      ? {}
      : { recheck: { ...current.recheck, outcome: "violating" as const } }),
  };
}

/** The response after a re-check. */
export function afterRecheck(
  config: Graduation,
  current: GraduatedResponse,
  outcome: RecheckOutcome,
  nowMs: number,
): GraduatedResponse {
  const at = new Date(nowMs).toISOString();
  const attempts = (current.recheck?.attempts ?? 0) + 1;
  const dueAt = current.recheck?.dueAt ?? at;
  switch (outcome) {
    case "compliant":
      return { ...current, recheck: { dueAt, attempts, outcome, at } };
    case "violating":
      return {
        ...current,
        stage: "referred",
        reason: "the re-check at the rectification deadline found the violation continuing",
        recheck: { dueAt, attempts, outcome, at },
      };
    case "no_data":
      if (attempts >= config.recheckAttempts) {
        return {
          ...current,
          stage: "inspection",
          reason: `no sensor data for the re-check after ${attempts} attempts: inspect on site`,
          recheck: { dueAt, attempts, outcome, at },
        };
      }
      return {
        ...current,
        recheck: { dueAt: new Date(nowMs + config.recheckRetryMs).toISOString(), attempts },
      };
  }
}

/** When the next re-check is due, or undefined when none is. */
export function recheckDueMs(response: GraduatedResponse | undefined): number | undefined {
  const recheck = response?.recheck;
  if (response?.stage !== "warning" || recheck === undefined || recheck.outcome !== undefined)
    return undefined;
  return Date.parse(recheck.dueAt);
}
