import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { MqttClient } from "mqtt";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { IngestState } from "../../../ingest/state.js";
import { RegistryStore } from "../../../registry/store.js";
import { startTestBroker, type TestBroker, until } from "../../support/broker.js";
import {
  registryViewOf,
  startLocalIngest,
  testApi,
  type TestIngest,
} from "../../support/ingest.js";

/*
 * Issue #16 item 5: a device id removed and registered again at another site inherited the old
 * commit (its seq 1 and 2 silently dropped as duplicates) and showed the old device's readings.
 * A registration is an identity: a generation number in the registry, used by the commit ledger
 * (commits, dedupe) and by the readings API.
 */

const ID = "noise-9";
const dataTopic = `citywatch/v1/devices/${ID}/data`;
/**
 * Each message's reading gets its own millisecond: two published within one millisecond would
 * otherwise be one point in the store (a reading re-sent with its time overwrites itself).
 */
let lastTs = 0;
const message = (seq: number, LAeq: number) => {
  lastTs = Math.max(Date.now(), lastTs + 1);
  return JSON.stringify({
    v: 1,
    deviceId: ID,
    seq,
    kind: "noise",
    readings: [{ ts: new Date(lastTs).toISOString(), quality: "normal", values: { LAeq } }],
  });
};

describe("a device id registered again is a new identity", () => {
  let t: TestBroker | undefined;
  let ingest: TestIngest | undefined;
  const clients: MqttClient[] = [];
  const dir = mkdtempSync(join(tmpdir(), "cw-generation-"));
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await ingest?.stop();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("starts the new registration's commit at 0, stores its seq 1 and 2, and shows only its readings", async () => {
    t = await startTestBroker({ limits: { publishRatePerSecond: 1_000, publishBurst: 1_000 } });
    const broker = t;
    broker.registry.putSite({
      id: "site-2",
      type: "ambient",
      name: "Another site",
      area: { district: "Wuhou", gridCell: "WH-2" },
      location: { lat: 30.64, lon: 104.04 },
    });
    ingest = await startLocalIngest(broker, { dataDir: dir });
    const running = ingest;
    const send = async (secret: string, seqs: number[], LAeq: number) => {
      const client = await broker.connect({ username: ID, password: secret });
      clients.push(client);
      for (const seq of seqs) await client.publishAsync(dataTopic, message(seq, LAeq), { qos: 1 });
      await client.endAsync();
    };

    // The first registration: three messages, committed.
    await send(broker.addDevice(ID), [1, 2, 3], 40);
    await until(
      () => running.state.ledger.progress(ID)?.committedSeq === 3,
      "first commit",
      10_000,
    );
    expect(broker.registry.getDevice(ID)?.generation).toBe(1);

    // Removed, registered again at another site: generation 2.
    broker.registry.removeDevice(ID);
    await new Promise((r) => setTimeout(r, 5)); // the new registration is later than every old reading
    const secret = broker.addDevice(ID, "noise", { siteId: "site-2" });
    const again = broker.registry.getDevice(ID);
    expect(again?.generation).toBe(2);
    expect(again?.siteId).toBe("site-2");
    // The lookups of the ingest are cached 5 s; a removal and registration in another process is
    // seen at the next lookup with the registry watch of cli/runtime/revocations.ts.
    await new Promise((r) => setTimeout(r, 5_100));

    await send(secret, [1, 2], 70);
    await until(
      () =>
        running.state.ledger.progress(ID)?.generation === 2 &&
        running.state.ledger.progress(ID)?.committedSeq === 2,
      "the new registration's commit at 2",
      10_000,
    );
    expect(running.state.ledger.progress(ID)).toMatchObject({ committedSeq: 2, lastSeq: 2 });

    // The store holds both lives; the API shows the new one's.
    const everything = await running.store.readings({
      deviceId: ID,
      kind: "noise",
      fromMs: 0,
      toMs: Date.now() + 1_000,
      limit: 100,
    });
    expect(everything.map((r) => r.values["LAeq"])).toEqual([40, 40, 40, 70, 70]);
    const app = testApi({
      registry: registryViewOf(broker),
      state: running.state,
      store: running.store,
      metrics: [new Registry()],
    });
    const shown = await app.inject({
      method: "GET",
      url: `/api/v1/devices/${ID}/readings?from=0`,
    });
    expect(shown.statusCode).toBe(200);
    expect(
      shown.json<{ readings: Array<{ seq: number; values: { LAeq: number } }> }>().readings,
    ).toEqual([
      expect.objectContaining({ seq: 1, values: { LAeq: 70 } }),
      expect.objectContaining({ seq: 2, values: { LAeq: 70 } }),
    ]);
    const devices = await app.inject({ method: "GET", url: "/api/v1/devices" });
    expect(
      devices.json<{
        devices: Array<{ id: string; committedSeq: number | null; siteId: string }>;
      }>().devices,
    ).toEqual([expect.objectContaining({ id: ID, committedSeq: 2, siteId: "site-2" })]);
    await app.close();
  }, 40_000);
});

describe("migrations on files written before generations", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-generation-files-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the registry: existing devices are generation 1, opening again (or migrating twice) changes nothing", () => {
    const file = join(dir, "registry.db");
    // A registry as the first schema wrote it (user_version 1).
    let store = new RegistryStore(file);
    store.putSite({
      id: "s1",
      type: "ambient",
      name: "Square",
      area: { district: "Jinjiang", gridCell: "JJ-1" },
      location: { lat: 30.6, lon: 104 },
    });
    const device = {
      id: "old-1",
      kind: "noise" as const,
      model: "M",
      serial: "S",
      location: { lat: 30.6, lon: 104 },
      area: { district: "Jinjiang", gridCell: "JJ-1" },
      siteId: "s1",
    };
    store.addDevice(device);
    store.close();
    const raw = new Database(file);
    raw.exec("DROP TABLE device_generation");
    raw.pragma("user_version = 1");
    raw.close();

    store = new RegistryStore(file);
    expect(store.getDevice("old-1")).toMatchObject({ id: "old-1", generation: 1 });
    store.close();
    // The step run again over a migrated file (two processes opening it at once) is harmless.
    const again = new Database(file);
    again.pragma("user_version = 1");
    again.close();
    store = new RegistryStore(file);
    expect(store.getDevice("old-1")?.generation).toBe(1);
    store.removeDevice("old-1");
    expect(store.addDevice(device).record.generation).toBe(2);
    store.removeDevice("old-1");
    expect(store.addDevice(device).record.generation).toBe(3);
    expect(store.listDevices().map((d) => d.generation)).toEqual([3]);
    store.close();
  });

  it("the ingest's ledger: progress rows are generation 1, and a newer registration starts clean", () => {
    const file = join(dir, "ingest.db");
    let state = new IngestState(file);
    state.applyBatch(
      {
        inboxIds: [],
        handled: [1, 2, 3, 5].map((seq) => ({ deviceId: "d1", seq, receivedMs: 1 })),
        deadLetters: [],
      },
      1,
    );
    state.close();
    const raw = new Database(file);
    raw.exec("ALTER TABLE progress DROP COLUMN generation");
    raw.close();

    state = new IngestState(file);
    expect(state.ledger.progress("d1")).toMatchObject({ committedSeq: 3, generation: 1 });
    let generation = 1;
    state.ledger.useGenerations(() => generation);
    expect(state.ledger.isHandled("d1", 2)).toBe(true);
    generation = 2;
    expect(state.ledger.isHandled("d1", 2)).toBe(false);
    expect(state.ledger.progress("d1")).toMatchObject({ committedSeq: 0, generation: 2 });
    // Seq 5 waited above the old gap: the old device's, gone with it.
    expect(state.ledger.isHandled("d1", 5)).toBe(false);
    // The new registration's first message is seq 3 (1 and 2 still to come): its commit, 0, is
    // published anyway, replacing the old registration's retained commit.
    expect(state.ledger.record([{ deviceId: "d1", seq: 3, receivedMs: 2 }], 2).get("d1")).toBe(0);
    const moved = state.ledger.record(
      [1, 2].map((seq) => ({ deviceId: "d1", seq, receivedMs: 2 })),
      2,
    );
    expect(moved.get("d1")).toBe(3);
    state.close();
    state = new IngestState(file);
    expect(state.ledger.progress("d1")).toMatchObject({ committedSeq: 3, generation: 2 });
    state.close();
  });
});
