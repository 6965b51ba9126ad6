import { describe, expect, it } from "vitest";
import { Device, type QualityFlag } from "../../../../contracts/index.js";
import type { StoredBatch, StoredReading } from "../../../../contracts/model/stored-readings.js";
import { type HistorySource, replay } from "../../../../rules/backtest/replay.js";

/*
 * The replay's order of things: readings in time order across devices, each batch arriving at its
 * newest reading, a tick at every tick instant after the readings up to it, pages that never split
 * the readings of one instant, chunk boundaries that change nothing.
 */

const device = (id: string) =>
  Device.parse({
    id,
    kind: "noise",
    model: "M",
    serial: id,
    siteId: "s",
    area: { district: "d", gridCell: "g" },
    location: { lat: 30, lon: 104 },
    expectedIntervalS: 10,
  });

const reading = (
  deviceId: string,
  timeMs: number,
  quality: QualityFlag = "normal",
): StoredReading => ({
  deviceId,
  kind: "noise",
  timeMs,
  quality,
  values: { LAeq: 50 },
  replay: false,
});

/** An in-memory store: readings by device, answered as the store answers ([from, to), limit). */
function history(readings: readonly StoredReading[]) {
  const queries: Array<{ device: string; from: number; to: number; limit: number }> = [];
  const source: HistorySource = {
    readings(d, from, to, limit) {
      queries.push({ device: d.id, from, to, limit });
      return Promise.resolve(
        readings
          .filter((r) => r.deviceId === d.id && r.timeMs >= from && r.timeMs < to)
          .sort((a, b) => a.timeMs - b.timeMs)
          .slice(0, limit),
      );
    },
  };
  return { source, queries };
}

/** What the targets saw: batches as `now: device@time,…` and ticks as `tick now`. */
function recorder() {
  let now = 0;
  const events: string[] = [];
  return {
    events,
    setNow: (ms: number) => {
      now = ms;
    },
    target: {
      onStoredBatch: (batch: StoredBatch) =>
        events.push(
          `${now}: ${Array.from({ length: batch.length }, (_, i) => `${batch.deviceId(i)}@${batch.timeMs(i)}`).join(",")}`,
        ),
      tick: () => events.push(`tick ${now}`),
    },
  };
}

/** Device a's replay over [0, 60 s) with 5-s ticks, its batches and ticks recorded. */
async function replayOf(source: HistorySource, extra: Partial<Parameters<typeof replay>[0]> = {}) {
  const r = recorder();
  await replay({
    history: source,
    devices: [device("a")],
    targets: [r.target],
    setNow: r.setNow,
    warmUpFromMs: 0,
    fromMs: 0,
    toMs: 60_000,
    tickMs: 5_000,
    ...extra,
  });
  return r.events;
}

describe("backtest replay", () => {
  it("merges devices in time order, batches up to each tick at the newest reading, ticks every tick", async () => {
    const { source } = history([
      reading("b", 5_000),
      reading("a", 3_000),
      reading("a", 10_000),
      reading("b", 12_000),
      reading("a", 19_000),
    ]);
    const r = recorder();
    const replayed = await replay({
      history: source,
      devices: [device("a"), device("b")],
      targets: [r.target],
      setNow: r.setNow,
      warmUpFromMs: 0,
      fromMs: 10_000,
      toMs: 20_000,
      tickMs: 10_000,
    });
    expect(r.events).toEqual([
      "tick 0",
      // A reading at a tick instant comes before the tick.
      "10000: a@3000,b@5000,a@10000",
      "tick 10000",
      "19000: b@12000,a@19000",
      "tick 20000",
    ]);
    expect(replayed).toEqual({ readings: 3, warmUpReadings: 2, firstMs: 10_000, lastMs: 19_000 });
  });

  it("reads in pages without splitting an instant's readings, and in chunks that change nothing", async () => {
    const all: StoredReading[] = [];
    for (let t = 0; t < 60_000; t += 1_000) {
      all.push(reading("a", t), reading("a", t, "maintenance"));
    }
    const run = async (chunkMs: number, pageSize: number) => {
      const { source, queries } = history(all);
      return { events: await replayOf(source, { chunkMs, pageSize }), queries };
    };
    const whole = await run(3_600_000, 50_000);
    // Pages of 3 hold one and a half instants: the half is read again with the next page.
    const paged = await run(20_000, 3);
    expect(paged.events).toEqual(whole.events);
    expect(paged.queries.length).toBeGreaterThan(20);
    expect(paged.queries.every((q) => q.limit === 3)).toBe(true);
    const delivered = whole.events
      .filter((e) => !e.startsWith("tick"))
      .join(",")
      .split(",");
    expect(delivered).toHaveLength(120);
  });

  it("reads chunks of the size the source asks for", async () => {
    const all = Array.from({ length: 60 }, (_, i) => reading("a", i * 1_000));
    const whole = history(all);
    const wholeEvents = await replayOf(whole.source);
    // Device a is expected every 10 s: 3 readings are a 30-s chunk.
    const small = history(all);
    const smallEvents = await replayOf({ ...small.source, chunkReadings: 3 });
    expect(smallEvents).toEqual(wholeEvents);
    expect(whole.queries.map((q) => [q.from, q.to])).toEqual([[0, 60_000]]);
    expect(small.queries.map((q) => [q.from, q.to])).toEqual([
      [0, 30_000],
      [30_000, 60_000],
    ]);
    // At least 2 readings of each device: with one device, a 20-s chunk, not the 10 s of 1.
    const floored = history(all);
    const flooredEvents = await replayOf({
      ...floored.source,
      chunkReadings: 1,
      readingsPerDevice: 2,
    });
    expect(flooredEvents).toEqual(wholeEvents);
    expect(floored.queries.map((q) => q.to - q.from)).toEqual([20_000, 20_000, 20_000]);
  });

  it("stops past its reading budget", async () => {
    const { source } = history(Array.from({ length: 50 }, (_, i) => reading("a", i * 1_000)));
    await expect(replayOf(source, { maxReadings: 10 })).rejects.toThrow("more than 10 readings");
  });
});
