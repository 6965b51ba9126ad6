import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type {
  Comparison,
  Device,
  QualityFlag,
  SensorKind,
  Site,
} from "../../../contracts/index.js";
import { RuleSet } from "../../../rules/rule-set.js";
import {
  AlarmFiles,
  compared,
  deliveryPlan,
  type DifferentialCase,
  ONE_BY_ONE,
  runProduction,
} from "../../support/differential.js";
import {
  device,
  HOUR,
  local,
  MIN,
  reading,
  SEC,
  siteOf,
} from "../../support/differential-fixtures.js";
import { referenceDecisions, type RefReading } from "../../support/reference-evaluator.js";

/*
 * Every rule of the default pack at its limits and at the period switches: readings just under,
 * at and just over each limit (and each level's), stamped 21:59, 22:00, 22:01, 05:59, 06:00 and
 * 06:01 local time (Asia/Shanghai) by 1-min devices, with the decision docs/rules.md gives
 * (Time: a reading measured (t − 1 min, t] and belongs to the period of its midpoint, so 21:59
 * and 22:00 are day, 22:01 night; 05:59 and 06:00 night, 06:01 day). Each row drives the
 * production driver over the pack loaded as the app loads it (RuleSet, default pack), one reading
 * per message and all readings in one message, and the reference evaluator; both must give the
 * row's decision.
 */

const PACK = new RuleSet();
const problems = PACK.reload();

const dir = mkdtempSync(join(tmpdir(), "cw-boundary-"));
const files = new AlarmFiles(dir);
afterAll(() => {
  files.close();
  rmSync(dir, { recursive: true, force: true });
});

const STAMPS = ["21:59", "22:00", "22:01", "05:59", "06:00", "06:01"] as const;
type Stamp = (typeof STAMPS)[number];
type Period = "day" | "night";

/** The period of a 1-min reading stamped `stamp`: that of its midpoint, stamp − 30 s. */
const periodOf = (stamp: Stamp): Period =>
  stamp === "22:01" || stamp === "05:59" || stamp === "06:00" ? "night" : "day";

interface Expected {
  readonly at: number;
  readonly level: string | undefined;
}

interface Row {
  readonly rule: string;
  readonly name: string;
  readonly sites: readonly Site[];
  readonly devices: readonly Device[];
  readonly readings: readonly RefReading[];
  readonly ticks?: readonly number[];
  readonly watchedFrom: number;
  /** The raise, or none. */
  readonly expected: Expected | undefined;
}

// ---------------------------------------------------------------------------------------------
// Registry

const party = { regulatedParty: { name: "Operator Ltd" } };
const AMBIENT = siteOf("ambient", "amb-2", { zoneClass: "2" });
const BUILD = siteOf("construction_site", "build-1");
const BUILD_PERMIT = siteOf("construction_site", "build-2", {
  permits: [
    {
      type: "night_works",
      reference: "NW-1",
      validFrom: new Date(local("21:00")).toISOString(),
      validTo: new Date(local("07:00")).toISOString(),
    },
  ],
});
const region = (dustRegion: string, phase = "structure") =>
  siteOf("construction_site", `build-${dustRegion}`, { dustRegion, phase, ...party });
const BAR = siteOf("commercial_venue", "bar-2", { zoneClass: "2" });
const RESTAURANT = siteOf("restaurant", "rest-1");
const SEGMENT = siteOf("tunnel_segment", "seg-1");
const RIVER = siteOf("river_station", "river-1", {
  levels: { warning: 10, guaranteed: 12, historicalMax: 14 },
});
const UNDERPASS = siteOf("underpass", "under-1");

const one = (kind: SensorKind, site: Site, extra: Record<string, unknown> = {}) =>
  device(`${kind}-1`, kind, site.id, 60, extra);

// ---------------------------------------------------------------------------------------------
// Thresholds judged on a window of one device

/**
 * - `latest`, `rolling1m`: the reading stamped S alone, judged at S in its own period;
 * - `rolling20m`: readings S − 19 min … S; the first window covered 75 % (15 of 20 minutes of
 *   one period) is at S − 5 min, in the period of the readings before S (at 22:01 the night
 *   window holds one night reading, a gap: the day windows before it decide);
 * - `clock1h`: the clock hour holding S, (from, to], filled; judged at its end, in the period of
 *   its midpoint (21:59 and 22:00 are in the 21:00–22:00 hour, day).
 */
type Shape = "latest" | "rolling1m" | "rolling20m" | "clock1h";

function placed(shape: Shape, stamp: Stamp): { stamps: number[]; at: number; period: Period } {
  const s = local(stamp);
  switch (shape) {
    case "latest":
    case "rolling1m":
      return { stamps: [s], at: s, period: periodOf(stamp) };
    case "rolling20m":
      return {
        stamps: Array.from({ length: 20 }, (_, i) => s - (19 - i) * MIN),
        at: s - 5 * MIN,
        period: stamp < "12:00" ? "night" : "day",
      };
    case "clock1h": {
      const end = Math.ceil(s / HOUR) * HOUR;
      const mid = end - 30 * MIN;
      const hour = Number(new Date(mid + 8 * HOUR).toISOString().slice(11, 13));
      return {
        stamps: Array.from({ length: 60 }, (_, i) => end - (59 - i) * MIN),
        at: end,
        period: hour >= 6 && hour < 22 ? "day" : "night",
      };
    }
  }
}

interface ThresholdSpec {
  readonly id: string;
  readonly kind: SensorKind;
  readonly site: Site;
  readonly shape: Shape;
  readonly quantity: string;
  readonly op: Comparison;
  /** The raise threshold: one number, or by period. */
  readonly raise: number | { readonly day: number; readonly night: number };
  readonly nightOnly?: boolean;
  /** Levels after the first (which raises at `raise`): name and threshold. */
  readonly levels?: ReadonlyArray<readonly [string, number]>;
  readonly firstLevel?: string;
  /** The rule never raises here (disabled, exempt). */
  readonly never?: string;
}

const compare = (v: number, op: Comparison, limit: number) =>
  op === ">" ? v > limit : op === ">=" ? v >= limit : op === "<" ? v < limit : v <= limit;

function thresholdRows(spec: ThresholdSpec): Row[] {
  const limits = [
    ...(typeof spec.raise === "number" ? [spec.raise] : [spec.raise.day, spec.raise.night]),
    ...(spec.levels ?? []).map(([, x]) => x),
  ];
  const values = [...new Set(limits.flatMap((x) => [round(x - 0.1), x, round(x + 0.1)]))].sort(
    (a, b) => a - b,
  );
  const dev = one(spec.kind, spec.site);
  const rows: Row[] = [];
  for (const stamp of STAMPS) {
    const { stamps, at, period } = placed(spec.shape, stamp);
    for (const v of values) {
      const limit = typeof spec.raise === "number" ? spec.raise : spec.raise[period];
      const applies = spec.never === undefined && (!spec.nightOnly || period === "night");
      let expected: Expected | undefined;
      if (applies && compare(v, spec.op, limit)) {
        let level = spec.firstLevel;
        for (const [name, x] of spec.levels ?? []) if (compare(v, spec.op, x)) level = name;
        expected = { at, level };
      }
      const why =
        spec.never ??
        (applies ? `${period} limit ${limit}` : `${period}: outside activeDuring night`);
      rows.push({
        rule: spec.id,
        name: `${stamp} ${spec.quantity} ${v} (${why}) → ${expected === undefined ? "nothing" : `raise${expected.level === undefined ? "" : ` ${expected.level}`} at ${clock(expected.at)}`}`,
        sites: [spec.site],
        devices: [dev],
        readings: stamps.map((t) => reading(dev.id, t, { [spec.quantity]: v })),
        watchedFrom: (stamps[0] as number) - MIN,
        expected,
      });
    }
  }
  return rows;
}

const round = (x: number) => Math.round(x * 1000) / 1000;
const clock = (t: number) => new Date(t + 8 * HOUR).toISOString().slice(11, 16);

const THRESHOLDS: readonly ThresholdSpec[] = [
  {
    id: "noise.area.laeq",
    kind: "noise",
    site: AMBIENT,
    shape: "clock1h",
    quantity: "LAeq",
    op: ">",
    raise: { day: 60, night: 50 },
  },
  {
    id: "noise.area.night-lamax",
    kind: "noise",
    site: AMBIENT,
    shape: "latest",
    quantity: "LAmax",
    op: ">",
    raise: 65,
    nightOnly: true,
  },
  {
    id: "noise.construction.laeq",
    kind: "noise",
    site: BUILD,
    shape: "rolling20m",
    quantity: "LAeq",
    op: ">",
    raise: { day: 70, night: 55 },
  },
  {
    id: "noise.construction.night-lamax",
    kind: "noise",
    site: BUILD,
    shape: "latest",
    quantity: "LAmax",
    op: ">",
    raise: 70,
    nightOnly: true,
  },
  {
    id: "noise.construction.night-works",
    kind: "noise",
    site: BUILD,
    shape: "rolling20m",
    quantity: "LAeq",
    op: ">",
    raise: 55,
    nightOnly: true,
  },
  {
    id: "noise.construction.night-works",
    kind: "noise",
    site: BUILD_PERMIT,
    shape: "rolling20m",
    quantity: "LAeq",
    op: ">",
    raise: 55,
    never: "night_works permit 21:00–07:00",
  },
  {
    id: "noise.commercial.laeq",
    kind: "noise",
    site: BAR,
    shape: "rolling1m",
    quantity: "LAeq",
    op: ">",
    raise: { day: 60, night: 50 },
  },
  {
    id: "dust.pm10.default",
    kind: "dust",
    site: region("default"),
    shape: "clock1h",
    quantity: "pm10",
    op: ">",
    raise: 150,
    firstLevel: "warning",
    levels: [["case", 200]],
  },
  {
    id: "dust.tsp.shaanxi",
    kind: "dust",
    site: region("shaanxi"),
    shape: "clock1h",
    quantity: "tsp",
    op: ">",
    raise: 700,
  },
  {
    id: "dust.tsp.shaanxi",
    kind: "dust",
    site: region("shaanxi", "earthwork"),
    shape: "clock1h",
    quantity: "tsp",
    op: ">",
    raise: 800,
  },
  {
    id: "dust.pm10.sichuan",
    kind: "dust",
    site: region("sichuan"),
    shape: "clock1h",
    quantity: "pm10",
    op: ">",
    raise: 200,
    never: "shipped disabled",
  },
  ...(
    [
      ["tunnel.ch4", "ch4", ">=", 20, [["III", 25]]],
      ["tunnel.o2-low", "o2", "<", 19.5, []],
      ["tunnel.o2-high", "o2", ">", 23.5, []],
      ["tunnel.h2s", "h2s", ">", 10, []],
      ["tunnel.co", "co", ">=", 30, [["III", 200]]],
      ["tunnel.temperature", "temperature", ">", 40, []],
      ["tunnel.sump", "sumpLevel", ">=", 50, []],
    ] as const
  ).map(([id, quantity, op, raise, levels]): ThresholdSpec => ({
    id,
    kind: "utility_tunnel",
    site: SEGMENT,
    shape: "latest",
    quantity,
    op,
    raise,
    firstLevel: "IV",
    levels,
  })),
  {
    id: "water.river.stage",
    kind: "water_level",
    site: RIVER,
    shape: "latest",
    quantity: "stage",
    op: ">=",
    raise: 9.5,
    firstLevel: "IV",
    levels: [
      ["III", 10],
      ["II", 12],
      ["I", 14],
    ],
  },
  {
    id: "water.underpass.ponding",
    kind: "water_level",
    site: UNDERPASS,
    shape: "latest",
    quantity: "ponding",
    op: ">=",
    raise: 15,
    firstLevel: "IV",
    levels: [["III", 25]],
  },
];

// ---------------------------------------------------------------------------------------------
// The other rules: counted clock intervals, rate of rise, switch states, devices

/** Readings every minute in (to − span, to] of `values`. */
const filled = (
  deviceId: string,
  to: number,
  span: number,
  values: Record<string, number | boolean>,
) =>
  Array.from({ length: span / MIN }, (_, i) =>
    reading(deviceId, to - span + (i + 1) * MIN, values),
  );

function specialRows(): Row[] {
  const rows: Row[] = [];
  const ceilTo = (t: number, step: number) => Math.ceil(t / step) * step;
  // Oil fume: three consecutive 10-min means over 2.0 mg/m³, business hours 10:00–22:00. The
  // 10-min interval holding S is filled with the two before it; judged when it ends.
  const hood = one("cooking_fume", RESTAURANT);
  for (const stamp of STAMPS) {
    const end = ceilTo(local(stamp), 10 * MIN);
    const business = stamp === "21:59" || stamp === "22:00";
    for (const v of [1.9, 2, 2.1]) {
      const expected = business && v > 2 ? { at: end, level: undefined } : undefined;
      rows.push({
        rule: "cooking-fume.oil-fume",
        name: `${stamp} oilFume ${v} in the three intervals to ${clock(end)} (${business ? "business" : "outside business"}, limit 2)`,
        sites: [RESTAURANT],
        devices: [hood],
        readings: filled(hood.id, end, 30 * MIN, { oilFume: v }),
        watchedFrom: end - 31 * MIN,
        expected,
      });
    }
  }
  // Purifier off while the fan runs, held 10 min: 9 min never, 10 and 11 min raise.
  for (const stamp of STAMPS) {
    for (const held of [9, 10, 11]) {
      const s = local(stamp);
      rows.push({
        rule: "cooking-fume.purifier-off",
        name: `${stamp} fan on, purifier off for ${held} min (for 10 min)`,
        sites: [RESTAURANT],
        devices: [hood],
        readings: filled(hood.id, s, (held + 1) * MIN, { fanOn: true, purifierOn: false }),
        watchedFrom: s - (held + 2) * MIN,
        expected: held >= 10 ? { at: s - (held - 10) * MIN, level: undefined } : undefined,
      });
    }
  }
  // Hebei: the third violating hour of the local day raises; three hours to the end of S's hour.
  const hebei = region("hebei");
  const dust = one("dust", hebei);
  for (const stamp of STAMPS) {
    const end = ceilTo(local(stamp), HOUR);
    for (const v of [79.9, 80, 80.1]) {
      rows.push({
        rule: "dust.pm10.hebei",
        name: `${stamp} pm10 ${v} for the three hours to ${clock(end)} (limit 80, third exceedance)`,
        sites: [hebei],
        devices: [dust],
        readings: filled(dust.id, end, 3 * HOUR, { pm10: v }),
        watchedFrom: end - 3 * HOUR - MIN,
        expected: v > 80 ? { at: end, level: undefined } : undefined,
      });
    }
  }
  // Ponding rising 5 cm within 5 min: 0 at S − 4 min, the rise at S.
  const gauge = one("water_level", UNDERPASS);
  for (const stamp of STAMPS) {
    const s = local(stamp);
    for (const rise of [4.9, 5, 5.1]) {
      rows.push({
        rule: "water.ponding.rate-of-rise",
        name: `${stamp} ponding 0 → ${rise} in 4 min (rise ≥ 5)`,
        sites: [UNDERPASS],
        devices: [gauge],
        readings: [
          reading(gauge.id, s - 4 * MIN, { ponding: 0 }),
          reading(gauge.id, s, { ponding: rise }),
        ],
        watchedFrom: s - 5 * MIN,
        expected: rise >= 5 ? { at: s, level: "IV" } : undefined,
      });
    }
  }
  // Deadman: silent longer than 3 × 60 s, judged on the clock tick.
  const quiet = siteOf("ambient", "amb-0");
  const monitor = one("noise", quiet);
  for (const stamp of STAMPS) {
    const s = local(stamp);
    for (const silence of [179, 180, 181]) {
      rows.push({
        rule: "device.deadman",
        name: `${stamp} reading, tick ${silence} s later (limit 180 s)`,
        sites: [quiet],
        devices: [monitor],
        readings: [reading(monitor.id, s, { LAeq: 50 })],
        ticks: [s + silence * SEC],
        watchedFrom: s - MIN,
        expected: silence > 180 ? { at: s + silence * SEC, level: undefined } : undefined,
      });
    }
  }
  // Quality flags: the newest reading flagged fault, calibration or maintenance.
  const flags: readonly QualityFlag[] = [
    "normal",
    "fault",
    "calibration",
    "maintenance",
    "over_range",
  ];
  for (const stamp of STAMPS) {
    const s = local(stamp);
    for (const flag of flags) {
      const raises = flag === "fault" || flag === "calibration" || flag === "maintenance";
      rows.push({
        rule: "device.quality-flag",
        name: `${stamp} reading flagged ${flag}`,
        sites: [quiet],
        devices: [monitor],
        readings: [reading(monitor.id, s, { LAeq: 50 }, flag)],
        watchedFrom: s - MIN,
        expected: raises ? { at: s, level: undefined } : undefined,
      });
    }
  }
  // Calibration: expired when the local date of the instant is after calibrationDueOn.
  const dateOf = (t: number) => new Date(t + 8 * HOUR).toISOString().slice(0, 10);
  for (const stamp of [...STAMPS, "23:59", "00:00", "00:01"] as const) {
    const s = local(stamp);
    const dues =
      stamp.startsWith("23") || stamp.startsWith("00")
        ? ["2026-11-26"]
        : [dateOf(s), dateOf(s - 24 * HOUR)];
    for (const due of dues) {
      const calibrated = one("noise", quiet, { calibrationDueOn: due });
      const expired = dateOf(s) > due;
      rows.push({
        rule: "device.calibration-expired",
        name: `${stamp} (${dateOf(s)}) reading, calibration due ${due}`,
        sites: [quiet],
        devices: [calibrated],
        readings: [reading(calibrated.id, s, { LAeq: 50 })],
        watchedFrom: s - MIN,
        expected: expired ? { at: s, level: undefined } : undefined,
      });
    }
  }
  return rows;
}

const ROWS: readonly Row[] = [...THRESHOLDS.flatMap(thresholdRows), ...specialRows()];

// ---------------------------------------------------------------------------------------------

const decisionsOf = (
  ds: ReadonlyArray<{ ruleId: string; type: string; at: number; level?: string | undefined }>,
  rule: string,
) =>
  ds
    .filter((d) => d.ruleId === rule)
    .map((d) => `${d.type}${d.level === undefined ? "" : ` ${d.level}`} at ${clock(d.at)}`);

describe("default pack at its limits and at 22:00 / 06:00 (Asia/Shanghai)", () => {
  it("loads as the app loads it, and every rule has a table", () => {
    expect(problems).toEqual([]);
    expect([...new Set(ROWS.map((r) => r.rule))].sort()).toEqual(
      PACK.rules.map((r) => r.id).sort(),
    );
  });

  for (const rule of [...new Set(ROWS.map((r) => r.rule))]) {
    describe(rule, () => {
      it.each(ROWS.filter((r) => r.rule === rule).map((r) => [r.name, r] as const))(
        "%s",
        async (_name, row) => {
          const c: DifferentialCase = {
            rules: PACK.rules,
            devices: row.devices,
            sites: row.sites,
            readings: row.readings,
            ticks: row.ticks ?? [],
            watchedFrom: row.watchedFrom,
          };
          const expected =
            row.expected === undefined
              ? []
              : [
                  `raise${row.expected.level === undefined ? "" : ` ${row.expected.level}`} at ${clock(row.expected.at)}`,
                ];
          const reference = decisionsOf(compared(referenceDecisions(c)), rule);
          const oneByOne = decisionsOf(
            compared(await runProduction(c, deliveryPlan(c, ONE_BY_ONE), { files, ruleSet: PACK })),
            rule,
          );
          const together = decisionsOf(
            compared(
              await runProduction(c, deliveryPlan(c, { sizes: [500], restarts: [] }), {
                files,
                ruleSet: PACK,
              }),
            ),
            rule,
          );
          expect({ reference, oneByOne, together }).toEqual({
            reference: expected,
            oneByOne: expected,
            together: expected,
          });
        },
      );
    });
  }
});
