import { describe, expect, it } from "vitest";
import { Series } from "../../../../rules/engine/series.js";
import type { Sample } from "../../../../rules/engine/window.js";

/** A plain sorted array kept the way Series must behave: the reference. */
function reference(samples: readonly Sample[]): Sample[] {
  const byTime = new Map<number, Sample>();
  for (const s of samples) byTime.set(s.at, s);
  return [...byTime.values()].sort((a, b) => a.at - b.at);
}

const sample = (at: number, value: number | boolean, quality: Sample["quality"] = "normal") => ({
  at,
  value,
  quality,
  replayed: at % 7 === 0,
});

describe("Series", () => {
  it("keeps samples in time order, in or out of order, a repeated instant replacing", () => {
    const series = new Series();
    const inserted: Sample[] = [];
    // In order, then some late ones, one repeated instant, across several growths.
    const times = [...Array.from({ length: 100 }, (_, i) => i * 10), 55, 5, 995, 500, 3];
    times.forEach((at, i) => {
      const s = sample(at, i % 5 === 0 ? i % 2 === 0 : i * 1.5, i % 3 === 0 ? "fault" : "normal");
      series.insert(s.at, s.value, s.quality, s.replayed);
      inserted.push(s);
    });
    expect(series.all()).toEqual(reference(inserted));
    expect(series.length).toBe(reference(inserted).length);
  });

  it("drops the oldest, compacts and shrinks, and still answers by instant", () => {
    const series = new Series();
    for (let i = 0; i < 1000; i++) series.insert(i, i, "normal", false);
    series.dropOldest(990);
    expect(series.length).toBe(10);
    expect(series.atOf(0)).toBe(990);
    for (let i = 1000; i < 1100; i++) series.insert(i, i, "calibration", false);
    expect(series.length).toBe(110);
    expect(series.all().map((s) => s.at)).toEqual(Array.from({ length: 110 }, (_, i) => 990 + i));
    expect(series.qualityOf(109)).toBe("calibration");
    series.dropOldest(1000);
    expect(series.length).toBe(0);
    expect(series.all()).toEqual([]);
  });

  it("keeps its room while batches refill it, and gives it back once it stays small", () => {
    const series = new Series();
    let at = 0;
    for (let batch = 0; batch < 5; batch++) {
      for (let i = 0; i < 1000; i++) series.insert(at++, i, "normal", false);
      series.dropOldest(series.length - 1);
      expect(series.length).toBe(1);
      expect(series.capacity).toBe(1024);
    }
    // Small before the drop as well: the columns shrink to fit.
    for (let i = 0; i < 3; i++) series.insert(at++, i, "normal", false);
    series.dropOldest(2);
    expect(series.capacity).toBe(8);
    expect(series.all().map((s) => s.at)).toEqual([at - 2, at - 1]);
  });

  it("inserts a late sample in place when the columns must first be compacted or grown", () => {
    for (const drop of [0, 3, 6]) {
      const series = new Series();
      // Eight fill the first columns, some are dropped from the head, and a late sample arrives
      // while the columns are full: room is made (grown, or compacted when most of the head is
      // dropped) before the newer samples shift up.
      for (let i = 0; i < 8; i++) series.insert(i * 10, i, "normal", false);
      series.dropOldest(drop);
      const late = drop * 10 + 5;
      series.insert(late, 99, "normal", false);
      series.insert(75, 98, "normal", false);
      const kept = Array.from({ length: 8 }, (_, i) => i * 10).slice(drop);
      expect(series.all().map((s) => s.at)).toEqual([...kept, late, 75].sort((x, y) => x - y));
      expect(series.all().find((s) => s.at === late)?.value).toBe(99);
    }
  });

  it("finds instants and gives a look-back with the newest sample before it", () => {
    const series = new Series();
    for (const at of [10, 20, 30, 40]) series.insert(at, at / 10, "normal", false);
    expect(series.firstAtOrAfter(20)).toBe(1);
    expect(series.firstAfter(20)).toBe(2);
    expect(series.firstAtOrAfter(45)).toBe(4);
    expect(series.since(25).map((s) => s.at)).toEqual([20, 30, 40]);
    expect(series.since(5).map((s) => s.at)).toEqual([10, 20, 30, 40]);
    expect(series.since(50).map((s) => s.at)).toEqual([40]);
  });

  it("changes its epoch when a sample lands anywhere but after the newest", () => {
    const series = new Series();
    series.insert(10, 1, "normal", false);
    series.insert(20, 2, "normal", false);
    const appended = series.epoch;
    series.insert(30, 3, "normal", false);
    expect(series.epoch).toBe(appended);
    series.insert(15, 1.5, "normal", false);
    expect(series.epoch).toBeGreaterThan(appended);
    const late = series.epoch;
    series.insert(30, 4, "normal", false);
    expect(series.epoch).toBeGreaterThan(late);
    expect(series.isNumber(0)).toBe(true);
  });

  it("round-trips switch states, flags and the replay mark", () => {
    const series = new Series();
    series.insert(1, true, "maintenance", true);
    series.insert(2, false, "normal", false);
    series.insert(3, -0.5, "manual", false);
    expect(series.all()).toEqual([
      { at: 1, value: true, quality: "maintenance", replayed: true },
      { at: 2, value: false, quality: "normal", replayed: false },
      { at: 3, value: -0.5, quality: "manual", replayed: false },
    ]);
    expect(series.numberOf(0)).toBe(1);
    expect(series.valueOf(1)).toBe(false);
  });
});
