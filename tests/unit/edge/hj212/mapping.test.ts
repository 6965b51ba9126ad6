import { describe, expect, it } from "vitest";
import { DustUplink, NoiseUplink } from "../../../../contracts/index.js";
import {
  formatShanghai,
  Hj212Mapping,
  QUALITY_BY_HJ212_FLAG,
  toReadings,
  type Hj212MappingInput,
  type ToReadingsResult,
} from "../../../../edge/hj212/mapping.js";
import { EXAMPLE_HJ212_MAPPING } from "../../../../edge/hj212/mapping-example.js";
import { parseSegment, type DataSegment } from "../../../../edge/hj212/segment.js";
import { VECTOR_2051 } from "./vectors.js";

const MAPPING = Hj212Mapping.parse(EXAMPLE_HJ212_MAPPING);

function parsed(text: string): DataSegment {
  const result = parseSegment(text);
  if (!result.ok) throw new Error(result.error.reason);
  return result.segment;
}

function ok(result: ToReadingsResult) {
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.reason}`);
  return result;
}

const SITE = "010000A8900016F000169DC0";
const frame = (cn: string, cp: string, mn = SITE) =>
  parsed(`QN=20220513162608370;ST=39;CN=${cn};PW=123456;MN=${mn};Flag=5;CP=&&${cp}&&`);

function problems(input: unknown): string[] {
  const result = Hj212Mapping.safeParse(input);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

describe("Hj212Mapping schema", () => {
  it("accepts the example and fills the defaults", () => {
    const model = MAPPING.models["site-dust"];
    expect(model?.suffixByCn).toEqual({
      "2011": "Rtd",
      "2051": "Avg",
      "2061": "Avg",
      "2031": "Avg",
    });
    expect(model?.minuteDataIntervalS).toBe(60);
    expect(model?.qualityWithoutFlag).toBe("normal");
    expect(model?.factors["a34002"]).toEqual({ quantity: "pm10", scale: 1 });
    // A single device is normalised to a list.
    expect(MAPPING.devices["JLYP01_AIR01_0001"]).toEqual([
      { deviceId: "air-1", model: "site-dust" },
    ]);
  });

  it("maps the eight HJ 212 data flags to quality, from the contracts' table", () => {
    expect(QUALITY_BY_HJ212_FLAG).toEqual({
      N: "normal",
      M: "maintenance",
      C: "calibration",
      D: "fault",
      T: "over_range",
      B: "comm_fault",
      F: "stopped",
      S: "manual",
    });
    expect(MAPPING.qualityByFlag).toEqual(QUALITY_BY_HJ212_FLAG);
  });

  it("merges extra flag letters into the standard ones", () => {
    const mapping = Hj212Mapping.parse({
      ...EXAMPLE_HJ212_MAPPING,
      qualityByFlag: { P: "stopped", N: "normal" },
    });
    expect(mapping.qualityByFlag["P"]).toBe("stopped");
    expect(mapping.qualityByFlag["T"]).toBe("over_range");
  });

  it("refuses a quantity the model's kind does not have", () => {
    const input: Hj212MappingInput = {
      models: { m: { kind: "dust", factors: { a50001: { quantity: "LAeq" } } } },
      devices: {},
    };
    expect(problems(input)).toEqual([
      expect.stringMatching(
        /^models\.m\.factors\.a50001\.quantity: LAeq is not a dust quantity; known: pm10/,
      ),
    ]);
  });

  it("refuses an unknown model, a device fed twice, two devices of one kind on one MN, bad scales", () => {
    expect(
      problems({
        models: { dust: { kind: "dust", factors: { a34002: { quantity: "pm10", scale: 0 } } } },
        devices: {
          A: { deviceId: "d-1", model: "nope" },
          B: [
            { deviceId: "d-2", model: "dust" },
            { deviceId: "d-3", model: "dust" },
          ],
          C: { deviceId: "d-2", model: "dust" },
          D: { deviceId: "bad id!", model: "dust" },
        },
      }),
    ).toEqual([
      "models.dust.factors.a34002.scale: a unit scale is a positive factor",
      expect.stringMatching(/^devices\.D/),
    ]);
    expect(
      problems({
        models: { dust: { kind: "dust", factors: {} } },
        devices: {
          A: { deviceId: "d-1", model: "nope" },
          B: [
            { deviceId: "d-2", model: "dust" },
            { deviceId: "d-3", model: "dust" },
          ],
          C: { deviceId: "d-2", model: "dust" },
        },
      }),
    ).toEqual([
      'devices.A.0.model: unknown model "nope"; known: dust',
      "devices.B.1: MN B feeds two dust devices; one device per kind",
      "devices.C.0.deviceId: device d-2 is already fed by MN B",
    ]);
  });

  it("refuses factor codes with a dash and unknown keys", () => {
    expect(
      problems({
        models: { m: { kind: "dust", factors: { "a34002-Avg": { quantity: "pm10" } } } },
        devices: {},
      }),
    ).toHaveLength(1);
    expect(problems({ models: {}, devices: {}, extra: 1 })).toHaveLength(1);
  });
});

describe("toReadings", () => {
  it("turns the minute-data test vector into one reading stamped at the minute's end", () => {
    const result = ok(toReadings(parsed(VECTOR_2051), MAPPING));
    expect(result.cn).toBe("2051");
    expect(result.devices).toEqual([
      {
        deviceId: "air-1",
        kind: "dust",
        readings: [
          {
            ts: "2022-05-13T16:27:00+08:00",
            quality: "normal",
            values: {
              pm2_5: 14,
              pm10: 31,
              windSpeed: 1,
              windDirection: 11,
              temperature: 17,
              humidity: 85,
            },
          },
        ],
      },
    ]);
    expect(result.unmapped.map((f) => f.code)).toEqual([
      "a21004",
      "a05024",
      "a21026",
      "a21005",
      "a01006",
    ]);
    expect(result.rejected).toEqual([]);
    // What the uplink will carry is valid by the contracts.
    const uplink = {
      v: 1,
      deviceId: "air-1",
      seq: 1,
      kind: "dust",
      readings: result.devices[0]?.readings,
    };
    expect(DustUplink.safeParse(uplink).success).toBe(true);
  });

  it("maps a dust monitor's a50001 noise to LAeq of the site's noise device", () => {
    const result = ok(
      toReadings(
        frame(
          "2011",
          "DataTime=20221127235959;a34002-Rtd=88,a34002-Flag=N;a50001-Rtd=67.4,a50001-Flag=N",
        ),
        MAPPING,
      ),
    );
    expect(result.devices).toEqual([
      {
        deviceId: "site-17-dust",
        kind: "dust",
        readings: [{ ts: "2022-11-27T23:59:59+08:00", quality: "normal", values: { pm10: 88 } }],
      },
      {
        deviceId: "site-17-noise",
        kind: "noise",
        readings: [{ ts: "2022-11-27T23:59:59+08:00", quality: "normal", values: { LAeq: 67.4 } }],
      },
    ]);
    expect(result.unmapped).toEqual([]);
    const noise = result.devices[1];
    expect(
      NoiseUplink.safeParse({
        v: 1,
        deviceId: noise?.deviceId,
        seq: 1,
        kind: "noise",
        readings: noise?.readings,
      }).success,
    ).toBe(true);
  });

  it("stamps hourly and daily data at the period's end, across month and year ends", () => {
    const hourly = ok(toReadings(frame("2061", "DataTime=20221231230000;a34002-Avg=40"), MAPPING));
    expect(hourly.devices[0]?.readings[0]?.ts).toBe("2023-01-01T00:00:00+08:00");
    const daily = ok(toReadings(frame("2031", "DataTime=20240229000000;a34002-Avg=40"), MAPPING));
    expect(daily.devices[0]?.readings[0]?.ts).toBe("2024-03-01T00:00:00+08:00");
    const realtime = ok(
      toReadings(frame("2011", "DataTime=20240229000000;a34002-Rtd=40"), MAPPING),
    );
    expect(realtime.devices[0]?.readings[0]?.ts).toBe("2024-02-29T00:00:00+08:00");
  });

  it("uses the model's minute-data period", () => {
    const mapping = Hj212Mapping.parse({
      models: {
        m: { kind: "dust", minuteDataIntervalS: 300, factors: { a34002: { quantity: "pm10" } } },
      },
      devices: { X: { deviceId: "x", model: "m" } },
    });
    const result = ok(
      toReadings(frame("2051", "DataTime=20220513165500;a34002-Avg=1", "X"), mapping),
    );
    expect(result.devices[0]?.readings[0]?.ts).toBe("2022-05-13T17:00:00+08:00");
  });

  it("reads a 17-digit 2005 DataTime as local time in Asia/Shanghai", () => {
    const segment = parsed(
      "ST=22;CN=2011;MN=JLYP01_AIR01_0001;CP=&&DataTime=20220513080000123;a34002-Rtd=5&&",
    );
    const result = ok(toReadings(segment, MAPPING));
    const ts = result.devices[0]?.readings[0]?.ts ?? "";
    expect(ts).toBe("2022-05-13T08:00:00+08:00");
    expect(new Date(ts).toISOString()).toBe("2022-05-13T00:00:00.000Z");
  });

  it("splits factors with different flags into readings of the same ts, one per quality", () => {
    const result = ok(
      toReadings(
        frame(
          "2011",
          "DataTime=20220513162600;a34001-Rtd=90,a34001-Flag=N;a34002-Rtd=31,a34002-Flag=M;a34004-Rtd=14,a34004-Flag=N;a01001-Rtd=17,a01001-Flag=X;a01002-Rtd=85,a01002-Flag=C;a01007-Rtd=2,a01007-Flag=n",
        ),
        MAPPING,
      ),
    );
    const ts = "2022-05-13T16:26:00+08:00";
    expect(result.devices[0]?.readings).toEqual([
      { ts, quality: "normal", values: { tsp: 90, pm2_5: 14, windSpeed: 2 } },
      { ts, quality: "maintenance", values: { pm10: 31 } },
      { ts, quality: "fault", values: { temperature: 17 } }, // unknown letter X
      { ts, quality: "calibration", values: { humidity: 85 } },
    ]);
  });

  it("reads factors without a flag with the model's qualityWithoutFlag", () => {
    const result = ok(toReadings(frame("2011", "DataTime=20220513162600;a34002-Rtd=31"), MAPPING));
    expect(result.devices[0]?.readings[0]?.quality).toBe("normal");
    const strict = Hj212Mapping.parse({
      models: {
        m: {
          kind: "dust",
          qualityWithoutFlag: "manual",
          factors: { a34002: { quantity: "pm10" } },
        },
      },
      devices: { [SITE]: { deviceId: "x", model: "m" } },
    });
    const marked = ok(toReadings(frame("2011", "DataTime=20220513162600;a34002-Rtd=31"), strict));
    expect(marked.devices[0]?.readings[0]?.quality).toBe("manual");
  });

  it("converts units: ng/m³ by model, mg/m³ by device, µg/m³ as sent", () => {
    const cp = "DataTime=20220513162600;a34002-Avg=31,a34002-Flag=N;a34004-Avg=14.2,a34004-Flag=N";
    const ng = ok(
      toReadings(
        frame(
          "2051",
          cp.replace("=31,", "=31000,").replace("=14.2,", "=14200,"),
          "DUSTNG0000000000000000001",
        ),
        MAPPING,
      ),
    );
    expect(ng.devices[0]?.readings[0]?.values).toEqual({ pm10: 31, pm2_5: 14.2 });
    const mg = ok(
      toReadings(
        frame("2051", cp.replace("=31,", "=0.031,"), "DUSTMG0000000000000000001"),
        MAPPING,
      ),
    );
    expect(mg.devices[0]?.readings[0]?.values).toEqual({ pm10: 31, pm2_5: 14.2 });
    const ug = ok(toReadings(frame("2051", cp), MAPPING));
    expect(ug.devices[0]?.readings[0]?.values).toEqual({ pm10: 31, pm2_5: 14.2 });
  });

  it("maps platform-specific oil-fume codes, switch states included", () => {
    const result = ok(
      toReadings(
        frame(
          "2051",
          "DataTime=20220513120000;yy01-Avg=1.8,yy01-Flag=N;kl01-Avg=2.5,kl01-Flag=N;a24088-Avg=6.1,a24088-Flag=N;fj01-Avg=1,fj01-Flag=N;jh01-Avg=0,jh01-Flag=N",
          "88888880000001",
        ),
        MAPPING,
      ),
    );
    expect(result.devices[0]).toMatchObject({
      deviceId: "restaurant-5-fume",
      kind: "cooking_fume",
      readings: [
        {
          ts: "2022-05-13T12:01:00+08:00",
          values: { oilFume: 1.8, particulate: 2.5, nmhc: 6.1, fanOn: true, purifierOn: false },
        },
      ],
    });
  });

  it("keeps unknown factors apart, and rejects unusable values with a reason", () => {
    const result = ok(
      toReadings(
        frame(
          "2051",
          "DataTime=20220513162600;a34002-Avg=abc;a34004-Rtd=14;a34001-Avg=1e400;a34005-Avg=9;zz01-Avg=1;a01001-Avg=17",
        ),
        MAPPING,
      ),
    );
    expect(result.devices[0]?.readings).toEqual([
      { ts: "2022-05-13T16:27:00+08:00", quality: "normal", values: { temperature: 17 } },
    ]);
    expect(result.unmapped.map((f) => [f.code, { ...f.fields }])).toEqual([
      ["a34005", { Avg: "9" }],
      ["zz01", { Avg: "1" }],
    ]);
    expect(result.rejected).toEqual([
      { deviceId: "site-17-dust", code: "a34002", reason: 'value "abc" is not a number' },
      { deviceId: "site-17-dust", code: "a34004", reason: "no a34004-Avg value in CN 2051 data" },
      { deviceId: "site-17-dust", code: "a34001", reason: 'value "1e400" is not a number' },
    ]);
  });

  it("takes a quantity once per frame when two codes map to it", () => {
    const mapping = Hj212Mapping.parse({
      models: {
        m: { kind: "noise", factors: { a50001: { quantity: "LAeq" }, Leq: { quantity: "LAeq" } } },
      },
      devices: { X: { deviceId: "x", model: "m" } },
    });
    const result = ok(
      toReadings(frame("2011", "DataTime=20220513162600;Leq-Rtd=60;a50001-Rtd=61", "X"), mapping),
    );
    expect(result.devices[0]?.readings[0]?.values).toEqual({ LAeq: 60 });
    expect(result.rejected).toEqual([
      {
        deviceId: "x",
        code: "a50001",
        reason: "LAeq is already given by factor Leq in this frame",
      },
    ]);
  });

  it("reads a per-CN suffix override", () => {
    const mapping = Hj212Mapping.parse({
      models: {
        m: { kind: "dust", factors: { a34002: { quantity: "pm10", suffix: { "2011": "ZsRtd" } } } },
      },
      devices: { X: { deviceId: "x", model: "m" } },
    });
    const result = ok(
      toReadings(
        frame("2011", "DataTime=20220513162600;a34002-Rtd=1,a34002-ZsRtd=2", "X"),
        mapping,
      ),
    );
    expect(result.devices[0]?.readings[0]?.values).toEqual({ pm10: 2 });
  });

  it("gives no device entry when no factor of its model arrived", () => {
    const result = ok(toReadings(frame("2011", "DataTime=20220513162600;a50001-Rtd=61"), MAPPING));
    expect(result.devices.map((d) => d.deviceId)).toEqual(["site-17-noise"]);
  });

  it.each([
    ["HJ212_UNKNOWN_MN", frame("2011", "DataTime=20220513162600;a34002-Rtd=1", "NOBODY")],
    ["HJ212_UNSUPPORTED_CN", frame("1062", "RtdInterval=30")],
    ["HJ212_BAD_DATATIME", frame("2011", "a34002-Rtd=1")],
    ["HJ212_BAD_DATATIME", frame("2011", "DataTime=20221345000000;a34002-Rtd=1")],
    ["HJ212_BAD_DATATIME", frame("2011", "DataTime=20220229000000;a34002-Rtd=1")],
    ["HJ212_BAD_DATATIME", frame("2011", "DataTime=20220513240000;a34002-Rtd=1")],
    ["HJ212_BAD_DATATIME", frame("2011", "DataTime=19991231235959;a34002-Rtd=1")],
    ["HJ212_BAD_DATATIME", frame("2031", "DataTime=21000101000000;a34002-Avg=1")],
  ])("refuses with %s", (code, segment) => {
    const result = toReadings(segment, MAPPING);
    expect(result.ok ? "ok" : result.error.code).toBe(code);
  });

  it("formats instants in +08:00", () => {
    expect(formatShanghai(Date.UTC(2026, 10, 27, 0, 0, 0))).toBe("2026-11-27T08:00:00+08:00");
    expect(formatShanghai(Date.UTC(2026, 11, 31, 16, 0, 0))).toBe("2027-01-01T00:00:00+08:00");
  });
});

describe("values outside the plausible range (issue 16 item 7)", () => {
  it("refuses an implausible value under N alone and keeps the frame's other factors", () => {
    const result = ok(
      toReadings(
        frame(
          "2051",
          "DataTime=20220513162600;a34002-Avg=25000,a34002-Flag=N;a34004-Avg=14,a34004-Flag=N",
        ),
        MAPPING,
      ),
    );
    expect(result.devices[0]?.readings).toEqual([
      { ts: "2022-05-13T16:27:00+08:00", quality: "normal", values: { pm2_5: 14 } },
    ]);
    expect(result.rejected).toEqual([
      {
        deviceId: "site-17-dust",
        code: "a34002",
        reason: "pm10 25000 is above the plausible range 0..20000 µg/m³ (flag N)",
      },
    ]);
  });

  it("keeps T over range at full scale and a D sentinel at the bound, with their quality", () => {
    const result = ok(
      toReadings(
        frame(
          "2051",
          "DataTime=20220513162600;a34002-Avg=25000,a34002-Flag=T;a34004-Avg=-9999,a34004-Flag=D",
        ),
        MAPPING,
      ),
    );
    expect(result.devices[0]?.readings).toEqual([
      { ts: "2022-05-13T16:27:00+08:00", quality: "over_range", values: { pm10: 20_000 } },
      { ts: "2022-05-13T16:27:00+08:00", quality: "fault", values: { pm2_5: 0 } },
    ]);
    expect(result.rejected).toEqual([]);
    expect(result.clamped.map((c) => [c.code, c.quality, c.sent, c.stored])).toEqual([
      ["a34002", "over_range", 25_000, 20_000],
      ["a34004", "fault", -9_999, 0],
    ]);
  });
});
