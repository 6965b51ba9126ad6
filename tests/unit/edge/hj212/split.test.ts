import { describe, expect, it } from "vitest";
import { Hj212Framer } from "../../../../edge/hj212/framer.js";
import { parseSegment, type DataSegment } from "../../../../edge/hj212/segment.js";
import { SplitReassembler, type SplitOutcome } from "../../../../edge/hj212/split.js";
import { frameOf } from "./vectors.js";

function parsed(text: string): DataSegment {
  const result = parseSegment(text);
  if (!result.ok) throw new Error(result.error.reason);
  return result.segment;
}

function piece(
  index: number,
  count: number,
  cp: string,
  options: { mn?: string; dataTime?: string } = {},
) {
  const dataTime = options.dataTime ?? "20220513162600";
  return parsed(
    `QN=2022051316260837${index};ST=39;CN=2051;PW=123456;MN=${options.mn ?? "SITE7"};Flag=7;PNUM=${count};PNO=${index};CP=&&DataTime=${dataTime};${cp}&&`,
  );
}

const PIECES = [
  piece(1, 3, "a34001-Avg=80,a34001-Flag=N;a34002-Avg=31,a34002-Flag=N"),
  piece(2, 3, "a34004-Avg=14,a34004-Flag=N"),
  piece(3, 3, "a50001-Avg=61.2,a50001-Flag=N"),
];

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

function complete(outcome: SplitOutcome): DataSegment {
  if (outcome.status !== "complete") throw new Error(`not complete: ${outcome.status}`);
  return outcome.segment;
}

describe("SplitReassembler", () => {
  it("merges PNO 1..PNUM arriving in any order into one CP, in PNO order", () => {
    for (const order of permutations(PIECES)) {
      const split = new SplitReassembler();
      const outcomes = order.map((p, i) => split.add(p, 1_000 * i).outcome);
      expect(outcomes.slice(0, 2).map((o) => o.status)).toEqual(["pending", "pending"]);
      const merged = complete(outcomes[2] ?? { status: "duplicate", index: 0 });
      expect(merged.packet).toBeUndefined();
      expect(merged.flag).toBe(5); // D cleared, A and the edition kept
      expect(merged.qn).toBe("20220513162608371"); // the header of PNO 1
      expect(merged.cp.dataTime).toBe("20220513162600");
      expect(merged.cp.factors.map((f) => [f.code, f.fields["Avg"]])).toEqual([
        ["a34001", "80"],
        ["a34002", "31"],
        ["a34004", "14"],
        ["a50001", "61.2"],
      ]);
      expect(split.pendingGroups).toBe(0);
    }
  });

  it("returns every piece of a completed packet (each had its own QN to answer)", () => {
    const split = new SplitReassembler();
    split.add(PIECES[2] as DataSegment, 0);
    split.add(PIECES[0] as DataSegment, 0);
    const { outcome } = split.add(PIECES[1] as DataSegment, 0);
    expect(outcome.status === "complete" && outcome.pieces.map((p) => p.qn)).toEqual([
      "20220513162608371",
      "20220513162608372",
      "20220513162608373",
    ]);
  });

  it("passes a segment that is not split through", () => {
    const whole = parsed("ST=22;CN=2011;MN=X;CP=&&DataTime=20220513162600;a01-Rtd=1&&");
    expect(new SplitReassembler().add(whole, 0).outcome).toEqual({
      status: "whole",
      segment: whole,
    });
  });

  it("completes a packet of one piece at once", () => {
    const split = new SplitReassembler();
    expect(split.add(piece(1, 1, "a01-Avg=1"), 0).outcome.status).toBe("complete");
  });

  it("keeps the first copy of a resent piece", () => {
    const split = new SplitReassembler();
    split.add(PIECES[0] as DataSegment, 0);
    expect(split.add(PIECES[0] as DataSegment, 10_000).outcome).toEqual({
      status: "duplicate",
      index: 1,
    });
  });

  it("keeps packets of different devices and DataTimes apart", () => {
    const split = new SplitReassembler();
    split.add(piece(1, 2, "a01-Avg=1"), 0);
    split.add(piece(1, 2, "a01-Avg=2", { mn: "OTHER" }), 0);
    split.add(piece(1, 2, "a01-Avg=3", { dataTime: "20220513162700" }), 0);
    expect(split.pendingGroups).toBe(3);
    const merged = complete(split.add(piece(2, 2, "a02-Avg=9", { mn: "OTHER" }), 0).outcome);
    expect(merged.mn).toBe("OTHER");
    expect(merged.cp.factors.map((f) => f.fields["Avg"])).toEqual(["2", "9"]);
    expect(split.pendingGroups).toBe(2);
  });

  it("reports a packet still partial after the timeout as incomplete", () => {
    const split = new SplitReassembler({ timeoutMs: 60_000 });
    split.add(PIECES[0] as DataSegment, 0);
    split.add(PIECES[2] as DataSegment, 30_000);
    expect(split.expire(59_999)).toEqual([]);
    const [gone] = split.expire(60_000);
    expect(gone).toMatchObject({
      mn: "SITE7",
      cn: "2051",
      dataTime: "20220513162600",
      count: 3,
      received: [1, 3],
      reason: "timeout",
    });
    expect(gone?.pieces).toHaveLength(2);
    // The missing piece arriving late starts a new packet instead of completing the old one.
    expect(split.add(PIECES[1] as DataSegment, 61_000).outcome.status).toBe("pending");
  });

  it("reports timeouts from add too", () => {
    const split = new SplitReassembler({ timeoutMs: 1_000 });
    split.add(PIECES[0] as DataSegment, 0);
    const { incomplete } = split.add(piece(1, 2, "a01-Avg=1", { mn: "OTHER" }), 5_000);
    expect(incomplete.map((g) => [g.mn, g.reason])).toEqual([["SITE7", "timeout"]]);
  });

  it("gives up the oldest packet when too many are pending", () => {
    const split = new SplitReassembler({ maxPendingGroups: 2 });
    split.add(piece(1, 2, "a01-Avg=1", { mn: "A" }), 0);
    split.add(piece(1, 2, "a01-Avg=1", { mn: "B" }), 1);
    const { outcome, incomplete } = split.add(piece(1, 2, "a01-Avg=1", { mn: "C" }), 2);
    expect(outcome.status).toBe("pending");
    expect(incomplete.map((g) => [g.mn, g.reason, g.received])).toEqual([["A", "evicted", [1]]]);
    expect(split.pendingGroups).toBe(2);
  });

  it.each([
    [
      "a piece without DataTime",
      parsed("ST=22;CN=2051;MN=X;Flag=6;PNUM=2;PNO=1;CP=&&a01-Avg=1&&"),
      /without DataTime/,
    ],
    ["PNUM beyond the bound", piece(1, 99, "a01-Avg=1"), /PNUM 99 is more than the 64/],
  ])("rejects %s", (_, segment, reason) => {
    const { outcome } = new SplitReassembler().add(segment, 0);
    expect(outcome).toMatchObject({
      status: "rejected",
      reason: expect.stringMatching(reason) as unknown,
    });
  });

  it("rejects a piece whose PNUM differs from its packet's", () => {
    const split = new SplitReassembler();
    split.add(piece(1, 3, "a01-Avg=1"), 0);
    expect(split.add(piece(2, 2, "a02-Avg=1"), 0).outcome).toMatchObject({
      status: "rejected",
      reason: "PNUM 2 differs from PNUM 3 of the pieces already received",
    });
  });

  it("rejects a packet whose pieces disagree on a value", () => {
    const split = new SplitReassembler();
    split.add(piece(1, 2, "a01-Avg=1"), 0);
    const { outcome } = split.add(piece(2, 2, "a01-Avg=2"), 0);
    expect(outcome).toMatchObject({
      status: "rejected",
      reason: "pieces disagree on a01-Avg: 1 and 2",
    });
    expect(outcome.status === "rejected" && outcome.pieces).toHaveLength(2);
  });

  it("reassembles pieces that came through the framer in one read", () => {
    const framer = new Hj212Framer();
    const split = new SplitReassembler();
    const wire = [PIECES[1], PIECES[2], PIECES[0]]
      .map((p) => {
        const events = framer.push(frameOf(rawOf(p as DataSegment)));
        return events;
      })
      .flat();
    const outcomes = wire.map((event) => {
      if (event.type !== "frame") throw new Error(event.reason);
      return split.add(parsed(event.segment), 0).outcome.status;
    });
    expect(outcomes).toEqual(["pending", "pending", "complete"]);
  });
});

/** Rebuilds a piece's text from its parsed form (the test pieces use no extra fields). */
function rawOf(p: DataSegment): string {
  const cp = [
    `DataTime=${p.cp.dataTime ?? ""}`,
    ...p.cp.factors.map((f) =>
      Object.entries(f.fields)
        .map(([suffix, value]) => `${f.code}-${suffix}=${value}`)
        .join(","),
    ),
  ].join(";");
  return `QN=${p.qn ?? ""};ST=${p.st};CN=${p.cn};PW=${p.pw ?? ""};MN=${p.mn};Flag=${p.flag ?? 0};PNUM=${p.packet?.count ?? 0};PNO=${p.packet?.index ?? 0};CP=&&${cp}&&`;
}
