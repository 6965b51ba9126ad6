import { describe, expect, it } from "vitest";
import { zeroCounts } from "../../../../edge/drivers/hj212-counts.js";
import { Hj212Intake } from "../../../../edge/drivers/hj212-intake.js";
import { ProblemLog } from "../../../../edge/drivers/hj212-problems.js";
import { Hj212Session } from "../../../../edge/drivers/hj212-session.js";
import { formatModbusCrc, modbusCrc } from "../../../../edge/hj212/crc.js";
import type { FieldSample } from "../../../../edge/drivers/types.js";
import { SplitReassembler } from "../../../../edge/hj212/split.js";
import { frameOf, VECTOR_1062_FRAME, VECTOR_2051_FRAME } from "../hj212/vectors.js";
import {
  capturedLogger,
  decodeReplies,
  driverOptions,
  recordingSink,
  siteSegment,
} from "./hj212-fixtures.js";

/** A session with the example mapping, a recording sink and a clock the test moves. */
function harness(overrides: Record<string, unknown> = {}) {
  const options = driverOptions(overrides);
  const recorder = recordingSink();
  const { samples, refuse } = recorder;
  /** replies9014 as the sink saw it at each sample: the reply must come after the sink. */
  const repliesSeenBySink: number[] = [];
  const sink = (sample: FieldSample) => {
    repliesSeenBySink.push(counts.replies9014);
    recorder.sink(sample);
  };
  const { logger, lines } = capturedLogger();
  const clock = { ms: Date.parse("2026-11-27T03:00:00Z") };
  const now = () => clock.ms;
  const counts = zeroCounts();
  const problems = new ProblemLog(logger, 60_000, now);
  const intake = new Hj212Intake({
    mapping: options.mapping,
    dataCns: new Set(options.dataCns),
    sink,
    split: new SplitReassembler({ timeoutMs: 120_000 }),
    counts,
    problems,
    log: logger,
    now,
  });
  const session = new Hj212Session(options, { intake, counts, problems, remote: "test" });
  /** Sends bytes as one read; returns the decoded replies. */
  const send = (wire: string | Uint8Array) =>
    decodeReplies(session.receive(typeof wire === "string" ? Buffer.from(wire) : wire).join(""));
  return { session, intake, samples, refuse, counts, lines, clock, send, repliesSeenBySink };
}

const MINUTE_CP =
  "DataTime=20221127080000;a34002-Avg=88,a34002-Flag=N;a50001-Avg=67.4,a50001-Flag=N";
/** Minute data starting 08:00 Asia/Shanghai: the reading's ts is the end of the minute. */
const MINUTE_END = Date.UTC(2022, 10, 27, 0, 1, 0);

describe("HJ 212 session: frames to samples and replies", () => {
  it("maps the air-quality test vector and sends no reply for Flag=4", () => {
    const h = harness();
    expect(h.send(VECTOR_2051_FRAME)).toEqual([]);
    expect(h.samples).toEqual([
      {
        deviceId: "air-1",
        kind: "dust",
        ts: Date.UTC(2022, 4, 13, 8, 27, 0),
        quality: "normal",
        values: {
          pm2_5: 14,
          pm10: 31,
          windSpeed: 1,
          windDirection: 11,
          temperature: 17,
          humidity: 85,
        },
        form: "interval",
      },
    ]);
    // Its gases and pressure are not dust quantities: counted, not an error.
    expect(h.counts).toMatchObject({ frames: 1, dataFrames: 1, unmappedFactors: 5, samples: 1 });
    expect(h.counts.replies9014).toBe(0);
  });

  it("answers 9014 with the frame's QN after the sink took every sample", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment(MINUTE_CP)));
    expect(h.samples.map((s) => [s.deviceId, s.ts, s.values, s.form])).toEqual([
      ["site-17-dust", MINUTE_END, { pm10: 88 }, "interval"],
      ["site-17-noise", MINUTE_END, { LAeq: 67.4 }, "interval"],
    ]);
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatchObject({
      qn: "20221127080000001",
      st: "91",
      cn: "9014",
      mn: "010000A8900016F000169DC0",
      flag: 4,
      ackRequested: false,
    });
    expect(h.counts.replies9014).toBe(1);
  });

  it("has handed every sample to the sink before it makes the 9014", () => {
    const h = harness();
    const frame = (qn: string) => frameOf(siteSegment(MINUTE_CP, { qn }));
    expect(h.send(frame("1") + frame("2")).map((r) => r.cn)).toEqual(["9014", "9014"]);
    expect(h.repliesSeenBySink).toEqual([0, 0, 1, 1]);
  });

  it("answers a resent copy of a frame it answered 9014 without delivering it twice (a lost 9014)", () => {
    const h = harness();
    const frame = frameOf(siteSegment(MINUTE_CP, { qn: "7" }));
    expect(h.send(frame).map((r) => r.cn)).toEqual(["9014"]);
    expect(h.send(frame).map((r) => [r.cn, r.qn])).toEqual([["9014", "7"]]);
    expect(h.samples).toHaveLength(2); // dust and noise, once
    expect(h.counts.duplicateFrames).toBe(1);
  });

  it("takes real-time data (CN 2011) as samples for the agent to aggregate, read from -Rtd", () => {
    const h = harness();
    h.send(
      frameOf(siteSegment("DataTime=20221127080005;a50001-Rtd=71.2,a50001-Flag=N", { cn: "2011" })),
    );
    expect(h.samples).toEqual([
      {
        deviceId: "site-17-noise",
        kind: "noise",
        ts: Date.UTC(2022, 10, 27, 0, 0, 5),
        quality: "normal",
        values: { LAeq: 71.2 },
        form: "sample",
      },
    ]);
  });

  it("reads hourly (2061) and daily (2031) data as interval values ending at the period's end", () => {
    const h = harness();
    h.send(frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=70", { cn: "2061" })));
    h.send(frameOf(siteSegment("DataTime=20221127000000;a34002-Avg=65", { cn: "2031" })));
    expect(h.samples.map((s) => [s.ts, s.values, s.form])).toEqual([
      [Date.UTC(2022, 10, 27, 1, 0, 0), { pm10: 70 }, "interval"],
      [Date.UTC(2022, 10, 27, 16, 0, 0), { pm10: 65 }, "interval"],
    ]);
  });

  it("answers but does not deliver data of a CN it is not configured to take", () => {
    const h = harness({ dataCns: ["2051"] });
    const replies = h.send(
      frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=70", { cn: "2061" })),
    );
    expect(replies.map((r) => r.cn)).toEqual(["9014"]);
    expect(h.samples).toEqual([]);
    expect(h.counts.ignoredData).toBe(1);
    h.send(frameOf(siteSegment(MINUTE_CP)));
    expect(h.samples).toHaveLength(2);
  });

  it("accepts a lowercase CRC", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment(MINUTE_CP), { lowercase: true }));
    expect(h.samples).toHaveLength(2);
    expect(replies.map((r) => r.cn)).toEqual(["9014"]);
  });

  it("answers a frame without CR LF at once, framed by its length field", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment(MINUTE_CP), { tail: "" }));
    expect(replies.map((r) => r.cn)).toEqual(["9014"]);
    expect(h.samples).toHaveLength(2);
    expect(h.session.bufferedBytes).toBe(0);
  });

  it("takes a 2005 frame without QN and Flag, and sends no reply (none was asked)", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment(MINUTE_CP, { qn: null, flag: null })));
    expect(replies).toEqual([]);
    expect(h.samples).toHaveLength(2);
  });

  it("reads a 17-digit DataTime (2005 devices append milliseconds)", () => {
    const h = harness();
    h.send(frameOf(siteSegment("DataTime=20221127080000123;a34002-Avg=88,a34002-Flag=N")));
    expect(h.samples.map((s) => s.ts)).toEqual([MINUTE_END]);
  });

  it("reassembles a frame cut across reads at any byte, and answers once its CRC is in", () => {
    const wire = Buffer.from(frameOf(siteSegment(MINUTE_CP)));
    const crcEnd = wire.length - 2; // the frame is complete without its CR LF
    for (const cuts of [[1], [2, 7], [5, 40, crcEnd - 1], [crcEnd - 4, crcEnd - 1]]) {
      const h = harness();
      let from = 0;
      for (const cut of cuts) {
        expect(h.send(wire.subarray(from, cut))).toEqual([]);
        expect(h.samples).toEqual([]);
        from = cut;
      }
      expect(h.send(wire.subarray(from, crcEnd)).map((r) => r.cn)).toEqual(["9014"]);
      expect(h.samples).toHaveLength(2);
      // The CR LF arriving in a later read is skipped silently.
      expect(h.send(wire.subarray(crcEnd))).toEqual([]);
      expect(h.counts.garbage).toBe(0);
    }
  });

  it("takes two frames in one read and answers both, in order", () => {
    const h = harness();
    const second = siteSegment("DataTime=20221127080100;a34002-Avg=90", {
      qn: "20221127080100002",
    });
    const replies = h.send(frameOf(siteSegment(MINUTE_CP)) + frameOf(second));
    expect(replies.map((r) => r.qn)).toEqual(["20221127080000001", "20221127080100002"]);
    expect(h.samples).toHaveLength(3);
  });

  it("maps flags to quality and splits one frame's factors by quality", () => {
    const h = harness();
    h.send(
      frameOf(
        siteSegment(
          "DataTime=20221127080000;a34002-Avg=88,a34002-Flag=N;a34004-Avg=40,a34004-Flag=C",
        ),
      ),
    );
    expect(h.samples.map((s) => [s.quality, s.values])).toEqual([
      ["normal", { pm10: 88 }],
      ["calibration", { pm2_5: 40 }],
    ]);
  });

  it("counts unknown factors and still answers 9014 (resending cannot fix them)", () => {
    const h = harness();
    const replies = h.send(
      frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88;zz999-Avg=1;a99999-Avg=2")),
    );
    expect(replies.map((r) => r.cn)).toEqual(["9014"]);
    expect(h.samples.map((s) => s.values)).toEqual([{ pm10: 88 }]);
    expect(h.counts.unmappedFactors).toBe(2);
    const warning = h.lines.find((l) => l["code"] === "HJ212_UNMAPPED_FACTOR");
    expect(warning).toMatchObject({
      level: 40,
      mn: "010000A8900016F000169DC0",
      factors: ["zz999", "a99999"],
    });
  });

  it("counts a value that is not a number and keeps the frame's other values", () => {
    const h = harness();
    const replies = h.send(
      frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=8x8;a50001-Avg=60")),
    );
    expect(replies.map((r) => r.cn)).toEqual(["9014"]);
    expect(h.samples.map((s) => s.values)).toEqual([{ LAeq: 60 }]);
    expect(h.counts.badValues).toBe(1);
  });

  it("refuses a bad CRC with 9011 QnRtn=9 and hands nothing to the sink", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment(MINUTE_CP), { crc: "0000" }));
    expect(h.samples).toEqual([]);
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatchObject({ qn: "20221127080000001", cn: "9011", st: "91" });
    expect(replies[0]?.cp.params).toEqual({ QnRtn: "9" });
    expect(h.counts).toMatchObject({ crcMismatches: 1, replies9011: 1, replies9014: 0 });
  });

  it("accepts a Modbus CRC (low byte first) only in lenient mode", () => {
    const segment = siteSegment(MINUTE_CP);
    const wire = frameOf(segment, { crc: formatModbusCrc(modbusCrc(segment)) });
    const strict = harness();
    expect(strict.send(wire).map((r) => [r.cn, r.cp.params["QnRtn"]])).toEqual([["9011", "9"]]);
    expect(strict.samples).toEqual([]);
    const lenient = harness({ crc: "lenient" });
    expect(lenient.send(wire).map((r) => r.cn)).toEqual(["9014"]);
    expect(lenient.samples).toHaveLength(2);
    expect(lenient.counts.lenientCrcFrames).toBe(1);
  });

  it("answers an unknown MN with 9011 QnRtn=4, never 9014", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment(MINUTE_CP, { mn: "NOBODY0001" })));
    expect(replies.map((r) => [r.cn, r.mn, r.cp.params["QnRtn"]])).toEqual([
      ["9011", "NOBODY0001", "4"],
    ]);
    expect(h.counts.unknownMn).toBe(1);
    expect(h.samples).toEqual([]);
  });

  it("answers an impossible DataTime with 9011 QnRtn=2", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment("DataTime=20221332080000;a34002-Avg=88")));
    expect(replies.map((r) => [r.cn, r.cp.params["QnRtn"]])).toEqual([["9011", "2"]]);
    expect(h.counts.badDataTime).toBe(1);
  });

  it("answers a segment that does not parse with 9011 QnRtn=100", () => {
    const h = harness();
    const replies = h.send(frameOf(siteSegment(MINUTE_CP, { extra: "CN=2061" })));
    expect(replies.map((r) => [r.cn, r.cp.params["QnRtn"]])).toEqual([["9011", "100"]]);
    expect(h.counts.badSegments).toBe(1);
  });

  it("does not answer when the sink refuses, so the device resends; the refusal is counted", () => {
    const h = harness();
    h.refuse("write-ahead log unavailable");
    expect(h.send(frameOf(siteSegment(MINUTE_CP)))).toEqual([]);
    expect(h.counts).toMatchObject({ sinkRefused: 2, samples: 0, replies9014: 0 });
    h.refuse(undefined);
    expect(h.send(frameOf(siteSegment(MINUTE_CP))).map((r) => r.cn)).toEqual(["9014"]);
    expect(h.samples).toHaveLength(2);
  });

  it("answers a request it does not execute (CN 1062 of the HJ 212-2017 Appendix A vector) with 9011 QnRtn=2", () => {
    const h = harness();
    const replies = h.send(VECTOR_1062_FRAME);
    expect(replies.map((r) => [r.qn, r.cn, r.cp.params["QnRtn"]])).toEqual([
      ["20160801085857223", "9011", "2"],
    ]);
    expect(h.counts.commands).toBe(1);
  });

  it("skips garbage before a frame, counts it, and takes the frame", () => {
    const h = harness();
    const replies = h.send(`\x00\xffHELLO##ab${frameOf(siteSegment(MINUTE_CP))}`);
    expect(replies.map((r) => r.cn)).toEqual(["9014"]);
    expect(h.samples).toHaveLength(2);
    expect(h.counts.garbage + h.counts.badLength).toBeGreaterThanOrEqual(1);
    expect(h.counts.garbageBytes).toBeGreaterThan(0);
  });

  it("refuses an oversized length field before buffering it, and recovers", () => {
    const h = harness({ maxFrameBytes: 1_024, maxBufferBytes: 2_048 });
    const replies = h.send(
      `##9000QN=1;ST=39${"x".repeat(3_000)}${frameOf(siteSegment(MINUTE_CP))}`,
    );
    expect(h.counts.frameTooLong).toBe(1);
    expect(replies.map((r) => r.cn)).toEqual(["9014"]);
    expect(h.session.bufferedBytes).toBe(0);
  });

  it("counts a frame cut off by the connection closing", () => {
    const h = harness();
    h.send(frameOf(siteSegment(MINUTE_CP)).slice(0, 50));
    h.session.end();
    expect(h.counts.truncated).toBe(1);
    expect(h.samples).toEqual([]);
  });

  it("passes on/off quantities as 1 and 0", () => {
    const h = harness();
    h.send(
      frameOf(
        siteSegment("DataTime=20221127120000;yy01-Avg=1.8;fj01-Avg=1;jh01-Avg=0", {
          mn: "88888880000001",
        }),
      ),
    );
    expect(h.samples.map((s) => [s.deviceId, s.values])).toEqual([
      ["restaurant-5-fume", { oilFume: 1.8, fanOn: 1, purifierOn: 0 }],
    ]);
  });
});

describe("HJ 212 session: split packets", () => {
  const piece = (no: number, cp: string, count = 2) =>
    frameOf(
      siteSegment(`DataTime=20221127080000;${cp}`, {
        qn: `2022112708000000${no}`,
        flag: 7,
        extra: `PNUM=${count};PNO=${no}`,
      }),
    );

  it("answers each piece and hands the packet over when its last piece arrives", () => {
    const h = harness();
    expect(h.send(piece(2, "a50001-Avg=67.4")).map((r) => [r.cn, r.qn])).toEqual([
      ["9014", "20221127080000002"],
    ]);
    expect(h.samples).toEqual([]);
    // A resent piece is answered again and not taken twice.
    expect(h.send(piece(2, "a50001-Avg=67.4")).map((r) => r.cn)).toEqual(["9014"]);
    expect(h.send(piece(1, "a34002-Avg=88")).map((r) => [r.cn, r.qn])).toEqual([
      ["9014", "20221127080000001"],
    ]);
    expect(h.samples.map((s) => [s.deviceId, s.values])).toEqual([
      ["site-17-dust", { pm10: 88 }],
      ["site-17-noise", { LAeq: 67.4 }],
    ]);
    expect(h.counts).toMatchObject({ splitPieces: 3, splitDuplicates: 1, splitUnassembled: 0 });
  });

  it("answers no piece of an unknown monitor with 9014", () => {
    const h = harness();
    const unknown = frameOf(
      siteSegment("DataTime=20221127080000;a34002-Avg=88", {
        mn: "NOBODY0001",
        flag: 7,
        extra: "PNUM=2;PNO=1",
      }),
    );
    expect(h.send(unknown).map((r) => [r.cn, r.cp.params["QnRtn"]])).toEqual([["9011", "4"]]);
    expect(h.counts).toMatchObject({ unknownMn: 1, splitPieces: 0 });
  });

  it("delivers the pieces of a packet that never completes one by one after the timeout", () => {
    const h = harness();
    h.send(piece(1, "a34002-Avg=88", 3));
    h.intake.expire();
    expect(h.samples).toEqual([]);
    h.clock.ms += 120_000;
    h.intake.expire();
    expect(h.samples.map((s) => [s.deviceId, s.values])).toEqual([["site-17-dust", { pm10: 88 }]]);
    expect(h.counts.splitUnassembled).toBe(1);
    expect(h.lines.some((l) => l["code"] === "HJ212_SPLIT_INCOMPLETE")).toBe(true);
  });

  it("delivers pending pieces at flush (driver stop)", () => {
    const h = harness();
    h.send(piece(1, "a34002-Avg=88"));
    h.intake.flush();
    expect(h.samples.map((s) => s.values)).toEqual([{ pm10: 88 }]);
  });
});

describe("ProblemLog", () => {
  it("warns at most once per code per interval and says how many were held back", () => {
    const h = harness();
    const bad = frameOf(siteSegment(MINUTE_CP), { crc: "0000" });
    for (let i = 0; i < 5; i++) h.send(bad);
    const warnings = () =>
      h.lines.filter((l) => l["code"] === "HJ212_CRC_MISMATCH" && l["level"] === 40);
    expect(warnings()).toHaveLength(1);
    h.clock.ms += 60_000;
    h.send(bad);
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]).toMatchObject({ heldBack: 4 });
    expect(h.counts.crcMismatches).toBe(6);
  });
});
