import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../contracts/index.js";
import {
  type ScenarioInput,
  compileScenario,
  loadScenario,
  parseScenario,
  resolveStart,
} from "../../../simulators/index.js";

const NOW = Date.parse("2026-11-27T12:00:00+08:00");
const MIN = 60_000;
const HOUR = 3_600_000;

const site = {
  id: "s-1",
  type: "construction_site",
  name: "Site",
  area: { district: "D", gridCell: "G-1" },
  location: { lat: 30.6, lon: 104.0 },
  phase: "earthwork",
  regulatedParty: { name: "Builder" },
};
const noise = {
  id: "n-1",
  kind: "noise",
  model: "M",
  serial: "1",
  location: { lat: 30.6, lon: 104.0 },
  area: { district: "D", gridCell: "G-1" },
  siteId: "s-1",
};

function scenario(over: Partial<Record<keyof ScenarioInput, unknown>> = {}): unknown {
  return {
    name: "t",
    description: "test",
    seed: 1,
    start: "21:00",
    duration: "4h",
    speed: 600,
    batch: "10m",
    layout: { sites: [site], devices: [noise] },
    expect: { tasks: [] },
    ...over,
  };
}

function problems(value: unknown): string[] {
  try {
    parseScenario("bad.yaml", value);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error("the scenario was accepted");
}

describe("scenario schema", () => {
  it("names every problem by its path, all at once", () => {
    const brokenRefs = {
      models: { "n-1": { trafficDayLevel: 500 }, ghost: {} },
      events: [
        { type: "night_works", site: "nowhere", at: "1h", for: "1h" },
        { type: "dust_episode", site: "s-1", at: "1h", for: "1h" },
        { type: "gas_leak", site: "s-1", at: "1h" },
        { type: "power_off", device: "n-2", at: "3h", for: "2h" },
      ],
      expect: { tasks: [{ rule: "x", subject: "who", kind: "enforcement" }] },
    };
    expect(problems(scenario({ ...brokenRefs, seed: -1, duration: "ten minutes" }))).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^seed: /),
        expect.stringMatching(/^duration: "ten minutes" is not a duration/),
      ]),
    );
    // Cross-references are checked once the shapes are right.
    const refs = problems(scenario(brokenRefs));
    expect(refs).toEqual([
      expect.stringMatching(/^models\.n-1\.trafficDayLevel: /),
      "models.ghost: device ghost is not in layout.devices",
      "events.0.site: site nowhere is not in layout.sites",
      "events.1.site: dust_episode acts on dust devices; site s-1 has none",
      "events.2.site: gas_leak needs a tunnel_segment; s-1 is a construction_site",
      "events.3.at: the event ends 5h after the start, past the duration 4h",
      "events.3.device: device n-2 is not in layout.devices",
      "expect.tasks.0.subject: who is neither a site nor a device of the layout",
    ]);
  });

  it("refuses a pace the broker would cut off, and a batch over 500 readings", () => {
    expect(problems(scenario({ speed: 6000, batch: "5m" }))).toEqual([
      expect.stringMatching(/^batch: at speed 6000 a batch of 5m is more than 10 messages\/s/),
    ]);
    expect(problems(scenario({ batch: "10h", duration: "12h" }))[0]).toMatch(
      /^batch: batch 10h holds more than 500 readings of n-1/,
    );
  });

  it("reuses the registry's own checks for the layout", () => {
    expect(
      problems(scenario({ layout: { sites: [site], devices: [{ ...noise, siteId: "s-9" }] } })),
    ).toEqual(["layout.devices.0.siteId: site s-9 is not a site in this file"]);
  });

  it("names the file of a built-in that does not exist, listing the built-ins", () => {
    expect(() => loadScenario("no-such-scenario")).toThrow(
      /no built-in scenario no-such-scenario.*quiet-day/,
    );
  });
});

describe("timeline", () => {
  it("puts a clock-time start on the latest day the whole run lies in the past", () => {
    expect(resolveStart("21:00", 4 * HOUR, NOW)).toBe(Date.parse("2026-11-26T21:00:00+08:00"));
    expect(resolveStart("07:00", 4 * HOUR, NOW)).toBe(Date.parse("2026-11-27T07:00:00+08:00"));
    expect(resolveStart("07:00", 6 * HOUR, NOW)).toBe(Date.parse("2026-11-26T07:00:00+08:00"));
    expect(resolveStart("2026-11-20T10:00:30+08:00", HOUR, NOW)).toBe(
      Date.parse("2026-11-20T10:00:00+08:00"),
    );
  });

  it("batches readings by simulated span, ends of intervals, seq from 1, due at the batch end", () => {
    const t = compileScenario(parseScenario("t", scenario()), { nowMs: NOW });
    const messages = [...(t.devices[0]?.messages() ?? [])];
    expect(messages).toHaveLength(24);
    expect(messages.map((m) => m.seq)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    const first = messages[0];
    expect(first?.dueMs).toBe(t.startMs + 10 * MIN);
    expect(first?.uplink.readings.map((r) => Date.parse(r.ts))).toEqual(
      Array.from({ length: 10 }, (_, i) => t.startMs + (i + 1) * MIN),
    );
    expect(messages.at(-1)?.dueMs).toBe(t.endMs);
  });

  it("places events at their simulated times: works, outages, faults, skew, fleet faults", () => {
    const t = compileScenario(
      parseScenario(
        "t",
        scenario({
          events: [
            { type: "night_works", site: "s-1", at: "1h", for: "1h" },
            { type: "power_off", device: "n-1", at: "2h", for: "30m" },
            { type: "sensor_fault", device: "n-1", at: "3h", for: "10m", flag: "calibration" },
            { type: "clock_skew", device: "n-1", at: "3h30m", for: "10m", offset: "+2h" },
            { type: "link_down", device: "n-1", at: "1h30m", for: "5m" },
            { type: "disconnect_storm", at: "2h", fraction: 0.5 },
          ],
        }),
      ),
      { nowMs: NOW },
    );
    const readings = [...(t.devices[0]?.messages() ?? [])].flatMap((m) =>
      m.uplink.readings.map((r) => ({
        at: Date.parse(r.ts) - t.startMs,
        quality: r.quality,
        values: r.values as { LAeq: number },
      })),
    );
    const within = (from: number, to: number) => readings.filter((r) => r.at > from && r.at <= to);
    // Night works 22:00-23:00: machinery over a quiet night.
    const works = within(HOUR, 2 * HOUR).map((r) => r.values.LAeq);
    const before = within(0, HOUR).map((r) => r.values.LAeq);
    expect(Math.min(...works)).toBeGreaterThan(Math.max(...before) - 10);
    expect(works.reduce((a, b) => a + b) / works.length).toBeGreaterThan(
      before.reduce((a, b) => a + b) / before.length + 3,
    );
    // Power off 23:00-23:30: nothing measured (readings at 23:00 exactly belong to the interval before).
    expect(within(2 * HOUR, 2 * HOUR + 30 * MIN - 1)).toEqual([]);
    expect(
      within(3 * HOUR, 3 * HOUR + 10 * MIN - 1).every((r) => r.quality === "calibration"),
    ).toBe(true);
    expect(
      within(3 * HOUR + 10 * MIN, 3 * HOUR + 20 * MIN).every((r) => r.quality === "normal"),
    ).toBe(true);
    // Skewed readings carry the wrong clock, two hours ahead.
    expect(readings.filter((r) => r.at >= 5.5 * HOUR - MIN)).toHaveLength(10);
    expect(t.linkDowns).toEqual([
      { deviceId: "n-1", fromMs: t.startMs + 1.5 * HOUR, toMs: t.startMs + 1.5 * HOUR + 5 * MIN },
    ]);
    expect(t.faults).toMatchObject([
      { type: "disconnect_storm", atMs: t.startMs + 2 * HOUR, fraction: 0.5 },
    ]);
  });

  it("the same seed gives byte-identical payloads; another seed does not", () => {
    const payloads = (seed: number) =>
      compileScenario({ ...loadScenario("demo"), seed }, { nowMs: NOW }).devices.flatMap((d) =>
        [...d.messages()].map((m) => JSON.stringify(m.uplink)),
      );
    const first = payloads(2026);
    expect(first.length).toBeGreaterThan(100);
    expect(payloads(2026)).toEqual(first);
    expect(payloads(2027)).not.toEqual(first);
  });
});
