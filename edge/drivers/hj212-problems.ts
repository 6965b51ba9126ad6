import type { Logger } from "pino";
import type { DeadLetterSink } from "./types.js";

/**
 * Warnings about bad input, at most one per problem code per interval, and the refusals among
 * them recorded in the edge's dead-letter log.
 *
 * A misconfigured monitor repeats the same mistake every few seconds, and a port scanner sends
 * garbage as fast as it can; a log line per frame would drown everything else. The first
 * occurrence is logged at once, later ones at most once per interval with how many were held
 * back, which are logged at debug; every occurrence is counted in the driver's stats. Keyed by code only
 * (a fixed set), so no input can grow the map. `refuse` also records every occurrence in the
 * dead-letter log (bounded there), so a refusal can be looked at later, not only in a log line.
 */
export class ProblemLog {
  private readonly last = new Map<string, { atMs: number; heldBack: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
    private readonly deadLetters?: { readonly driver: () => string; readonly sink: DeadLetterSink },
  ) {}

  warn(code: string, fields: Record<string, unknown>, message: string): void {
    const nowMs = this.now();
    const entry = this.last.get(code);
    if (entry !== undefined && nowMs - entry.atMs < this.intervalMs) {
      entry.heldBack++;
      this.log.debug({ code, ...fields }, message);
      return;
    }
    const heldBack = entry?.heldBack ?? 0;
    this.log.warn({ code, ...fields, ...(heldBack > 0 ? { heldBack } : {}) }, message);
    this.last.set(code, { atMs: nowMs, heldBack: 0 });
  }

  /**
   * A refusal: warned like `warn`, and recorded in the dead-letter log with its reason and the
   * refused input (`payload`). The source is the MN when known, else the peer's address.
   */
  refuse(
    code: string,
    fields: Record<string, unknown> & { readonly mn?: string; readonly remote?: string },
    message: string,
    detail: { readonly reason?: string; readonly payload?: string } = {},
  ): void {
    this.warn(code, fields, message);
    const deadLetters = this.deadLetters;
    if (deadLetters === undefined) return;
    const reason =
      detail.reason ?? (typeof fields["reason"] === "string" ? fields["reason"] : message);
    deadLetters.sink({
      driver: deadLetters.driver(),
      // A peer is its address without the port: one host's reconnections share one budget.
      source: fields.mn ?? fields.remote?.replace(/:\d+$/, "") ?? "unknown",
      code,
      reason,
      ...(fields.remote !== undefined ? { remote: fields.remote } : {}),
      ...(detail.payload !== undefined ? { payload: detail.payload } : {}),
    });
  }
}
