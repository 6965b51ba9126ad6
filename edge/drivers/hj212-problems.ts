import type { Logger } from "pino";

/**
 * Warnings about bad input, at most one per problem code per interval.
 *
 * A misconfigured monitor repeats the same mistake every few seconds, and a port scanner sends
 * garbage as fast as it can; a log line per frame would drown everything else. The first
 * occurrence is logged at once, later ones at most once per interval with how many were held
 * back, which are logged at debug; every occurrence is counted in the driver's stats. Keyed by code only
 * (a fixed set), so no input can grow the map.
 */
export class ProblemLog {
  private readonly last = new Map<string, { atMs: number; heldBack: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
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
}
