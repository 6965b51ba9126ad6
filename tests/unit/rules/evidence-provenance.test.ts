import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { Device, Site } from "../../../contracts/index.js";
import type { AlarmNotice } from "../../../contracts/model/alarms.js";
import { batchOf } from "../../../contracts/model/stored-readings.js";
import { ReadingColumns } from "../../../ingest/reading-columns.js";
import type { Point } from "../../../ingest/store/types.js";
import { AlarmStore } from "../../../rules/alarm-store.js";
import { RulesDriver } from "../../../rules/driver.js";
import { Series } from "../../../rules/engine/series.js";
import { RuleSet } from "../../../rules/rule-set.js";

/*
 * The provenance of each reading in an evidence package — its uplink seq, the time the ingest
 * received it, whether it was replayed — from the ingest's columns through the rules driver's
 * windows (typed columns, no object per reading) to the notice the task service seals.
 */

const dir = mkdtempSync(join(tmpdir(), "cw-evidence-provenance-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const AREA = { district: "d", gridCell: "g" };
const LOCATION = { lat: 30, lon: 104 };
const SITES = [
  Site.parse({
    id: "road",
    type: "ambient",
    name: "Road",
    area: AREA,
    location: LOCATION,
    zoneClass: "4a",
  }),
];
const DEVICES = [
  Device.parse({
    id: "n-1",
    kind: "noise",
    model: "M",
    serial: "S",
    siteId: "road",
    area: AREA,
    location: LOCATION,
    expectedIntervalS: 60,
  }),
];
const bj = (hhmm: string) => Date.parse(`2026-12-05T${hhmm}:00+08:00`);

function point(timeMs: number, LAmax: number, quality: Point["tags"]["quality"] = "normal"): Point {
  return {
    measurement: "noise",
    tags: { device: "n-1", site: "road", district: "d", grid_cell: "g", quality },
    fields: { LAmax, LAeq: 60 },
    seq: 0,
    timeMs,
  };
}

function driver(name: string) {
  const rules = new RuleSet();
  expect(rules.reload()).toEqual([]);
  const notices: AlarmNotice[] = [];
  let now = bj("21:00");
  const alarms = new AlarmStore(join(dir, `${name}.db`));
  const d = new RulesDriver({
    log: pino({ level: "silent" }),
    rules,
    registry: { devices: () => DEVICES, sites: () => SITES },
    alarms,
    sink: { handleAlarm: (n) => notices.push(n), onAcknowledged: () => () => {} },
    region: "default",
    tickMs: 60_000,
    now: () => now,
  });
  return {
    d,
    notices,
    at: (t: number) => (now = t),
    close() {
      d.stop();
      alarms.close();
    },
  };
}

const nightLamax = (notices: readonly AlarmNotice[]) =>
  notices.filter((n) => n.rule.id === "noise.area.night-lamax" && n.decision.type === "raise");

describe("evidence provenance", () => {
  it("carries each message's seq and receive time from the ingest's columns into the evidence", async () => {
    const c = driver("columns");
    await c.d.start();
    const columns = new ReadingColumns(2);
    // Two messages in one round, the second of two readings (the columns grow past 2).
    columns.add("n-1", false, [point(bj("22:08"), 60)], 41, bj("22:08") + 900);
    columns.add(
      "n-1",
      false,
      [point(bj("22:09"), 61), point(bj("22:10"), 79.3)],
      42,
      bj("22:10") + 700,
    );
    expect([columns.seq(0), columns.seq(2), columns.receivedMs(1)]).toEqual([
      41,
      42,
      bj("22:10") + 700,
    ]);
    c.at(bj("22:10"));
    c.d.onStoredBatch(columns);
    const [raise] = nightLamax(c.notices);
    expect(raise?.evidence?.readings).toEqual([
      {
        deviceId: "n-1",
        ts: new Date(bj("22:10")).toISOString(),
        quality: "normal",
        values: { LAmax: 79.3 },
        receivedAt: new Date(bj("22:10") + 700).toISOString(),
        seq: 42,
        replay: false,
        trigger: true,
      },
    ]);
    // The columns are reused: a message without seq or receive time has none.
    columns.clear();
    columns.add("n-1", true, [point(bj("22:11"), 50)]);
    expect([columns.seq(0), columns.receivedMs(0), columns.replay(0)]).toEqual([
      undefined,
      undefined,
      true,
    ]);
    expect(() => columns.seq(1)).toThrow(RangeError);
    c.close();
  });

  it("records none where the batch does not know them (readings read back from the store)", async () => {
    const c = driver("array");
    await c.d.start();
    c.at(bj("22:10"));
    c.d.onStoredBatch(
      batchOf([
        {
          deviceId: "n-1",
          kind: "noise",
          timeMs: bj("22:10"),
          quality: "normal",
          values: { LAmax: 80 },
          replay: true,
        },
      ]),
    );
    const reading = nightLamax(c.notices)[0]?.evidence?.readings[0];
    expect(reading).toMatchObject({ replay: true, trigger: true });
    expect(reading).not.toHaveProperty("seq");
    expect(reading).not.toHaveProperty("receivedAt");
    c.close();
  });

  it("a series with provenance keeps seq and receive time through late inserts, replacement, growth and drops", () => {
    const s = new Series({ provenance: true });
    for (let i = 0; i < 20; i++) s.insert(1_000 + i * 10, i, "normal", false, i, 5_000 + i);
    s.insert(1_005, 99, "fault", true, 77, 7_777); // late: between the first two
    s.insert(1_010, 98, "normal", false, 88, 8_888); // replaces the sample at 1 010
    s.dropOldest(1);
    expect([s.atOf(0), s.seqOf(0), s.receivedOf(0), s.replayedOf(0)]).toEqual([
      1_005,
      77,
      7_777,
      true,
    ]);
    expect([s.atOf(1), s.seqOf(1), s.receivedOf(1)]).toEqual([1_010, 88, 8_888]);
    expect([s.length, s.atOf(19), s.seqOf(19), s.receivedOf(19)]).toEqual([20, 1_190, 19, 5_019]);
    s.insert(2_000, 1, "normal", false); // not known
    expect([s.seqOf(20), s.receivedOf(20)]).toEqual([undefined, undefined]);
    const plain = new Series();
    plain.insert(1, 1, "normal", false, 5, 6);
    expect([plain.seqOf(0), plain.receivedOf(0)]).toEqual([undefined, undefined]);
  });
});
