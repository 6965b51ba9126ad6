import { describe, expect, it } from "vitest";
import { zeroCounts } from "../../../../edge/drivers/hj212-counts.js";
import { Hj212Intake } from "../../../../edge/drivers/hj212-intake.js";
import { ProblemLog } from "../../../../edge/drivers/hj212-problems.js";
import { Hj212Session } from "../../../../edge/drivers/hj212-session.js";
import { parseSegment } from "../../../../edge/hj212/segment.js";
import { SplitReassembler } from "../../../../edge/hj212/split.js";
import { frameOf, seeded } from "../hj212/vectors.js";
import { capturedLogger, decodeReplies, driverOptions, SITE_MN } from "./hj212-fixtures.js";

/**
 * Mutated data segments with a correct CRC, so every one gets past the framer into the parser,
 * the split reassembler, the mapping and the sink (which refuses some at random). Nothing may
 * throw, every reply must be a well-formed frame, and a 9014 may only answer a segment that
 * parses and, for data, comes from a known MN. HJ212_SESSION_FUZZ_SEED=<seed> replays a run.
 */
const SEED = Number(process.env["HJ212_SESSION_FUZZ_SEED"] ?? 9_014);
const CASES = 3_000;

const BASES = [
  `QN=20221127080000001;ST=39;CN=2051;PW=123456;MN=${SITE_MN};Flag=5;CP=&&DataTime=20221127080000;a34002-Avg=88,a34002-Flag=N;a50001-Avg=67.4,a50001-Flag=N&&`,
  `QN=20221127080000002;ST=39;CN=2011;PW=1;MN=${SITE_MN};Flag=5;CP=&&DataTime=20221127080005;a50001-Rtd=71.2,a50001-Flag=N&&`,
  `QN=3;ST=39;CN=2051;MN=${SITE_MN};Flag=7;PNUM=2;PNO=1;CP=&&DataTime=20221127080000;a34002-Avg=1&&`,
  `QN=4;ST=39;CN=2051;MN=${SITE_MN};Flag=7;PNUM=2;PNO=2;CP=&&DataTime=20221127080000;a34004-Avg=1&&`,
  "ST=32;CN=2031;PW=1;MN=88888880000001;CP=&&DataTime=20040516000000000;yy01-Avg=1.2;fj01-Avg=1&&",
  "QN=5;ST=32;CN=1062;PW=1;MN=88888880000001;Flag=5;CP=&&RtdInterval=30&&",
];
const DATA_CNS = new Set(["2011", "2051", "2061", "2031"]);
const ALPHABET = "0123456789;=,&-NMTCDBaQxyz.#\u00e9";

function mutate(rng: () => number, text: string): string {
  let out = text;
  const edits = 1 + Math.floor(rng() * 4);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(rng() * (out.length + 1));
    const char = ALPHABET[Math.floor(rng() * ALPHABET.length)] ?? ";";
    const kind = Math.floor(rng() * 4);
    if (kind === 0) out = out.slice(0, at) + char + out.slice(at + 1);
    else if (kind === 1) out = out.slice(0, at) + out.slice(at + 1);
    else if (kind === 2) out = out.slice(0, at) + char + out.slice(at);
    else out = out.slice(0, at) + out.slice(at, at + 12) + out.slice(at);
  }
  return out;
}

describe("HJ 212 session fuzz", () => {
  it(`takes ${CASES} mutated frames with a correct CRC without throwing (seed ${SEED})`, () => {
    const rng = seeded(SEED);
    const options = driverOptions();
    const { logger } = capturedLogger();
    const counts = zeroCounts();
    const problems = new ProblemLog(logger, 60_000);
    let clock = Date.parse("2026-11-27T03:00:00Z");
    const intake = new Hj212Intake({
      mapping: options.mapping,
      dataCns: new Set(options.dataCns),
      sink: () => {
        if (rng() < 0.1) throw new Error("refused at random");
      },
      split: new SplitReassembler({ maxPendingGroups: 4, timeoutMs: 60_000 }),
      counts,
      problems,
      log: logger,
      now: () => clock,
    });
    const session = new Hj212Session(options, { intake, counts, problems, remote: "fuzz" });
    for (let i = 0; i < CASES; i++) {
      const base = BASES[Math.floor(rng() * BASES.length)] ?? "";
      const segment = mutate(rng, base);
      clock += Math.floor(rng() * 5_000);
      let replies: ReturnType<typeof decodeReplies> = [];
      try {
        replies = decodeReplies(session.receive(Buffer.from(frameOf(segment))).join(""));
        if (i % 100 === 0) intake.expire();
      } catch (error) {
        throw new Error(`case ${i}, segment ${JSON.stringify(segment)}: ${String(error)}`);
      }
      for (const reply of replies) {
        expect(["9014", "9011"]).toContain(reply.cn);
        if (reply.cn !== "9014") continue;
        const parsed = parseSegment(segment);
        expect(parsed.ok, `9014 for a segment that does not parse: ${segment}`).toBe(true);
        // Data from an unknown MN is never answered as taken (other uploads, 2xxx, are answered
        // 9014 whoever sends them: they are not kept either way).
        if (parsed.ok && DATA_CNS.has(parsed.segment.cn)) {
          expect(Object.keys(options.mapping.devices)).toContain(parsed.segment.mn);
        }
      }
    }
    intake.flush();
    expect(counts.frames).toBe(CASES);
    expect(counts.badSegments).toBeGreaterThan(0);
    expect(counts.samples).toBeGreaterThan(0);
    expect(counts.sinkRefused).toBeGreaterThan(0);
  });
});
