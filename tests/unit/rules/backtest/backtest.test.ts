import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Device, Site } from "../../../../contracts/index.js";
import type { StoreRetention } from "../../../../contracts/model/backtest.js";
import type { StoredReading } from "../../../../contracts/model/stored-readings.js";
import {
  backtest,
  BacktestError,
  type BacktestOptions,
  type HistorySource,
} from "../../../../rules/backtest/index.js";
import { inlineRules } from "../../../../rules/backtest/sources.js";

/*
 * The backtest over an in-memory history and the real engine: what the report says of cases open
 * when the range starts, escalations and nobody acknowledging; and the checks that need a clock
 * or a retention (the integration tests run the stores, the CLI and the API).
 */

const MINUTE = 60_000;
const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const TO = NOW - 3_600_000;
const FROM = TO - 3 * 3_600_000;
const area = { district: "d", gridCell: "g" };
const location = { lat: 30, lon: 104 };
const SITE = Site.parse({ id: "amb", type: "ambient", name: "Square", area, location });
const NOISE = Device.parse({
  id: "n1",
  kind: "noise",
  model: "M",
  serial: "n1",
  siteId: "amb",
  area,
  location,
  expectedIntervalS: 60,
});

/** Minute readings of n1 from `start` to `end`, LAeq by minute after FROM. */
function history(start: number, end: number, laeq: (minute: number) => number): HistorySource {
  const all: StoredReading[] = [];
  for (let t = start; t < end; t += MINUTE) {
    all.push({
      deviceId: "n1",
      kind: "noise",
      timeMs: t,
      quality: "normal",
      values: { LAeq: laeq((t - FROM) / MINUTE) },
      replay: false,
    });
  }
  return {
    readings: (d, from, to, limit) =>
      Promise.resolve(
        all.filter((r) => r.deviceId === d.id && r.timeMs >= from && r.timeMs < to).slice(0, limit),
      ),
  };
}

const RULE = (body: string) => `rules:
  - id: test.loud
    version: 1
    title: Loud
    clause: { standard: test, section: "none" }
    confidence: placeholder
    note: a test rule
    scope: { kinds: [noise] }
    subject: device
${body}`;

const ENFORCEMENT = RULE(`    taskKind: enforcement
    condition: { type: threshold, quantity: LAeq, aggregate: latest, op: ">", raise: 80 }
`);

/** Emergency at 80 (IV), 90 (III); escalated when nobody acknowledges within 10 minutes. */
const EMERGENCY = RULE(`    taskKind: emergency
    timing: { escalateAfter: 10m }
    condition: { type: threshold, quantity: LAeq, aggregate: latest, op: ">", raise: 80 }
    levels:
      - level: IV
        actions: ["look"]
      - level: III
        raise: 90
        actions: ["act"]
`);

function run(
  laeq: (minute: number) => number,
  options: Partial<BacktestOptions> & { text?: string; retention?: StoreRetention } = {},
) {
  const {
    text = ENFORCEMENT,
    retention = { ms: undefined, description: "kept" },
    ...rest
  } = options;
  return backtest(
    {
      log: pino({ level: "silent" }),
      history: history(FROM - 6 * 3_600_000, TO, laeq),
      registry: { devices: () => [NOISE], sites: () => [SITE] },
      retention: () => Promise.resolve(retention),
      now: () => NOW,
    },
    {
      fromMs: FROM,
      toMs: TO,
      region: "default",
      tickMs: 60_000,
      rules: inlineRules("rules", [{ name: "loud.yaml", text }], false),
      ...rest,
    },
  );
}

describe("backtest", () => {
  it("a case raised in the warm-up is open at the start, not raised; its clear counts", async () => {
    // Loud from 10 minutes before FROM to minute 5, and at minutes 30-31.
    const report = await run((m) => ((m >= -10 && m < 5) || (m >= 30 && m < 32) ? 85 : 60), {
      warmUpMs: 30 * MINUTE,
    });
    expect(report.warmUpFrom).toBe(new Date(FROM - 30 * MINUTE).toISOString());
    expect(report.run.totals).toEqual({
      raised: 1,
      escalated: 0,
      cleared: 2,
      openAtStart: 1,
      openAtEnd: 0,
    });
    const cases = report.run.byRule[0]?.subjects[0]?.cases ?? [];
    expect(cases.map((c) => [c.openAtStart, c.raisedAt, c.clearedAt])).toEqual([
      [true, new Date(FROM - 10 * MINUTE).toISOString(), new Date(FROM + 5 * MINUTE).toISOString()],
      [
        false,
        new Date(FROM + 30 * MINUTE).toISOString(),
        new Date(FROM + 32 * MINUTE).toISOString(),
      ],
    ]);
  });

  it("without warm-up an alarm of the warm-up is not there", async () => {
    const report = await run((m) => (m >= -10 && m < 5 ? 85 : 60), { warmUpMs: 0 });
    // Loud at FROM itself: raised at the range's first reading.
    expect(report.run.totals).toMatchObject({ raised: 1, openAtStart: 0, cleared: 1 });
  });

  it("level escalations and escalations nobody acknowledged, still open at the end", async () => {
    const report = await run((m) => (m >= 20 ? (m >= 40 ? 95 : 85) : 60), { text: EMERGENCY });
    const [c] = report.run.byRule[0]?.subjects[0]?.cases ?? [];
    expect(c).toMatchObject({ level: "IV", clearedAt: null, openAtStart: false });
    expect(c?.escalations).toEqual([
      expect.objectContaining({
        at: new Date(FROM + 40 * MINUTE).toISOString(),
        from: "IV",
        level: "III",
        evidence: expect.objectContaining({ value: 95, limit: 90 }) as unknown,
      }),
    ]);
    expect(c?.unacknowledgedEscalations).toBeGreaterThan(0);
    expect(report.run.totals).toMatchObject({ raised: 1, escalated: 1, openAtEnd: 1 });
  });

  it("refuses a range the store no longer keeps, naming the store's retention", async () => {
    const error = await run(() => 60, {
      retention: { ms: 2 * 3_600_000, description: "the test store keeps 2 h" },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BacktestError);
    expect((error as BacktestError).problems).toEqual([
      {
        path: "from",
        message: `from (${new Date(FROM).toISOString()}) is before what the store keeps: the test store keeps 2 h, nothing before ${new Date(NOW - 2 * 3_600_000).toISOString()} remains`,
      },
    ]);
  });

  it("cuts a warm-up the store cannot give, and says so", async () => {
    const report = await run(() => 60, {
      retention: { ms: NOW - FROM + 10 * MINUTE, description: "the test store keeps a while" },
      warmUpMs: 60 * MINUTE,
    });
    expect(report.warmUpFrom).toBe(new Date(FROM - 10 * MINUTE).toISOString());
    expect(report.warnings).toEqual([
      expect.stringMatching(/^the warm-up starts at .*keeps a while/),
    ]);
  });

  it("stops past the reading budget and the range bound with a problem of `to`", async () => {
    await expect(run(() => 60, { maxReadings: 100 })).rejects.toMatchObject({
      problems: [
        { path: "to", message: expect.stringMatching(/more than 100 readings/) as unknown },
      ],
    });
    await expect(run(() => 60, { maxRangeMs: 3_600_000 })).rejects.toMatchObject({
      problems: [{ path: "to", message: expect.stringMatching(/at most/) as unknown }],
    });
  });
});
