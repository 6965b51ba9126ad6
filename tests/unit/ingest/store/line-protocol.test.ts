import { Point as ReferencePoint } from "@influxdata/influxdb-client";
import { describe, expect, it } from "vitest";
import {
  QUANTITIES,
  QualityFlag,
  SensorKind,
  type QuantitySpec,
} from "../../../../contracts/index.js";
import {
  LineProtocolError,
  MAX_TIME_MS,
  BodyPool,
  encodeBatch,
  LineEncoder,
  TAG_KEYS,
  toLine,
} from "../../../../ingest/store/line-protocol.js";
import type { Point, PointTags } from "../../../../ingest/store/types.js";

/**
 * The reference serializer, @influxdata/influxdb-client 1.35's Point, with one normalisation:
 * it writes booleans as T / F, citywatch as true / false (both are line protocol booleans).
 */
function referenceLine(point: Point): string {
  const ref = new ReferencePoint(point.measurement);
  const tags: Readonly<Record<string, string | undefined>> = { ...point.tags };
  for (const [key, value] of Object.entries(tags)) {
    if (value !== undefined) ref.tag(key, value);
  }
  for (const [key, value] of Object.entries(point.fields)) {
    if (typeof value === "boolean") ref.booleanField(key, value);
    else ref.floatField(key, value);
  }
  ref.intField("seq", point.seq);
  ref.timestamp(point.timeMs);
  for (const [key, value] of Object.entries(ref.fields)) {
    if (value === "T") ref.fields[key] = "true";
    if (value === "F") ref.fields[key] = "false";
  }
  const line = ref.toLineProtocol({ convertTime: (time) => String(time) });
  if (line === undefined) throw new Error("reference wrote no line");
  return line;
}

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Pieces of tag values: escapes, quotes, backslashes, non-ASCII (锦江区, an emoji outside the BMP).
const PIECES = [
  "a",
  "Z",
  "7",
  "-",
  "_",
  ".",
  " ",
  ",",
  "=",
  '"',
  "'",
  "\\",
  "\t",
  "\n",
  "锦江区",
  "成都 高新",
  "🚧",
  "x=y",
  "a,b c",
  "\\n",
];

const KINDS = SensorKind.options;
const QUALITIES = QualityFlag.options;

function generatedPoint(random: () => number): Point {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const text = (min: number) => {
    let value = "";
    const length = min + Math.floor(random() * 6);
    for (let i = 0; i < length; i++) value += pick(PIECES);
    return value;
  };
  const kind = pick(KINDS);
  const specs = Object.entries<QuantitySpec>(QUANTITIES[kind]);
  const fields: Record<string, number | boolean> = {};
  for (const [name, spec] of specs) {
    if (random() < 0.5) continue;
    if (spec.type === "boolean") fields[name] = random() < 0.5;
    else
      fields[name] = pick([
        Math.round(random() * 150),
        random() * spec.max,
        -random() * 1e-9,
        (random() - 0.5) * 1e300,
        0.1 + 0.2,
        Number.MIN_VALUE,
        Number.MAX_VALUE,
        -0,
      ]);
  }
  const tags: PointTags = {
    device: pick(["n1", "dev.01", "D-9_x", text(1)]),
    site: text(1),
    district: pick(["锦江区", "Jinjiang", text(0)]),
    grid_cell: text(1),
    quality: pick(QUALITIES),
    ...(random() < 0.5 ? { zone: text(0) } : {}),
  };
  return {
    measurement: kind,
    tags,
    fields,
    seq: Math.floor(random() * Number.MAX_SAFE_INTEGER),
    timeMs: Math.floor((random() - 0.2) * 4e12),
  };
}

/** Tag values line protocol cannot carry (checked against influxd 1.6.7 in the integration test). */
const unwritable = (point: Point) =>
  Object.values<string | undefined>({ ...point.tags }).some(
    (value) => value !== undefined && /\\(?:[, =]|$)/.test(value),
  );

const point = (over: Partial<Point> = {}): Point => ({
  measurement: "noise",
  tags: { device: "n1", site: "s1", district: "Jinjiang", grid_cell: "JJ-01", quality: "normal" },
  fields: { LAeq: 60 },
  seq: 42,
  timeMs: 1_700_000_000_000,
  ...over,
});

describe("line protocol", () => {
  it("writes what the reference serializer writes, byte for byte, for generated points", () => {
    const random = seeded(20_240_611);
    let compared = 0;
    let refused = 0;
    for (let i = 0; i < 5_000; i++) {
      const p = generatedPoint(random);
      if (unwritable(p)) {
        expect(() => toLine(p)).toThrow(LineProtocolError);
        refused++;
        continue;
      }
      expect(toLine(p), JSON.stringify(p)).toBe(referenceLine(p));
      compared++;
    }
    // Both sides of the comparison were exercised.
    expect(compared).toBeGreaterThan(2_000);
    expect(refused).toBeGreaterThan(100);
  });

  it("escapes commas, spaces and equals signs in tag values, and keeps quotes and unicode", () => {
    const line = toLine(
      point({
        tags: {
          device: "n1",
          site: 'Site "A", east=1',
          district: "锦江区",
          grid_cell: "JJ 01",
          quality: "normal",
          zone: "a\\b'c",
        },
      }),
    );
    expect(line).toBe(
      'noise,device=n1,district=锦江区,grid_cell=JJ\\ 01,quality=normal,site=Site\\ "A"\\,\\ east\\=1,zone=a\\b\'c LAeq=60,seq=42i 1700000000000',
    );
  });

  it("writes tags sorted by key, and leaves out an absent or empty zone", () => {
    expect([...TAG_KEYS]).toEqual([...TAG_KEYS].sort());
    const keys = (line: string) =>
      line
        .split(" ")[0]!
        .split(",")
        .slice(1)
        .map((pair) => pair.split("=")[0]);
    expect(keys(toLine(point({})))).toEqual(["device", "district", "grid_cell", "quality", "site"]);
    const zoned = point({ tags: { ...point().tags, zone: "Z1" } });
    expect(keys(toLine(zoned))).toEqual([
      "device",
      "district",
      "grid_cell",
      "quality",
      "site",
      "zone",
    ]);
    expect(toLine(point({ tags: { ...point().tags, zone: "" } }))).toBe(toLine(point()));
  });

  it("writes floats in full precision without i, seq as an integer, booleans as true/false", () => {
    expect(toLine(point({ fields: { LAeq: 60, LAmax: 0.1 + 0.2, L90: 1e21 } }))).toBe(
      "noise,device=n1,district=Jinjiang,grid_cell=JJ-01,quality=normal,site=s1 L90=1e+21,LAeq=60,LAmax=0.30000000000000004,seq=42i 1700000000000",
    );
    expect(
      toLine(
        point({
          measurement: "cooking_fume",
          fields: { oilFume: 1.2, fanOn: true, purifierOn: false },
        }),
      ),
    ).toBe(
      "cooking_fume,device=n1,district=Jinjiang,grid_cell=JJ-01,quality=normal,site=s1 fanOn=true,oilFume=1.2,purifierOn=false,seq=42i 1700000000000",
    );
    // Every float reads back as the same number.
    for (const value of [Number.MIN_VALUE, Number.MAX_VALUE, 1 / 3, -2.5e-7, 123456789.12345679]) {
      const text = / LAeq=([^,]+),/.exec(toLine(point({ fields: { LAeq: value } })))![1]!;
      expect(text.endsWith("i")).toBe(false);
      expect(Number(text)).toBe(value);
    }
  });

  it("sorts fields that are not the kind's quantities as the reference does", () => {
    const odd = point({ fields: { LAeq: 60, "b c": 1, "a=b": true, "Z,1": 2 } });
    expect(toLine(odd)).toBe(referenceLine(odd));
    expect(toLine(odd)).toContain(" LAeq=60,Z\\,1=2,a\\=b=true,b\\ c=1,seq=42i ");
  });

  it("refuses NaN and ±Infinity, and times and seqs it cannot write", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expect(() => toLine(point({ fields: { LAeq: bad } }))).toThrow(/LAeq is (NaN|-?Infinity)/);
    }
    expect(() => toLine(point({ timeMs: 1.5 }))).toThrow(LineProtocolError);
    expect(() => toLine(point({ timeMs: MAX_TIME_MS + 1 }))).toThrow(/within/);
    expect(toLine(point({ timeMs: -MAX_TIME_MS }))).toMatch(/ -9223372036854$/);
    expect(() => toLine(point({ seq: 2 ** 53 }))).toThrow(/seq/);
    expect(() => toLine(point({ seq: 0.5 }))).toThrow(/seq/);
    expect(() => toLine(point({ fields: { LAeq: 60, seq: 3 } }))).toThrow(/must not hold seq/);
  });

  it("refuses a tag value with a backslash at its end or before an escaped character", () => {
    for (const site of ["east\\", "a\\,b", "a\\ b", "a\\=b", "a\\\\"]) {
      expect(() => toLine(point({ tags: { ...point().tags, site } }))).toThrow(/backslash/);
    }
    expect(toLine(point({ tags: { ...point().tags, site: "a\\b" } }))).toContain(",site=a\\b ");
  });

  it("encodes a batch into one body and refuses only the bad points, by index", () => {
    const batch = [
      point(),
      point({ fields: { LAeq: Number.NaN } }),
      point({ seq: 43 }),
      point({ tags: { ...point().tags, grid_cell: "x\\" } }),
    ];
    const encoded = encodeBatch(batch);
    expect(encoded.lineCount).toBe(2);
    expect([encoded.index(0), encoded.index(1)]).toEqual([0, 2]);
    expect(encoded.text(1)).toBe(toLine(batch[2]!));
    expect(encoded.body.toString("utf8")).toBe(`${toLine(batch[0]!)}\n${toLine(batch[2]!)}`);
    expect(encoded.refused.map((r) => r.index)).toEqual([1, 3]);
    expect(encoded.refused[0]?.reason).toMatch(/LAeq is NaN/);
  });

  it("writes lines as UTF-8 with no trailing newline, any run of them one slice of the body", () => {
    // Longer than the first guess of the body's size, so the body grows on the way.
    const district = "锦江区".repeat(200);
    const batch = [
      point({ seq: 1 }),
      point({ seq: 2, tags: { ...point().tags, district } }),
      point({ seq: 3, tags: { ...point().tags, site: "é" } }),
    ];
    const encoded = encodeBatch(batch);
    const lines = batch.map((p) => toLine(p));
    expect(encoded.body.toString("utf8")).toBe(lines.join("\n"));
    expect(encoded.body.length).toBe(Buffer.byteLength(lines.join("\n")));
    expect([0, 1, 2].map((k) => encoded.text(k))).toEqual(lines);
    expect(encoded.slice(1, 3).toString("utf8")).toBe(`${lines[1]}\n${lines[2]}`);
    expect(encoded.slice(0, 1).toString("utf8")).toBe(lines[0]);
    expect(encoded.slice(2, 2).length).toBe(0);
    const none = encodeBatch([]);
    expect([none.lineCount, none.body.length]).toEqual([0, 0]);
  });

  it("grows past the points it expected, a point at a time, and indexes by order of adding", () => {
    const encoder = new LineEncoder(1);
    const points = Array.from({ length: 40 }, (_, i) =>
      point({ seq: i, fields: { LAeq: i === 7 ? Number.POSITIVE_INFINITY : 40 + i } }),
    );
    for (const p of points) encoder.add(p);
    expect(encoder.size).toBe(40);
    const encoded = encoder.finish();
    expect(encoded.lineCount).toBe(39);
    expect(encoded.refused.map((r) => r.index)).toEqual([7]);
    expect(encoded.index(7)).toBe(8);
    expect(encoded.text(38)).toBe(toLine(points[39]!));
    const kept = points.filter((_, i) => i !== 7).map((p) => toLine(p));
    expect(encoded.body.toString("utf8")).toBe(kept.join("\n"));
  });

  it("takes bodies from a pool and gives them back once, when released", () => {
    const pool = new BodyPool(2);
    const first = encodeBatch([point(), point({ seq: 43 })], pool);
    expect(pool.size).toBe(0);
    const memory = first.body.buffer;
    first.release();
    first.release();
    expect(pool.size).toBe(1);
    // The next batch writes into the same memory.
    const second = encodeBatch([point({ seq: 44 })], pool);
    expect(second.body.buffer).toBe(memory);
    expect(second.text(0)).toBe(toLine(point({ seq: 44 })));
    expect(pool.size).toBe(0);
    // A body that grew goes back grown, and the largest kept body is the one taken next.
    const encoder = new LineEncoder(1, pool);
    for (let seq = 0; seq < 1_000; seq++) encoder.add(point({ seq }));
    const big = encoder.finish();
    expect(big.lineCount).toBe(1_000);
    expect(big.text(999)).toBe(toLine(point({ seq: 999 })));
    second.release();
    big.release();
    expect(pool.size).toBe(2);
    expect(pool.take(10).length).toBe(big.body.buffer.byteLength);
    expect(pool.size).toBe(1);
  });

  it("pools only buffers of their own memory, and not the very large", () => {
    const pool = new BodyPool(4, 1_000_000);
    const small = pool.take(10);
    expect(small.byteOffset).toBe(0);
    expect(small.buffer.byteLength).toBe(small.length);
    pool.give(Buffer.allocUnsafeSlow(2_000_000));
    expect(pool.size).toBe(0);
    // It keeps as many as it was told to, no more.
    for (let i = 0; i < 6; i++) pool.give(Buffer.allocUnsafeSlow(1_000));
    expect(pool.size).toBe(4);
  });
});
