import { describe, expect, it } from "vitest";
import {
  MAX_READINGS_PER_MESSAGE,
  QUANTITIES,
  type QuantitySpec,
  type SensorKind,
  SensorKind as Kind,
  Uplink,
} from "../../../../contracts/index.js";

const TS = "2026-11-27T08:00:00+08:00";

/** One valid message per kind, with every quantity of the kind. */
const VALID: Record<SensorKind, Record<string, number | boolean>> = {
  noise: { LAeq: 58.2, LAmax: 71.5, LAmin: 45.1, L10: 61, L50: 56.3, L90: 48.9 },
  dust: {
    pm10: 132,
    pm2_5: 61,
    tsp: 240,
    windSpeed: 3.2,
    windDirection: 270,
    temperature: 17.5,
    humidity: 64,
  },
  cooking_fume: { oilFume: 1.4, particulate: 2.1, nmhc: 6.5, fanOn: true, purifierOn: false },
  water_level: { stage: 4.62, ponding: 12.5 },
  utility_tunnel: {
    ch4: 3,
    o2: 20.8,
    h2s: 0.5,
    co: 2,
    temperature: 24.5,
    humidity: 80,
    sumpLevel: 35,
  },
};

function message(kind: SensorKind, values: unknown, extra: Record<string, unknown> = {}) {
  return {
    v: 1,
    deviceId: "dev-1",
    seq: 7,
    kind,
    readings: [{ ts: TS, quality: "normal", values }],
    ...extra,
  };
}

/** The messages of a failed parse as `path: message`. */
function problems(input: unknown): string[] {
  const result = Uplink.safeParse(input);
  if (result.success) return [];
  return result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

describe("uplink envelope", () => {
  for (const kind of Kind.options) {
    it(`accepts a valid ${kind} message with every quantity`, () => {
      const parsed = Uplink.parse(message(kind, VALID[kind]));
      expect(parsed.kind).toBe(kind);
      expect(parsed.readings[0]?.values).toEqual(VALID[kind]);
    });

    it(`accepts a ${kind} message with a subset of quantities`, () => {
      const [name, value] = Object.entries(VALID[kind])[0] ?? [];
      expect(Uplink.safeParse(message(kind, { [String(name)]: value })).success).toBe(true);
    });

    it(`rejects each ${kind} quantity just outside its plausible range`, () => {
      for (const [name, spec] of Object.entries(QUANTITIES[kind]) as Array<
        [string, QuantitySpec]
      >) {
        if (spec.type !== "number") continue;
        expect(problems(message(kind, { [name]: spec.max + 0.001 }))).toEqual([
          `readings.0.values.${name}: ${name} ${spec.max + 0.001} is above the plausible range ${spec.min}..${spec.max} ${spec.unit}`,
        ]);
        expect(problems(message(kind, { [name]: spec.min - 0.001 }))[0]).toContain(
          "is below the plausible range",
        );
        // The bounds themselves are plausible.
        expect(problems(message(kind, { [name]: spec.max }))).toEqual([]);
        expect(problems(message(kind, { [name]: spec.min }))).toEqual([]);
      }
    });
  }

  it("names a wrong type precisely", () => {
    expect(problems(message("noise", { LAeq: "58" }))).toEqual([
      "readings.0.values.LAeq: LAeq must be a number in dB(A)",
    ]);
    expect(problems(message("cooking_fume", { fanOn: 1 }))).toEqual([
      "readings.0.values.fanOn: fanOn must be true or false",
    ]);
    expect(problems({ ...message("noise", { LAeq: 50 }), seq: "7" })).toEqual([
      "seq: seq must be a number",
    ]);
  });

  it("rejects NaN and infinities", () => {
    expect(problems(message("noise", { LAeq: Number.NaN }))).toHaveLength(1);
    expect(problems(message("noise", { LAeq: Number.POSITIVE_INFINITY }))).toHaveLength(1);
  });

  it("names missing fields", () => {
    const { seq: _seq, ...noSeq } = message("noise", { LAeq: 50 });
    expect(problems(noSeq)).toEqual(["seq: seq must be a number"]);
    const noTs = {
      ...message("noise", { LAeq: 50 }),
      readings: [{ quality: "normal", values: { LAeq: 50 } }],
    };
    expect(problems(noTs)[0]).toMatch(/^readings\.0\.ts: /);
    const noQuality = {
      ...message("noise", { LAeq: 50 }),
      readings: [{ ts: TS, values: { LAeq: 50 } }],
    };
    expect(problems(noQuality)[0]).toMatch(/^readings\.0\.quality: /);
  });

  it("rejects an unknown kind and a missing kind, listing the known ones", () => {
    expect(problems(message("radar" as SensorKind, { x: 1 }))).toEqual([
      'kind: unknown sensor kind "radar"; expected one of noise, dust, cooking_fume, water_level, utility_tunnel',
    ]);
    const { kind: _kind, ...noKind } = message("noise", { LAeq: 1 });
    expect(problems(noKind)[0]).toBe(
      "kind: kind is required; expected one of noise, dust, cooking_fume, water_level, utility_tunnel",
    );
  });

  it("rejects another kind's quantities and unknown keys", () => {
    expect(problems(message("noise", { pm10: 50 }))).toEqual([
      'readings.0.values: unknown quantity "pm10" for kind noise; known: LAeq, LAmax, LAmin, L10, L50, L90',
    ]);
    expect(problems({ ...message("noise", { LAeq: 50 }), extra: true })[0]).toMatch(/^: .*extra/);
  });

  it("rejects empty values, empty and oversized batches", () => {
    expect(problems(message("noise", {}))).toEqual([
      "readings.0.values: values must hold at least one noise quantity (LAeq, LAmax, LAmin, L10, L50, L90)",
    ]);
    expect(problems({ ...message("noise", { LAeq: 1 }), readings: [] })).toEqual([
      "readings: readings must hold at least one reading",
    ]);
    const reading = { ts: TS, quality: "normal", values: { LAeq: 50 } };
    const big = {
      ...message("noise", {}),
      readings: Array.from({ length: MAX_READINGS_PER_MESSAGE + 1 }, () => reading),
    };
    expect(problems(big)).toEqual([
      `readings: readings must hold at most ${MAX_READINGS_PER_MESSAGE} readings`,
    ]);
    expect(Uplink.safeParse({ ...big, readings: big.readings.slice(1) }).success).toBe(true);
  });

  it("rejects bad timestamps", () => {
    const at = (ts: unknown) =>
      problems({
        ...message("noise", { LAeq: 1 }),
        readings: [{ ts, quality: "normal", values: { LAeq: 1 } }],
      });
    expect(at("2026-11-27 08:00:00")[0]).toContain("must be an RFC 3339 timestamp with an offset");
    expect(at("2026-11-27T08:00:00")[0]).toContain("with an offset"); // local time without offset is ambiguous
    expect(at("2026-13-01T00:00:00Z")[0]).toContain("RFC 3339");
    expect(at(1764201600000)[0]).toContain("RFC 3339");
    expect(at("1970-01-01T00:00:00Z")[0]).toContain("outside 2000-01-01..2099-12-31");
    expect(at("2026-11-27T08:00:00.123Z")).toEqual([]);
    expect(at("2026-11-27T00:00:00Z")).toEqual([]);
  });

  it("rejects bad quality flags, ids and sequence numbers", () => {
    const q = problems({
      ...message("noise", {}),
      readings: [{ ts: TS, quality: "ok", values: { LAeq: 1 } }],
    });
    expect(q[0]).toMatch(/^readings\.0\.quality: .*"normal"/);
    expect(problems({ ...message("noise", { LAeq: 1 }), deviceId: "a/b" })[0]).toMatch(
      /^deviceId: must be 1-64 characters/,
    );
    expect(problems({ ...message("noise", { LAeq: 1 }), deviceId: "+" })).toHaveLength(1);
    expect(problems({ ...message("noise", { LAeq: 1 }), seq: 0 })).toEqual([
      "seq: seq must be >= 1",
    ]);
    expect(problems({ ...message("noise", { LAeq: 1 }), seq: 1.5 })).toEqual([
      "seq: seq must be an integer in 0..2^53-1",
    ]);
    expect(problems({ ...message("noise", { LAeq: 1 }), seq: 2 ** 53 })).toEqual([
      "seq: seq must be an integer in 0..2^53-1",
    ]);
    expect(Uplink.safeParse({ ...message("noise", { LAeq: 1 }), seq: 2 ** 53 - 1 }).success).toBe(
      true,
    );
    expect(problems({ ...message("noise", { LAeq: 1 }), v: 2 })).toEqual(["v: v must be 1"]);
  });

  it("refuses a payload that is not an object", () => {
    for (const input of ["text", 42, null, [1, 2]]) {
      expect(problems(input)).toEqual([": an uplink message must be a JSON object"]);
    }
  });

  it("keeps the replay flag", () => {
    expect(Uplink.parse(message("dust", { pm10: 80 }, { replay: true })).replay).toBe(true);
  });
});
