import { Device, type QualityFlag, Rule, Site } from "../../contracts/index.js";
import type { RefReading } from "./reference-evaluator.js";

/*
 * Registry entries, rules and readings for the differential tests and the reference's own tests:
 * a construction site, an ambient site and a tunnel segment in Asia/Shanghai (UTC+8, no daylight
 * saving), on the night of Thursday 2026-11-26.
 */

export const SEC = 1_000;
export const MIN = 60_000;
export const HOUR = 3_600_000;

/**
 * An instant of the test night, local Asia/Shanghai time: `local("21:59")` is 2026-11-26 21:59,
 * `local("05:59")` 2026-11-27 05:59 (hours before noon are the next morning); seconds allowed.
 */
export function local(hhmm: string): number {
  const day = Number(hhmm.slice(0, 2)) < 12 ? "27" : "26";
  const time = hhmm.length === 5 ? `${hhmm}:00` : hhmm;
  return Date.parse(`2026-11-${day}T${time}+08:00`);
}

const AREA = { district: "wuhou", gridCell: "g1" };
const LOCATION = { lat: 30.6, lon: 104.0 };
const PARTY = { name: "Test Construction Co." };

export interface Permit {
  readonly type: string;
  readonly from: number;
  readonly to: number;
}

const permitsOf = (permits: readonly Permit[]) =>
  permits.length === 0
    ? {}
    : {
        permits: permits.map((p) => ({
          type: p.type,
          reference: "NW-TEST",
          validFrom: new Date(p.from).toISOString(),
          validTo: new Date(p.to).toISOString(),
        })),
      };

export function constructionSite(id = "cs-1", permits: readonly Permit[] = []): Site {
  return Site.parse({
    id,
    type: "construction_site",
    name: id,
    area: AREA,
    location: LOCATION,
    regulatedParty: PARTY,
    phase: "structure",
    ...permitsOf(permits),
  });
}

/** A valid site of any type, with the fields its type requires, and `extra`. */
export function siteOf(type: Site["type"], id: string, extra: Record<string, unknown> = {}): Site {
  const required: Partial<Record<Site["type"], Record<string, unknown>>> = {
    construction_site: { regulatedParty: PARTY, phase: "structure" },
    restaurant: { regulatedParty: PARTY, size: "medium" },
    commercial_venue: { regulatedParty: PARTY },
    tunnel_segment: { tunnel: "t1", compartment: "gas", neighbours: [] },
  };
  return Site.parse({
    id,
    type,
    name: id,
    area: AREA,
    location: LOCATION,
    ...required[type],
    ...extra,
  });
}

export function tunnelSegment(id = "seg-1"): Site {
  return Site.parse({
    id,
    type: "tunnel_segment",
    name: id,
    area: AREA,
    location: LOCATION,
    tunnel: "t1",
    compartment: "gas",
    neighbours: [],
  });
}

export function device(
  id: string,
  kind: Device["kind"],
  siteId: string,
  expectedIntervalS = 60,
  extra: Record<string, unknown> = {},
): Device {
  return Device.parse({
    id,
    kind,
    model: "M",
    serial: id,
    siteId,
    area: AREA,
    location: LOCATION,
    expectedIntervalS,
    ...extra,
  });
}

/** A rule from the fields that matter; identity, clause and confidence filled in. */
export function rule(fields: Record<string, unknown>): Rule {
  return Rule.parse({
    version: 1,
    title: "generated rule",
    clause: { standard: "test", section: "generated" },
    confidence: "verified",
    ...fields,
  });
}

/** A reading. */
export function reading(
  deviceId: string,
  t: number,
  values: Record<string, number | boolean>,
  quality: QualityFlag = "normal",
): RefReading {
  return { deviceId, t, values, quality };
}

/** Readings every `stepMs` from `from` to `to` inclusive, values by instant. */
export function series(
  deviceId: string,
  from: number,
  to: number,
  stepMs: number,
  values: (t: number) => Record<string, number | boolean>,
): RefReading[] {
  const out: RefReading[] = [];
  for (let t = from; t <= to; t += stepMs) out.push(reading(deviceId, t, values(t)));
  return out;
}

/** Ticks every `stepMs` from `from` to `to` inclusive. */
export function ticks(from: number, to: number, stepMs: number): number[] {
  const out: number[] = [];
  for (let t = from; t <= to; t += stepMs) out.push(t);
  return out;
}
