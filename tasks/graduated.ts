import type { TasksConfig } from "../contracts/config/tasks.js";
import type { Site } from "../contracts/model/registry.js";
import type { RecheckOutcome } from "../contracts/model/alarms.js";
import type { GraduatedResponse } from "../contracts/model/tasks.js";
import { formatDuration } from "../contracts/model/rules.js";

/*
 * Graduated response of enforcement cases (docs/standards.md, Enforcement process: education
 * first; repeat offences within a configurable period escalate). Pure: the service stores the
 * result and writes the audit trail. Time is the data's own: whether a violation came after a
 * rectification deadline is judged on when the readings show it, not on when they arrived.
 *
 *   a party's first episode within `periodMs` → warning notice, rectify by the deadline, re-check
 *   a violation the data show before that deadline → the same episode (the same case, or a case
 *     that shares the deadline when the first was closed early): no escalation
 *   a violation the data show at or after a warned case's deadline, or after a referral within
 *     the period, a failed re-check → referred for penalty, pending legal review (法制审核)
 *   re-check without data `recheckAttempts` times → inspection on site
 */

type Graduation = Pick<TasksConfig, "graduated">["graduated"];

/** The regulated party of a site, keyed by credit code (one party may run several sites). */
export function partyOf(site: Site | undefined): GraduatedResponse["party"] | undefined {
  if (site === undefined || !("regulatedParty" in site)) return undefined;
  const party = site.regulatedParty;
  return { key: party.creditCode ?? `site:${site.id}`, name: party.name };
}

/** An earlier case of the party within the period (one that was a violation). */
export interface EarlierCase {
  readonly id: string;
  readonly stage: GraduatedResponse["stage"] | undefined;
  /** The rectification deadline of its warning, if it had one. */
  readonly deadline?: string | undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();
const PENDING_REVIEW = { status: "pending" } as const;

/**
 * The response to a new case of a party, given its earlier cases within the period and when the
 * data show the violation (`dataAtMs`).
 */
export function firstResponse(
  config: Graduation,
  input: {
    party: GraduatedResponse["party"];
    ruleId: string;
    earlier: readonly EarlierCase[];
    dataAtMs: number;
    nowMs: number;
  },
): GraduatedResponse {
  const after = input.earlier.find(
    (c) =>
      c.stage === "referred" ||
      (c.deadline !== undefined && input.dataAtMs >= Date.parse(c.deadline)),
  );
  if (after !== undefined) {
    return {
      stage: "referred",
      review: PENDING_REVIEW,
      repeat: true,
      repeatOf: after.id,
      party: input.party,
      reason:
        after.stage === "referred"
          ? `repeat violation within ${formatDuration(config.periodMs)} of case ${after.id}, which was referred for penalty`
          : `repeat violation: the data show it at ${iso(input.dataAtMs)}, after the rectification deadline ${after.deadline ?? "?"} of case ${after.id}`,
    };
  }
  const episode = input.earlier.find(
    (c) => c.deadline !== undefined && input.dataAtMs < Date.parse(c.deadline),
  );
  if (episode?.deadline !== undefined) {
    return {
      stage: "warning",
      party: input.party,
      reason: `the same episode as case ${episode.id}: the data show it before that case's rectification deadline; no escalation`,
      deadline: episode.deadline,
      recheck: { dueAt: episode.deadline, attempts: 0 },
    };
  }
  const deadline = iso(
    input.nowMs + (config.rectifyWithinByRule[input.ruleId] ?? config.rectifyWithinMs),
  );
  return {
    stage: "warning",
    party: input.party,
    reason: `first violation within ${formatDuration(config.periodMs)}: warning notice`,
    deadline,
    recheck: { dueAt: deadline, attempts: 0 },
  };
}

/**
 * The response after another violation joins an open case, shown by the data at `dataAtMs`: a
 * warned party is referred only when the data show it at or after the rectification deadline;
 * before it, it is the same episode and nothing changes.
 */
export function afterRepeat(
  current: GraduatedResponse,
  dataAtMs: number,
): GraduatedResponse | undefined {
  if (current.stage !== "warning" || current.deadline === undefined) return undefined;
  if (dataAtMs < Date.parse(current.deadline)) return undefined;
  return {
    ...current,
    stage: "referred",
    review: PENDING_REVIEW,
    repeat: true,
    reason: `violated again: the data show it at ${iso(dataAtMs)}, after the rectification deadline ${current.deadline}`,
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
        review: PENDING_REVIEW,
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
