import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { metricValue } from "../../../infra/metrics.js";
import { until } from "../../support/broker.js";
import { type AllInOne, dataTopic, startAllInOne } from "../flapping/all-in-one.js";
import { envCount, fuzzSeed, prng } from "./prng.js";
import {
  type DeadReason,
  DeviceFuzz,
  DUPLICATE_DISTANCE,
  type ExpectedReading,
  type Kind,
} from "./uplinks.js";

/*
 * Issue #16, the fault and attack suite: the MQTT payload fuzzer. CITYWATCH_FUZZ_PAYLOADS seeded
 * payloads (100,000 by default; CITYWATCH_FUZZ_SEED replays a run) published at QoS 1 by six
 * registered devices on their own data topics to the all-in-one broker and ingest (embedded
 * store): valid uplinks, equally valid spellings of them, duplicates, and mutations each breaking
 * one rule of docs/protocol.md 4. Every valid uplink must be stored exactly once with its values,
 * nothing else may be stored, every invalid payload must be a dead letter with the reason
 * docs/protocol.md 9 gives it, every duplicate dropped, and the process must stay up.
 */

const SEED = fuzzSeed();
const PAYLOADS = envCount("CITYWATCH_FUZZ_PAYLOADS", 100_000);
/** QoS 1 messages in flight per device connection. */
const WINDOW = 48;
const DEVICES: ReadonlyArray<readonly [string, Kind]> = [
  ["fz-noise-1", "noise"],
  ["fz-noise-2", "noise"],
  ["fz-dust-1", "dust"],
  ["fz-fume-1", "cooking_fume"],
  ["fz-level-1", "water_level"],
  ["fz-tunnel-1", "utility_tunnel"],
];
const EARLIEST = Date.UTC(2000, 0, 1);
const LATEST = Date.UTC(2100, 0, 1);

let sys: AllInOne;
const clients = new Map<string, MqttClient>();
const secrets = new Map<string, string>();

beforeAll(async () => {
  sys = await startAllInOne("cw-fuzz-mqtt-");
  for (const [id, kind] of DEVICES) {
    const secret = sys.t.addDevice(id, kind);
    secrets.set(id, secret);
    clients.set(id, await sys.t.connect({ username: id, password: secret, clean: true }));
  }
});

afterAll(async () => {
  for (const c of clients.values()) await c.endAsync(true).catch(() => undefined);
  await sys?.stop();
});

interface Tally {
  valid: number;
  resent: number;
  dead: Map<DeadReason, number>;
  publishFailures: string[];
  expected: Map<string, Map<number, ExpectedReading>>;
  mutations: Map<string, number>;
}

/** One device's share of the payloads, `WINDOW` at a time on its connection. */
async function runDevice(fuzz: DeviceFuzz, count: number, tally: Tally): Promise<void> {
  const client = clients.get(fuzz.id) as MqttClient;
  const topic = dataTopic(fuzz.id);
  const acked = new Map<number, Promise<void>>();
  const expected = tally.expected.get(fuzz.id) as Map<number, ExpectedReading>;
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < count; i++) {
    const { payload, expect: e } = fuzz.next(Date.now());
    if (e.kind === "duplicate") {
      tally.resent++;
      await acked.get(e.seq); // the original is in the inbox before its duplicate
    } else if (e.kind === "valid") {
      tally.valid++;
      for (const reading of e.readings) expected.set(reading.timeMs, reading);
    } else {
      tally.dead.set(e.reason, (tally.dead.get(e.reason) ?? 0) + 1);
      tally.mutations.set(e.mutation, (tally.mutations.get(e.mutation) ?? 0) + 1);
    }
    const sent = client.publishAsync(topic, payload, { qos: 1 }).then(
      () => undefined,
      (error: unknown) => {
        tally.publishFailures.push(`${fuzz.id}: ${String(error)} (${payload.length} bytes)`);
      },
    );
    if (e.kind === "valid") acked.set(e.seq, sent);
    const tracked = sent.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (inFlight.size >= WINDOW) await Promise.race(inFlight);
    // Originals far enough back to be picked for a duplicate stay; older promises go.
    if (acked.size > 4 * DUPLICATE_DISTANCE * 64) acked.delete(acked.keys().next().value as number);
  }
  await Promise.all(inFlight);
}

const deadLettered = (reason: string) =>
  metricValue(sys.ingest.metrics.registry.getSingleMetric("citywatch_ingest_dead_letters_total"), {
    reason,
  });

it(`stores every valid uplink once, dead-letters every invalid one, and stays up (${PAYLOADS} payloads)`, async () => {
  const started = Date.now();
  const r = prng(SEED);
  const ids = DEVICES.map(([id]) => id);
  const tally: Tally = {
    valid: 0,
    resent: 0,
    dead: new Map(),
    publishFailures: [],
    expected: new Map(ids.map((id) => [id, new Map<number, ExpectedReading>()])),
    mutations: new Map(),
  };
  const fuzzers = DEVICES.map(
    ([id, kind], i) =>
      new DeviceFuzz(
        id,
        kind,
        prng((SEED + i * 0x9e3779b9) >>> 0),
        { ids },
        // Valid readings start 20 days back, 1 s apart per device: inside the 30-day window.
        started - 20 * 86_400_000 + r.int(0, 1_000) * 1_000,
        dataTopic(id).length,
      ),
  );
  await Promise.all(
    fuzzers.map((f, i) =>
      runDevice(
        f,
        Math.floor(PAYLOADS / DEVICES.length) + (i < PAYLOADS % DEVICES.length ? 1 : 0),
        tally,
      ),
    ),
  );
  const published = Date.now();
  expect(tally.publishFailures.slice(0, 5)).toEqual([]);
  // Every seq taken is handled (stored or dead-lettered): each device's commit reaches its last.
  await until(
    () =>
      sys.ingest.state.inbox.depth() === 0 &&
      fuzzers.every((f) => sys.ingest.state.ledger.progress(f.id)?.committedSeq === f.lastSeq),
    "every device committed to its last seq",
    60_000,
  );

  // The store: every valid reading once, with its values, and nothing else.
  let storedReadings = 0;
  let wronglyStored = 0;
  let duplicates = 0;
  const lostSeqs = new Map<string, Set<number>>();
  const storedSeqs = new Map<string, Set<number>>();
  for (const f of fuzzers) {
    const expected = tally.expected.get(f.id) as Map<number, ExpectedReading>;
    const rows = await sys.ingest.store.readings({
      deviceId: f.id,
      kind: f.kind,
      fromMs: EARLIEST,
      toMs: LATEST,
      limit: 10_000_000,
    });
    const seen = new Set<number>();
    const good = new Set<number>();
    const lost = new Set<number>();
    for (const row of rows) {
      if (seen.has(row.timeMs)) duplicates++;
      seen.add(row.timeMs);
      const want = expected.get(row.timeMs);
      if (
        want === undefined ||
        want.seq !== row.seq ||
        want.quality !== row.quality ||
        JSON.stringify(Object.entries(want.values).sort()) !==
          JSON.stringify(Object.entries(row.values).sort())
      ) {
        wronglyStored++;
        if (wronglyStored <= 8)
          console.log(
            `[fault] mqtt-fuzz: wrongly stored ${f.id} ${JSON.stringify(row)} want ${JSON.stringify(want)}`,
          );
        if (want !== undefined) lost.add(want.seq);
      } else {
        storedReadings++;
        good.add(row.seq);
      }
    }
    for (const want of expected.values()) if (!seen.has(want.timeMs)) lost.add(want.seq);
    for (const seq of lost) good.delete(seq);
    lostSeqs.set(f.id, lost);
    storedSeqs.set(f.id, good);
  }
  const lost = [...lostSeqs.values()].reduce((s, l) => s + l.size, 0);
  const storedMessages = [...storedSeqs.values()].reduce((s, l) => s + l.size, 0);
  const expectedReadings = [...tally.expected.values()].reduce((s, m) => s + m.size, 0);

  // The dead letters, by reason, as the metric counts them.
  const deadExpected = [...tally.dead.values()].reduce((s, n) => s + n, 0);
  const byReason: Record<string, { expected: number; counted: number }> = {};
  let deadCounted = 0;
  for (const reason of [
    "not_json",
    "schema",
    "device_mismatch",
    "wrong_kind",
    "future_timestamp",
    "stale_timestamp",
    "bad_topic",
    "unknown_device",
    "disabled_device",
    "store_rejected",
    "missing_seq",
  ]) {
    const counted = await deadLettered(reason);
    deadCounted += counted;
    byReason[reason] = { expected: tally.dead.get(reason as DeadReason) ?? 0, counted };
  }
  const duplicatesCounted = await metricValue(
    sys.ingest.metrics.registry.getSingleMetric("citywatch_ingest_duplicate_messages_total"),
  );

  // Still up: a new connection's valid reading is stored and committed.
  const [id, kind] = DEVICES[0] as readonly [string, Kind];
  // The same id: the new connection takes the session over (the old one is closed).
  const fresh = await sys.t.connect({ username: id, password: secrets.get(id) ?? "" });
  clients.set(`${id}-fresh`, fresh);
  const last = (fuzzers[0] as DeviceFuzz).lastSeq + 1;
  await fresh.publishAsync(
    dataTopic(id),
    JSON.stringify({
      v: 1,
      deviceId: id,
      seq: last,
      kind,
      readings: [{ ts: new Date().toISOString(), quality: "normal", values: { LAeq: 42 } }],
    }),
    { qos: 1 },
  );
  await until(
    () => sys.ingest.state.ledger.progress(id)?.committedSeq === last,
    "a reading after the run committed",
    10_000,
  );

  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `[fault] mqtt-fuzz: seed=${SEED}, payloads=${PAYLOADS}, valid=${tally.valid}, stored=${storedMessages}, deadLettered=${deadCounted}, lost=${lost}, wronglyStored=${wronglyStored}, duplicates=${duplicates}, seconds=${seconds} (readings stored=${storedReadings}/${expectedReadings}, resent=${tally.resent} dropped=${duplicatesCounted}, publish seconds=${((published - started) / 1000).toFixed(1)})`,
  );
  if (process.env["CITYWATCH_FUZZ_VERBOSE"] === "1") {
    console.log(JSON.stringify(byReason));
    console.log(JSON.stringify(Object.fromEntries(tally.mutations)));
  }
  expect(byReason).toEqual(
    Object.fromEntries(
      Object.entries(byReason).map(([reason, { expected }]) => [
        reason,
        { expected, counted: expected },
      ]),
    ),
  );
  expect(deadCounted).toBe(deadExpected);
  expect(duplicatesCounted).toBe(tally.resent);
  expect({ lost, wronglyStored, duplicates }).toEqual({ lost: 0, wronglyStored: 0, duplicates: 0 });
  expect(storedMessages).toBe(tally.valid);
  expect(storedReadings).toBe(expectedReadings);
  expect(tally.valid + tally.resent + deadExpected).toBe(PAYLOADS);
});
