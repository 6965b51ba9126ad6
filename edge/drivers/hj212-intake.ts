import type { Logger } from "pino";
import { DataCn, toReadings, type Hj212Mapping } from "../hj212/mapping.js";
import {
  QN_RTN,
  dataAnsweredReply,
  rejectionReply,
  replyFor,
  requestAnsweredReply,
  type QnRtn,
} from "../hj212/reply.js";
import { parseSegment, type DataSegment } from "../hj212/segment.js";
import type { IncompleteGroup, SplitReassembler } from "../hj212/split.js";
import type { DriverSink, FieldSample } from "./types.js";
import type { Hj212Counts } from "./hj212-counts.js";
import type { ProblemLog } from "./hj212-problems.js";

/**
 * From a frame whose CRC verified to samples in the sink and the reply the device gets
 * (docs/hj212.md, Commands and replies): shared by all connections of one server, since a device may send the pieces
 * of a split packet over two connections when it reconnects in between.
 *
 * Reply policy (the device drops data from its resend queue on a 9014, retries 3 times 10 s
 * apart without one):
 * - 9014 only when every sample of the frame was taken by the sink, and only after the sink
 *   returned (it writes the write-ahead log synchronously). Factors no model maps and values
 *   that are not numbers are counted and logged but do not hold the 9014 back: resending cannot
 *   fix them.
 * - No reply when the sink refused a sample (log write failed, device unknown to the agent, value
 *   out of range): the device resends, which is what a transient failure needs; the samples of
 *   the frame the sink took are taken again then, with the same ts, which the store folds
 *   (real-time samples are aggregated by the agent, whose interval then counts them twice).
 * - 9011 QnRtn 4 (MN) for an unknown MN, QnRtn 2 (rejected) for a DataTime that is no time,
 *   QnRtn 9 (CRC) for a CRC mismatch (in hj212-session.ts), QnRtn 100 for a segment that does
 *   not parse: the device stops resending what can never be taken. Never a 9014 for those.
 * - Requests (CN 1xxx, 3xxx) get 9011 QnRtn 2: the edge executes no commands.
 * - Data of a CN the driver is not configured to take (`dataCns`) is answered 9014 and counted.
 * Replies go out only when Flag bit A asks (edge/hj212/reply.ts).
 *
 * A piece of a split packet is answered as it arrives, while the packet is held in memory; a
 * packet that never completes (timeout, eviction, conflicting pieces) is not dropped: each piece
 * it has is delivered on its own (`splitUnassembled`), as its factors stand for the same DataTime.
 */

export interface Hj212IntakeDeps {
  readonly mapping: Hj212Mapping;
  /** The data CNs delivered; frames of the others are answered and counted (hj212-options.ts, `dataCns`). */
  readonly dataCns: ReadonlySet<string>;
  readonly sink: DriverSink;
  readonly split: SplitReassembler;
  readonly counts: Hj212Counts;
  readonly problems: ProblemLog;
  readonly log: Logger;
  readonly now: () => number;
}

/** How a delivery went: all samples taken, the sink refused one, or the frame is refused with a QnRtn. */
type Delivery =
  | { readonly status: "taken" | "sinkRefused" }
  | { readonly status: "refused"; readonly qnRtn: QnRtn };

const TAKEN: Delivery = { status: "taken" };

/** A factor list kept short enough for a log line. */
function codesOf(items: readonly { readonly code: string }[]): string[] {
  return items.slice(0, 10).map((item) => item.code);
}

export class Hj212Intake {
  constructor(private readonly deps: Hj212IntakeDeps) {}

  /** Handles the data segment of a frame whose CRC verified; returns the reply frame to send, if any. */
  frame(text: string): string | undefined {
    const { counts, problems } = this.deps;
    const parsed = parseSegment(text);
    if (!parsed.ok) {
      counts.badSegments++;
      problems.warn(
        "HJ212_BAD_SEGMENT",
        { reason: parsed.error.reason, segment: text.slice(0, 200) },
        "HJ 212 segment refused",
      );
      return this.counted(rejectionReply(text, QN_RTN.unknown));
    }
    const segment = parsed.segment;
    if (!DataCn.safeParse(segment.cn).success) {
      counts.commands++;
      this.deps.log.debug({ mn: segment.mn, cn: segment.cn }, "HJ 212 command not executed");
      return this.counted(replyFor(segment));
    }
    counts.dataFrames++;
    if (!this.deps.dataCns.has(segment.cn)) {
      counts.ignoredData++;
      this.deps.log.debug(
        { mn: segment.mn, cn: segment.cn },
        "HJ 212 data CN not configured; answered, not delivered",
      );
      return this.answer(segment, TAKEN);
    }
    if (!Object.hasOwn(this.deps.mapping.devices, segment.mn)) {
      // Checked before reassembly too, so no piece of an unknown monitor is answered 9014.
      return this.answer(segment, this.unknownMn(segment));
    }
    if (segment.packet !== undefined) counts.splitPieces++;
    const { outcome, incomplete } = this.deps.split.add(segment, this.deps.now());
    this.unassembled(incomplete);
    switch (outcome.status) {
      case "whole":
      case "complete":
        return this.answer(segment, this.deliver(outcome.segment));
      case "pending":
        return this.answer(segment, TAKEN);
      case "duplicate":
        // The device missed our 9014 and resent the piece: the first copy is held, answer again.
        counts.splitDuplicates++;
        return this.answer(segment, TAKEN);
      case "rejected":
        problems.warn(
          "HJ212_SPLIT_REJECTED",
          { mn: segment.mn, cn: segment.cn, reason: outcome.reason },
          "HJ 212 split packet not reassembled; its pieces are delivered one by one",
        );
        return this.answer(segment, this.deliverPieces(outcome.pieces));
    }
  }

  /** Gives up split packets pending too long, delivering their pieces one by one. */
  expire(): void {
    this.unassembled(this.deps.split.expire(this.deps.now()));
  }

  /** At stop: every packet still pending is delivered piece by piece (its pieces were answered). */
  flush(): void {
    this.unassembled(this.deps.split.expire(Number.POSITIVE_INFINITY));
  }

  private unassembled(groups: readonly IncompleteGroup[]): void {
    for (const group of groups) {
      this.deps.problems.warn(
        "HJ212_SPLIT_INCOMPLETE",
        {
          mn: group.mn,
          cn: group.cn,
          dataTime: group.dataTime,
          count: group.count,
          received: group.received,
          reason: group.reason,
        },
        "HJ 212 split packet incomplete; its pieces are delivered one by one",
      );
      this.deliverPieces(group.pieces);
    }
  }

  private deliverPieces(pieces: readonly DataSegment[]): Delivery {
    this.deps.counts.splitUnassembled += pieces.length;
    let worst: Delivery = TAKEN;
    for (const piece of pieces) {
      const delivery = this.deliver(piece);
      if (delivery.status !== "taken" && worst.status !== "sinkRefused") worst = delivery;
    }
    return worst;
  }

  /** Maps a whole data segment to samples and hands them to the sink. */
  private deliver(segment: DataSegment): Delivery {
    const { counts, problems, mapping } = this.deps;
    const result = toReadings(segment, mapping);
    if (!result.ok) {
      const { code, reason } = result.error;
      if (code === "HJ212_UNKNOWN_MN") return this.unknownMn(segment);
      counts.badDataTime++;
      problems.warn(code, { mn: segment.mn, cn: segment.cn, reason }, "HJ 212 data refused");
      return { status: "refused", qnRtn: QN_RTN.rejected };
    }
    if (result.unmapped.length > 0) {
      counts.unmappedFactors += result.unmapped.length;
      problems.warn(
        "HJ212_UNMAPPED_FACTOR",
        { mn: segment.mn, cn: segment.cn, factors: codesOf(result.unmapped) },
        "HJ 212 factors no model of this MN maps; add them to the model to keep them",
      );
    }
    if (result.rejected.length > 0) {
      counts.badValues += result.rejected.length;
      problems.warn(
        "HJ212_BAD_VALUE",
        { mn: segment.mn, cn: segment.cn, rejected: result.rejected.slice(0, 10) },
        "HJ 212 factor values not usable",
      );
    }
    let delivery = TAKEN;
    for (const device of result.devices) {
      for (const reading of device.readings) {
        const sample: FieldSample = {
          deviceId: device.deviceId,
          kind: device.kind,
          ts: Date.parse(reading.ts),
          quality: reading.quality,
          // The seam carries numbers; an on/off quantity (fan, purifier) travels as 1 or 0.
          values: Object.fromEntries(
            Object.entries(reading.values).map(([name, value]) => [name, Number(value)]),
          ),
          form: result.cn === "2011" ? "sample" : "interval",
        };
        try {
          this.deps.sink(sample);
          counts.samples++;
        } catch (error) {
          counts.sinkRefused++;
          delivery = { status: "sinkRefused" };
          problems.warn(
            "HJ212_SINK_REFUSED",
            { mn: segment.mn, sample, err: error },
            "the agent refused an HJ 212 sample; the device is not answered, so it resends",
          );
        }
      }
    }
    return delivery;
  }

  private unknownMn(segment: DataSegment): Delivery {
    this.deps.counts.unknownMn++;
    this.deps.problems.warn(
      "HJ212_UNKNOWN_MN",
      { mn: segment.mn, cn: segment.cn },
      "HJ 212 data from an MN the mapping does not know; add it to mapping.devices",
    );
    return { status: "refused", qnRtn: QN_RTN.badMn };
  }

  /** The reply to the frame `segment` came in, given how its data was delivered. */
  private answer(segment: DataSegment, delivery: Delivery): string | undefined {
    if (!segment.ackRequested) return undefined;
    switch (delivery.status) {
      case "taken":
        return this.counted(dataAnsweredReply(segment));
      case "sinkRefused":
        return undefined;
      case "refused":
        return this.counted(requestAnsweredReply(segment, delivery.qnRtn));
    }
  }

  private counted(reply: string | undefined): string | undefined {
    if (reply === undefined) return undefined;
    if (reply.includes(";CN=9014;")) this.deps.counts.replies9014++;
    else this.deps.counts.replies9011++;
    return reply;
  }
}
