import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { type Device, IngestConfig, type Site } from "../../../contracts/index.js";
import { ingestMetrics } from "../../../ingest/metrics.js";
import { metricValue } from "../../support/broker.js";
import { Pipeline } from "../../../ingest/pipeline.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import { StoreUnavailableError, type TimeSeriesStore } from "../../../ingest/store/types.js";
import { until } from "../../support/broker.js";

/**
 * The commit rules on the real pipeline, state and SQLite store (in memory), with a clock the test
 * moves and a store it can take down: first messages, gaps, outages, lost commits.
 */
const area = { district: "D", gridCell: "G" };
const device: Device = {
  id: "noise-1" as Device["id"],
  kind: "noise",
  model: "M",
  serial: "S",
  location: { lat: 30, lon: 104 },
  area,
  siteId: "s1" as Device["siteId"],
  expectedIntervalS: 60,
  enabled: true,
};
const site: Site = {
  id: "s1" as Site["id"],
  type: "ambient",
  name: "S",
  area,
  location: { lat: 30, lon: 104 },
};

function harness() {
  // Real time (the pipeline waits on timers) plus whatever the test skips ahead.
  const t0 = Date.now();
  let skipped = 0;
  const clock = () => Date.parse("2026-11-27T08:00:00Z") + (Date.now() - t0) + skipped;
  let storeDown = false;
  const inner = createSqliteStore(":memory:");
  const store: TimeSeriesStore = {
    ...inner,
    write: (points) =>
      storeDown
        ? Promise.reject(new StoreUnavailableError("down for the test"))
        : inner.write(points),
  };
  const state = new IngestState(":memory:");
  const commits: Array<[string, number]> = [];
  const metrics = ingestMetrics();
  const pipeline = new Pipeline({
    log: pino({ level: "silent" }),
    config: IngestConfig.parse({ batch: { maxDelayMs: 5 }, gapTimeoutMs: 600_000 }),
    state,
    store,
    registry: { device: (id) => (id === device.id ? device : undefined), site: () => site },
    metrics,
    publishCommit: (id, seq) => commits.push([id, seq]),
    brokerConnected: () => true,
    now: clock,
  });
  const send = (seq: number, extra: Record<string, unknown> = {}) => {
    const now = clock();
    const payload = {
      v: 1,
      deviceId: "noise-1",
      seq,
      kind: "noise",
      readings: [
        {
          ts: new Date(now - 60_000 + seq).toISOString(),
          quality: "normal",
          values: { LAeq: 50 + seq },
        },
      ],
      ...extra,
    };
    state.inbox.append(
      "citywatch/v1/devices/noise-1/data",
      Buffer.from(JSON.stringify(payload)),
      now,
    );
    pipeline.notify();
  };
  const stored = async () =>
    (
      await inner.readings({
        deviceId: "noise-1",
        kind: "noise",
        fromMs: 0,
        toMs: clock() + 1e9,
        limit: 1000,
      })
    )
      .map((r) => r.seq)
      .sort((a, b) => a - b);
  return {
    state,
    pipeline,
    commits,
    metrics,
    send,
    stored,
    advance: (ms: number) => (skipped += ms),
    setStoreDown: (down: boolean) => (storeDown = down),
  };
}

describe("commit rules (real pipeline, state and store)", () => {
  it("never commits seqs below a device's first message before they are stored", async () => {
    const h = harness();
    h.pipeline.start();
    h.send(4); // seq 1..3 were published before the ingest's session existed
    await until(() => h.state.inbox.depth() === 0, "seq 4 handled");
    expect(h.state.ledger.progress("noise-1")?.committedSeq).toBe(0);
    expect(h.commits).toEqual([]);
    for (const seq of [1, 2, 3]) h.send(seq); // the edge re-sends what is not committed
    await until(() => h.state.ledger.progress("noise-1")?.committedSeq === 4, "commit 4");
    expect(await h.stored()).toEqual([1, 2, 3, 4]);
    expect(h.commits.at(-1)).toEqual(["noise-1", 4]);
    await h.pipeline.stop();
  });

  it("does not close a gap while the store is down, nor count the outage against it", async () => {
    const h = harness();
    h.pipeline.start();
    h.send(1);
    h.send(3);
    await until(() => h.state.inbox.depth() === 0, "1 and 3 handled");
    expect(h.state.ledger.progress("noise-1")?.committedSeq).toBe(1);
    h.setStoreDown(true);
    h.send(2); // the gap's message arrives while the store is down
    h.advance(11 * 60_000); // longer than the gap timeout
    await new Promise((r) => setTimeout(r, 1_300));
    expect(h.state.ledger.progress("noise-1")?.committedSeq).toBe(1);
    expect(h.state.deadLetters.list({ limit: 10 })).toEqual([]);
    h.setStoreDown(false);
    await until(
      () => h.state.ledger.progress("noise-1")?.committedSeq === 3,
      "commit 3 after recovery",
      10_000,
    );
    expect(await h.stored()).toEqual([1, 2, 3]);
    expect(h.state.deadLetters.list({ limit: 10 })).toEqual([]);
    await h.pipeline.stop();
  });

  it("records a gap that stays open past the timeout as a dead letter and moves on", async () => {
    const h = harness();
    h.pipeline.start();
    h.send(1);
    h.send(4);
    await until(() => h.state.inbox.depth() === 0, "handled");
    h.advance(11 * 60_000);
    await until(() => h.state.ledger.progress("noise-1")?.committedSeq === 4, "gap closed", 5_000);
    expect(h.state.deadLetters.list({ limit: 10 }).map((d) => [d.reason, d.seq])).toEqual([
      ["missing_seq", 2],
    ]);
    // Counted like every dead letter (one per gap).
    expect(
      await metricValue(h, "citywatch_ingest_dead_letters_total", { reason: "missing_seq" }),
    ).toBe(1);
    await h.pipeline.stop();
  });

  it("restarts gap timers when the ingest starts again", async () => {
    const h = harness();
    h.send(1);
    h.send(3);
    h.pipeline.start();
    await until(() => h.state.inbox.depth() === 0, "handled");
    await h.pipeline.stop();
    h.advance(60 * 60_000); // the ingest was down for an hour
    const again = new Pipeline({
      ...(h.pipeline as unknown as { deps: ConstructorParameters<typeof Pipeline>[0] }).deps,
    });
    again.start();
    await new Promise((r) => setTimeout(r, 1_300));
    expect(h.state.ledger.progress("noise-1")?.committedSeq).toBe(1); // seq 2 still has its full timeout
    await again.stop();
  });

  it("re-publishes the commit to a device that re-sends committed messages", async () => {
    const h = harness();
    h.pipeline.start();
    h.send(1);
    h.send(2);
    await until(() => h.commits.length > 0 && h.commits.at(-1)?.[1] === 2, "commit 2");
    h.commits.length = 0;
    h.send(1); // the device lost the commit and re-sends
    h.send(2);
    await until(() => h.commits.length === 1, "commit re-sent");
    expect(h.commits).toEqual([["noise-1", 2]]);
    expect(await h.stored()).toEqual([1, 2]);
    await h.pipeline.stop();
  });

  it("keeps readings of one time with different quality flags apart, like InfluxDB series", async () => {
    const h = harness();
    h.pipeline.start();
    const ts = new Date(Date.parse("2026-11-27T07:59:00Z")).toISOString();
    h.send(1, {
      readings: [
        { ts, quality: "normal", values: { LAeq: 55, LAmax: 70 } },
        { ts, quality: "fault", values: { L90: 40 } },
      ],
    });
    await until(() => h.state.inbox.depth() === 0, "handled");
    const stored = await createStoredView(h);
    expect(stored).toEqual([
      { quality: "fault", values: { L90: 40 } },
      { quality: "normal", values: { LAeq: 55, LAmax: 70 } },
    ]);
    await h.pipeline.stop();
  });
});

async function createStoredView(h: ReturnType<typeof harness>) {
  const readings = await (
    h.pipeline as unknown as { deps: { store: TimeSeriesStore } }
  ).deps.store.readings({
    deviceId: "noise-1",
    kind: "noise",
    fromMs: 0,
    toMs: Date.parse("2030-01-01T00:00:00Z"),
    limit: 10,
  });
  return readings
    .map((r) => ({ quality: r.quality, values: r.values }))
    .sort((a, b) => a.quality.localeCompare(b.quality));
}
