import { createHash } from "node:crypto";
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
 * - 9014 only when every sample of the frame was taken by the sink (or refused for good and
 *   recorded in the dead-letter log), and only after the sink returned (it writes the
 *   write-ahead log synchronously). Factors no model maps are counted and logged; values that are
 *   not numbers, or outside their quantity's plausible range under flag N or S, are refused one
 *   by one into the dead-letter log while the frame's other factors are taken: none of these hold
 *   the 9014 back, since resending cannot fix them. A value outside the range under a flag that
 *   marks it (T, D…) is kept at the range's bound with its quality (edge/hj212/mapping.ts).
 * - A sample the agent refuses for good (`EDGE_SAMPLE_REFUSED`: device or kind not served) is
 *   dead-lettered and does not hold the 9014 back either. No reply when the sink failed
 *   otherwise (the log write failed: disk full): the device resends, which is what a transient
 *   failure needs; the samples the sink took are taken again then, with the same ts.
 * - A data frame identical to one answered 9014 in the last `RECENT_FRAMES_TTL_MS` (the device
 *   missed our 9014 and resent it) is answered again and not delivered twice (`duplicateFrames`).
 * - Real-time samples whose interval the agent already sent (a monitor clock behind, a late
 *   retry) are not refused: the agent logs them at their own time as replay (edge/agent/agent.ts).
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

/** Frames remembered as answered 9014, to answer a resent copy without delivering it twice. */
const RECENT_FRAMES = 4_096;
/** A monitor resends after 10 s, 3 times: a copy later than this is taken as new data. */
const RECENT_FRAMES_TTL_MS = 10 * 60_000;
/** The code the agent's sink throws for a sample it will never take (edge/agent/agent.ts). */
const PERMANENT_REFUSAL = "EDGE_SAMPLE_REFUSED";

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
  /** Hashes of frames answered 9014 → when; insertion order is age order (bounded, RECENT_FRAMES). */
  private readonly recent = new Map<string, number>();

  constructor(private readonly deps: Hj212IntakeDeps) {}

  /** Handles the data segment of a frame whose CRC verified; returns the reply frame to send, if any. */
  frame(text: string, remote?: string): string | undefined {
    const { counts, problems } = this.deps;
    const parsed = parseSegment(text);
    if (!parsed.ok) {
      counts.badSegments++;
      problems.refuse(
        "HJ212_BAD_SEGMENT",
        { reason: parsed.error.reason, segment: text.slice(0, 200), ...remoteOf(remote) },
        "HJ 212 segment refused",
        { payload: text },
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
      return this.answer(segment, this.unknownMn(segment, text, remote));
    }
    if (segment.packet === undefined) return this.whole(segment, text, remote);
    counts.splitPieces++;
    const { outcome, incomplete } = this.deps.split.add(segment, this.deps.now());
    this.unassembled(incomplete);
    switch (outcome.status) {
      case "whole":
      case "complete":
        return this.answer(segment, this.deliver(outcome.segment, text, remote));
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

  /** A frame that is not a split piece: delivered once, a resent copy of an answered one answered again. */
  private whole(
    segment: DataSegment,
    text: string,
    remote: string | undefined,
  ): string | undefined {
    const now = this.deps.now();
    const key = createHash("sha1").update(text).digest("base64");
    const seen = this.recent.get(key);
    if (seen !== undefined && now - seen < RECENT_FRAMES_TTL_MS) {
      this.deps.counts.duplicateFrames++;
      this.deps.log.debug(
        { mn: segment.mn, qn: segment.qn },
        "HJ 212 frame resent after our 9014; answered again, not delivered twice",
      );
      return this.answer(segment, TAKEN);
    }
    const delivery = this.deliver(segment, text, remote);
    if (delivery.status === "taken") {
      this.recent.delete(key);
      this.recent.set(key, now);
      for (const [old, at] of this.recent) {
        if (this.recent.size <= RECENT_FRAMES && now - at < RECENT_FRAMES_TTL_MS) break;
        this.recent.delete(old);
      }
    }
    return this.answer(segment, delivery);
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
  private deliver(segment: DataSegment, text?: string, remote?: string): Delivery {
    const { counts, problems, mapping } = this.deps;
    const result = toReadings(segment, mapping);
    if (!result.ok) {
      const { code, reason } = result.error;
      if (code === "HJ212_UNKNOWN_MN") return this.unknownMn(segment, text, remote);
      counts.badDataTime++;
      problems.refuse(
        code,
        { mn: segment.mn, cn: segment.cn, reason, ...remoteOf(remote) },
        "HJ 212 data refused",
        { payload: text ?? segment.cp.dataTime ?? "" },
      );
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
    for (const rejected of result.rejected) {
      counts.badValues++;
      problems.refuse(
        "HJ212_BAD_VALUE",
        { mn: segment.mn, cn: segment.cn, rejected, ...remoteOf(remote) },
        "HJ 212 factor value refused; the frame's other factors are kept",
        {
          reason: `${rejected.deviceId} ${rejected.code}: ${rejected.reason}`,
          payload: factorText(segment, rejected.code),
        },
      );
    }
    if (result.clamped.length > 0) {
      counts.clampedValues += result.clamped.length;
      problems.warn(
        "HJ212_VALUE_CLAMPED",
        { mn: segment.mn, cn: segment.cn, clamped: result.clamped.slice(0, 10) },
        "HJ 212 values outside the plausible range kept at its bound with their flag",
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
          if ((error as { code?: unknown }).code === PERMANENT_REFUSAL) {
            problems.refuse(
              "HJ212_SINK_REFUSED",
              { mn: segment.mn, reason: (error as Error).message, ...remoteOf(remote) },
              "the agent refused an HJ 212 sample for good; recorded, the frame is answered",
              { payload: JSON.stringify(sample) },
            );
            continue;
          }
          delivery = { status: "sinkRefused" };
          problems.warn(
            "HJ212_SINK_FAILED",
            { mn: segment.mn, sample, err: error },
            "the agent could not take an HJ 212 sample; the device is not answered, so it resends",
          );
        }
      }
    }
    return delivery;
  }

  private unknownMn(segment: DataSegment, text?: string, remote?: string): Delivery {
    this.deps.counts.unknownMn++;
    this.deps.problems.refuse(
      "HJ212_UNKNOWN_MN",
      { mn: segment.mn, cn: segment.cn, ...remoteOf(remote) },
      "HJ 212 data from an MN the mapping does not know; add it to mapping.devices",
      {
        reason: `MN ${segment.mn} is not mapped to a device`,
        ...(text !== undefined ? { payload: text } : {}),
      },
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

function remoteOf(remote: string | undefined): { remote?: string } {
  return remote === undefined ? {} : { remote };
}

/** The factor's fields as sent (`a34002-Avg=25000,a34002-Flag=N`), for its dead letter. */
function factorText(segment: DataSegment, code: string): string {
  const factor = segment.cp.factors.find((f) => f.code === code);
  if (factor === undefined) return code;
  return Object.entries(factor.fields)
    .map(([suffix, value]) => `${code}-${suffix}=${value}`)
    .join(",");
}
