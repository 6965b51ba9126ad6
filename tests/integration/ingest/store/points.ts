import {
  QUANTITIES,
  QualityFlag,
  SensorKind,
  type QuantitySpec,
} from "../../../../contracts/index.js";
import type { Point, StoredReading } from "../../../../ingest/store/types.js";

/** Points and readings shared by the store suite and the store-specific tests. */

export const T0 = Date.UTC(2026, 2, 1, 8, 0, 0); // on a minute boundary

export const baseTags = {
  device: "n1",
  site: "s1",
  district: "Jinjiang",
  grid_cell: "JJ-01",
  quality: "normal",
} as const;

export function noise(timeMs: number, fields: Point["fields"], over: Partial<Point> = {}): Point {
  return { measurement: "noise", tags: baseTags, fields, seq: 1, timeMs, ...over };
}

/** What a store should give back for `point`. */
export function reading(point: Point): StoredReading {
  return {
    timeMs: point.timeMs,
    quality: point.tags.quality,
    seq: point.seq,
    values: point.fields,
  };
}

// Site names a registry may well hold: spaces, commas, equals signs, quotes, backslashes, 汉字.
export const SITES = ["锦江区 工地, east=1", `O'Brien "yard"`, "a\\b c", "plain", "春熙路=北"];

/** n points cycling through every kind, quality and site, with seeded full-precision values. */
export function mixedPoints(n: number): Point[] {
  let seed = 7;
  const random = () => ((seed = (seed * 16_807) % 2_147_483_647) - 1) / 2_147_483_646;
  const kinds = SensorKind.options;
  return Array.from({ length: n }, (_, i) => {
    const kind = kinds[i % kinds.length]!;
    const fields: Record<string, number | boolean> = {};
    Object.entries<QuantitySpec>(QUANTITIES[kind]).forEach(([name, spec], j) => {
      if (j > 0 && random() < 0.4) return; // a subset, never empty
      fields[name] =
        spec.type === "boolean" ? random() < 0.5 : spec.min + random() * (spec.max - spec.min);
    });
    if (i % 10 === 0) {
      // a whole number in a float field stays a float
      const [first] = Object.keys(fields);
      if (first !== undefined) fields[first] = 42;
    }
    return {
      measurement: kind,
      tags: {
        device: `${kind}-${i % 3}`,
        site: SITES[Math.floor(i / 5) % SITES.length]!,
        district: i % 2 === 0 ? "锦江区" : "Jin jiang",
        grid_cell: `JJ-${i % 4}`,
        quality: QualityFlag.options[i % QualityFlag.options.length]!,
        ...(i % 3 === 0 ? { zone: "class 2" } : {}),
      },
      fields,
      seq: 1_000_000_000_000 + i,
      timeMs: T0 + i * 1_000 + (i % 7),
    };
  });
}
