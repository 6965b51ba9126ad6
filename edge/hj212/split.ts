import type { CommandParameters, DataSegment, Factor } from "./segment.js";

/**
 * Reassembly of split packets (docs/hj212.md, Split packets): with Flag bit D set, each piece is a
 * full frame with its own QN and CRC and PNUM/PNO in its header; the pieces of one packet share
 * MN, CN and DataTime, and arrive in any order, possibly more than once (a device resends a piece
 * it got no 9014 for).
 *
 * Bounds: at most `maxPendingGroups` packets are pending (the oldest is given up when another
 * starts), each of at most `maxPieces` pieces, each pending at most `timeoutMs` from its first
 * piece. A group given up is returned as incomplete with its pieces, never dropped silently.
 * Time is passed in (`nowMs`), so tests need no clock.
 */

export interface SplitOptions {
  /** Packets being reassembled at once, at most. Default 32. */
  readonly maxPendingGroups?: number;
  /** PNUM accepted at most. Default 64. */
  readonly maxPieces?: number;
  /** How long a packet may take to complete, from its first piece. Default 120 s (a device retries 3 times, 10 s apart). */
  readonly timeoutMs?: number;
}

export const SPLIT_DEFAULTS = {
  maxPendingGroups: 32,
  maxPieces: 64,
  timeoutMs: 120_000,
} as const satisfies Required<SplitOptions>;

/** A packet given up before all its pieces arrived. */
export interface IncompleteGroup {
  readonly mn: string;
  readonly cn: string;
  readonly dataTime: string;
  readonly count: number;
  /** PNO of the pieces that arrived, ascending. */
  readonly received: readonly number[];
  readonly reason: "timeout" | "evicted";
  readonly pieces: readonly DataSegment[];
}

export type SplitOutcome =
  /** Not a split packet: use it as it is. */
  | { readonly status: "whole"; readonly segment: DataSegment }
  /** A piece was kept; the packet waits for the others. */
  | { readonly status: "pending"; readonly received: number; readonly count: number }
  /** This PNO had already arrived (a resend); the first copy is kept. */
  | { readonly status: "duplicate"; readonly index: number }
  /** The last piece arrived: one segment with the CP of all pieces, in PNO order. */
  | {
      readonly status: "complete";
      readonly segment: DataSegment;
      readonly pieces: readonly DataSegment[];
    }
  /** The piece (or, for `conflict`, the whole packet) cannot be reassembled. */
  | {
      readonly status: "rejected";
      readonly reason: string;
      readonly pieces: readonly DataSegment[];
    };

interface Group {
  readonly mn: string;
  readonly cn: string;
  readonly dataTime: string;
  readonly count: number;
  readonly firstAtMs: number;
  readonly pieces: Map<number, DataSegment>;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function emptyRecord(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

type Merge = { ok: true; cp: CommandParameters } | { ok: false; reason: string };

/** Merges the CPs of the pieces in order; the same field with two different values is a conflict. */
function mergeCommandParameters(pieces: readonly DataSegment[]): Merge {
  const params = emptyRecord();
  const factors = new Map<string, Record<string, string>>();
  for (const piece of pieces) {
    for (const [name, value] of Object.entries(piece.cp.params)) {
      const known = params[name];
      if (known !== undefined && known !== value) {
        return { ok: false, reason: `pieces disagree on ${name}: ${known} and ${value}` };
      }
      params[name] = value;
    }
    for (const factor of piece.cp.factors) {
      let fields = factors.get(factor.code);
      if (fields === undefined) {
        fields = emptyRecord();
        factors.set(factor.code, fields);
      }
      for (const [suffix, value] of Object.entries(factor.fields)) {
        const known = fields[suffix];
        if (known !== undefined && known !== value) {
          return {
            ok: false,
            reason: `pieces disagree on ${factor.code}-${suffix}: ${known} and ${value}`,
          };
        }
        fields[suffix] = value;
      }
    }
  }
  const merged: Factor[] = [...factors].map(([code, fields]) => ({ code, fields }));
  const dataTime = pieces[0]?.cp.dataTime;
  return {
    ok: true,
    cp: { params, factors: merged, ...(dataTime === undefined ? {} : { dataTime }) },
  };
}

export class SplitReassembler {
  readonly maxPendingGroups: number;
  readonly maxPieces: number;
  readonly timeoutMs: number;
  /** Insertion order is arrival order of each packet's first piece, so the first is the oldest. */
  private readonly groups = new Map<string, Group>();

  /** Throws a RangeError on invalid options (a programming or configuration error). */
  constructor(options: SplitOptions = {}) {
    this.maxPendingGroups = positiveInt(
      "maxPendingGroups",
      options.maxPendingGroups ?? SPLIT_DEFAULTS.maxPendingGroups,
    );
    this.maxPieces = positiveInt("maxPieces", options.maxPieces ?? SPLIT_DEFAULTS.maxPieces);
    this.timeoutMs = positiveInt("timeoutMs", options.timeoutMs ?? SPLIT_DEFAULTS.timeoutMs);
  }

  get pendingGroups(): number {
    return this.groups.size;
  }

  /**
   * Takes one parsed segment. Returns what became of it, and any packets given up meanwhile
   * (timed out at `nowMs`, or evicted to make room).
   */
  add(
    segment: DataSegment,
    nowMs: number,
  ): { outcome: SplitOutcome; incomplete: IncompleteGroup[] } {
    const incomplete = this.expire(nowMs);
    const outcome = this.place(segment, nowMs, incomplete);
    return { outcome, incomplete };
  }

  /** Gives up the packets whose first piece arrived `timeoutMs` or more before `nowMs`. */
  expire(nowMs: number): IncompleteGroup[] {
    const expired: IncompleteGroup[] = [];
    for (const [key, group] of this.groups) {
      if (nowMs - group.firstAtMs >= this.timeoutMs) {
        this.groups.delete(key);
        expired.push(incompleteOf(group, "timeout"));
      }
    }
    return expired;
  }

  private place(segment: DataSegment, nowMs: number, incomplete: IncompleteGroup[]): SplitOutcome {
    const packet = segment.packet;
    if (packet === undefined) return { status: "whole", segment };
    const { mn, cn } = segment;
    const dataTime = segment.cp.dataTime;
    if (dataTime === undefined) {
      return {
        status: "rejected",
        reason: "a split-packet piece without DataTime cannot be matched to its packet",
        pieces: [segment],
      };
    }
    if (packet.count > this.maxPieces) {
      return {
        status: "rejected",
        reason: `PNUM ${packet.count} is more than the ${this.maxPieces} pieces accepted`,
        pieces: [segment],
      };
    }
    const key = JSON.stringify([mn, cn, dataTime]);
    let group = this.groups.get(key);
    if (group !== undefined && group.count !== packet.count) {
      return {
        status: "rejected",
        reason: `PNUM ${packet.count} differs from PNUM ${group.count} of the pieces already received`,
        pieces: [segment],
      };
    }
    if (group?.pieces.has(packet.index) === true) {
      return { status: "duplicate", index: packet.index };
    }
    if (group === undefined) {
      if (this.groups.size >= this.maxPendingGroups) {
        const [oldestKey, oldest] = this.groups.entries().next().value ?? [];
        if (oldestKey !== undefined && oldest !== undefined) {
          this.groups.delete(oldestKey);
          incomplete.push(incompleteOf(oldest, "evicted"));
        }
      }
      group = { mn, cn, dataTime, count: packet.count, firstAtMs: nowMs, pieces: new Map() };
      this.groups.set(key, group);
    }
    group.pieces.set(packet.index, segment);
    if (group.pieces.size < group.count) {
      return { status: "pending", received: group.pieces.size, count: group.count };
    }

    this.groups.delete(key);
    const pieces = [...group.pieces].sort(([a], [b]) => a - b).map(([, piece]) => piece);
    const merged = mergeCommandParameters(pieces);
    if (!merged.ok) return { status: "rejected", reason: merged.reason, pieces };
    const first = pieces[0] ?? segment;
    const { packet: _packet, flag, ...header } = first;
    const whole: DataSegment = {
      ...header,
      // The reassembled packet is no longer split: clear bit D.
      ...(flag === undefined ? {} : { flag: flag & ~0b10 }),
      cp: merged.cp,
    };
    return { status: "complete", segment: whole, pieces };
  }
}

function incompleteOf(group: Group, reason: IncompleteGroup["reason"]): IncompleteGroup {
  const entries = [...group.pieces].sort(([a], [b]) => a - b);
  return {
    mn: group.mn,
    cn: group.cn,
    dataTime: group.dataTime,
    count: group.count,
    received: entries.map(([index]) => index),
    reason,
    pieces: entries.map(([, piece]) => piece),
  };
}
