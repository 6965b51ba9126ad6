import type { Prng } from "./prng.js";

/*
 * The MQTT payload fuzzer's generator and its oracle. The oracle is written from
 * docs/protocol.md (4.1–4.6, 9), not from the product's schemas: the quantities and ranges below
 * are the documented tables, every mutation breaks exactly one documented rule, and each payload
 * comes with what the documented contract says must happen to it.
 */

export type Kind = "noise" | "dust" | "cooking_fume" | "water_level" | "utility_tunnel";

type Range = readonly [number, number] | "boolean";

/** docs/protocol.md 4.6: quantities per kind, ranges inclusive. */
export const QUANTITIES: Record<Kind, Readonly<Record<string, Range>>> = {
  noise: {
    LAeq: [0, 150],
    LAmax: [0, 150],
    LAmin: [0, 150],
    L10: [0, 150],
    L50: [0, 150],
    L90: [0, 150],
  },
  dust: {
    pm10: [0, 20_000],
    pm2_5: [0, 20_000],
    tsp: [0, 50_000],
    windSpeed: [0, 75],
    windDirection: [0, 360],
    temperature: [-50, 70],
    humidity: [0, 100],
  },
  cooking_fume: {
    oilFume: [0, 200],
    particulate: [0, 500],
    nmhc: [0, 1_000],
    fanOn: "boolean",
    purifierOn: "boolean",
  },
  water_level: { stage: [-100, 6_000], ponding: [0, 1_000] },
  utility_tunnel: {
    ch4: [0, 100],
    o2: [0, 30],
    h2s: [0, 1_500],
    co: [0, 2_500],
    temperature: [-40, 100],
    humidity: [0, 100],
    sumpLevel: [0, 1_000],
  },
};
export const KINDS = Object.keys(QUANTITIES) as Kind[];

/** docs/protocol.md 4.5. */
export const QUALITIES = [
  "normal",
  "maintenance",
  "calibration",
  "fault",
  "over_range",
  "comm_fault",
  "stopped",
  "manual",
] as const;

/** docs/protocol.md 9, the reasons a device's own payload can earn here. */
export type DeadReason =
  "not_json" | "schema" | "device_mismatch" | "wrong_kind" | "future_timestamp" | "stale_timestamp";

export interface ExpectedReading {
  readonly timeMs: number;
  readonly quality: string;
  readonly seq: number;
  readonly values: Readonly<Record<string, number | boolean>>;
}

export type Expectation =
  | { readonly kind: "valid"; readonly seq: number; readonly readings: ExpectedReading[] }
  | { readonly kind: "duplicate"; readonly seq: number }
  | { readonly kind: "dead"; readonly reason: DeadReason; readonly mutation: string };

export interface Generated {
  readonly payload: Buffer;
  readonly expect: Expectation;
}

interface Reading {
  ts: unknown;
  quality: unknown;
  values: Record<string, unknown>;
}
interface Message {
  v: unknown;
  deviceId: unknown;
  seq: unknown;
  kind: unknown;
  replay?: unknown;
  readings: unknown;
  [extra: string]: unknown;
}

/** docs/protocol.md 8: remaining length of one MQTT packet at most (topic + packet id + payload). */
export const PACKET_BOUND = 262_144;

/** How many valid messages back a duplicate's original at least is. */
export const DUPLICATE_DISTANCE = 64;

/** RFC 3339 for `ms` at a UTC offset of `offsetMin`, with `fraction` digits of milliseconds (0–3). */
export function rfc3339(ms: number, offsetMin: number, fraction: number): string {
  const local = new Date(ms + offsetMin * 60_000).toISOString(); // YYYY-MM-DDThh:mm:ss.sssZ
  const frac = fraction === 0 ? "" : `.${local.slice(20, 20 + fraction)}`;
  if (offsetMin === 0 && fraction % 2 === 0) return `${local.slice(0, 19)}${frac}Z`;
  const sign = offsetMin < 0 ? "-" : "+";
  const abs = Math.abs(offsetMin);
  const hh = String(Math.floor(abs / 60)).padStart(2, "0");
  const mm = String(abs % 60).padStart(2, "0");
  return `${local.slice(0, 19)}${frac}${sign}${hh}:${mm}`;
}

const OFFSETS = [0, 480, 480, 480, -300, 330, 345, -720, 840];

/**
 * One registered device's stream of fuzzed payloads. Every payload whose `seq` the ingest can read
 * takes the next number, so the device's commit never waits on a gap; payloads whose `seq` cannot
 * be read (not JSON, not an integer) take none.
 */
export class DeviceFuzz {
  private nextSeq = 1;
  private nextTsMs: number;
  /**
   * Valid messages generated so far: the originals duplicates are made of. A duplicate is made of
   * one generated at least DUPLICATE_DISTANCE payloads earlier; the publisher waits for that
   * original's PUBACK before sending the duplicate, so the original is handled first.
   */
  private readonly valids: Array<{ seq: number; payload: Buffer }> = [];

  constructor(
    readonly id: string,
    readonly kind: Kind,
    private readonly r: Prng,
    private readonly others: { readonly ids: readonly string[] },
    startMs: number,
    private readonly topicLength: number,
  ) {
    // Whole seconds: each reading takes one second of its own, at a random millisecond in it.
    this.nextTsMs = Math.floor(startMs / 1_000) * 1_000;
  }

  /** The last seq given out (the commit the device must end at). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  private takeSeq(): number {
    return this.nextSeq++;
  }

  private takeTs(): number {
    const ms = this.nextTsMs + this.r.int(0, 999);
    this.nextTsMs += 1_000;
    return ms;
  }

  private value(range: Range): number | boolean {
    const r = this.r;
    if (range === "boolean") return r.chance(0.5);
    const [lo, hi] = range;
    const edge = r.next();
    if (edge < 0.05) return lo;
    if (edge < 0.1) return hi;
    if (edge < 0.2) return r.int(Math.ceil(lo), Math.floor(hi));
    return Math.min(hi, Math.max(lo, Math.round((lo + r.next() * (hi - lo)) * 100) / 100));
  }

  private values(kind: Kind): Record<string, number | boolean> {
    const names = Object.keys(QUANTITIES[kind]);
    const out: Record<string, number | boolean> = {};
    for (const name of names)
      if (this.r.chance(0.4)) out[name] = this.value(QUANTITIES[kind][name] as Range);
    if (Object.keys(out).length === 0) {
      const name = this.r.pick(names);
      out[name] = this.value(QUANTITIES[kind][name] as Range);
    }
    return out;
  }

  /** `ms` as RFC 3339 text, and the instant the text names (its fraction may drop digits). */
  private stamp(ms: number): { text: string; ms: number } {
    const fraction = this.r.pick([0, 0, 0, 1, 2, 3]);
    const unit = 10 ** (3 - fraction);
    const at = Math.floor(ms / unit) * unit;
    return { text: rfc3339(at, this.r.pick(OFFSETS), fraction), ms: at };
  }

  private ts(ms: number): string {
    return this.stamp(ms).text;
  }

  private readingCount(): number {
    const r = this.r.next();
    if (r < 0.0005) return 500;
    if (r < 0.7) return 1;
    if (r < 0.9) return this.r.int(2, 3);
    return this.r.int(4, 20);
  }

  /** A valid message (the readings it must be stored with), of `kind` and under `seq`. */
  private valid(seq: number, kind: Kind = this.kind, count = this.readingCount()) {
    const readings: ExpectedReading[] = [];
    const wire: Reading[] = [];
    for (let i = 0; i < count; i++) {
      const { text, ms: timeMs } = this.stamp(this.takeTs());
      const quality = this.r.pick(QUALITIES);
      const values = this.values(kind);
      readings.push({ timeMs, quality, seq, values });
      wire.push({ ts: text, quality, values });
    }
    const message: Message = { v: 1, deviceId: this.id, seq, kind, readings: wire };
    if (this.r.chance(0.2)) message.replay = this.r.chance(0.5);
    return { message, readings };
  }

  next(nowMs: number): Generated {
    const r = this.r;
    const roll = r.next();
    if (roll < 0.5) return this.validPayload();
    if (roll < 0.53 && this.valids.length > DUPLICATE_DISTANCE) return this.duplicate();
    if (roll < 0.6) return this.notJson();
    if (roll < 0.88) return this.schema();
    if (roll < 0.92) return this.deviceMismatch();
    if (roll < 0.95) return this.wrongKind();
    return this.outOfWindow(nowMs);
  }

  private validPayload(): Generated {
    const seq = this.takeSeq();
    const { message, readings } = this.valid(seq);
    const payload = Buffer.from(this.serialize(message));
    this.valids.push({ seq, payload });
    return { payload, expect: { kind: "valid", seq, readings } };
  }

  /** Compact JSON mostly; sometimes an equally valid spelling (whitespace, escapes, exponents). */
  private serialize(message: Message): string {
    const r = this.r.next();
    if (r < 0.9) return JSON.stringify(message);
    if (r < 0.94) return JSON.stringify(message, null, this.r.pick([1, 2, "\t"]));
    if (r < 0.97)
      // "\u0076" is "v", "\u0071uality" is "quality": the same message, keys escaped.
      return JSON.stringify(message)
        .replace('"v":', '"\\u0076":')
        .replaceAll('"quality":', '"\\u0071uality":');
    // Numbers in exponent notation: the same doubles.
    return JSON.stringify(message, (key, value: unknown) =>
      typeof value === "number" && key !== "seq" && key !== "v" && value !== 0
        ? `@@${value.toExponential()}@@`
        : value,
    ).replace(/"@@([^@]+)@@"/g, "$1");
  }

  private duplicate(): Generated {
    const original = this.valids[
      this.r.int(0, this.valids.length - DUPLICATE_DISTANCE - 1)
    ] as (typeof this.valids)[number];
    if (this.r.chance(0.5))
      return { payload: original.payload, expect: { kind: "duplicate", seq: original.seq } };
    // The same seq with other readings: dropped as a duplicate, never stored (4.2).
    const { message } = this.valid(original.seq);
    return {
      payload: Buffer.from(JSON.stringify(message)),
      expect: { kind: "duplicate", seq: original.seq },
    };
  }

  private dead(payload: Buffer | string, reason: DeadReason, mutation: string): Generated {
    return {
      payload: typeof payload === "string" ? Buffer.from(payload) : payload,
      expect: { kind: "dead", reason, mutation },
    };
  }

  private notJson(): Generated {
    const r = this.r;
    const which = r.int(0, 6);
    if (which === 0) return this.dead(Buffer.alloc(0), "not_json", "empty payload");
    if (which === 1) {
      // Random bytes; the rare one that parses is not an object (a number, a string).
      for (;;) {
        const bytes = r.bytes(r.chance(0.9) ? r.int(1, 64) : r.int(65, 4_096));
        try {
          const parsed: unknown = JSON.parse(bytes.toString("utf8"));
          if (typeof parsed !== "object" || parsed === null)
            return this.dead(bytes, "schema", "random bytes that parse");
        } catch {
          return this.dead(bytes, "not_json", "random bytes");
        }
      }
    }
    // A valid message spoiled textually; its seq is never read, so it takes no number.
    const text = JSON.stringify(this.valid(0).message).replace('"seq":0', `"seq":${this.nextSeq}`);
    if (which === 2)
      return this.dead(text.slice(0, r.int(1, text.length - 1)), "not_json", "truncated");
    if (which === 3)
      return this.dead(
        text.replace(/("values":\{"[^"]+":)[^,}]+/, "$1NaN"),
        "not_json",
        "NaN literal",
      );
    if (which === 4)
      return this.dead(
        text.replace(/("values":\{"[^"]+":)[^,}]+/, "$1-Infinity"),
        "not_json",
        "Infinity literal",
      );
    if (which === 5) return this.dead(text.replace(/}$/, ",}"), "not_json", "trailing comma");
    return this.dead(text.replaceAll('"', "'"), "not_json", "single quotes");
  }

  /** A message breaking one rule of section 4: dead letter `schema`. */
  private schema(): Generated {
    const r = this.r;
    const unreadable = r.chance(0.12);
    const seq = unreadable ? this.nextSeq : this.takeSeq();
    const { message } = this.valid(seq, this.kind, r.chance(0.8) ? 1 : r.int(2, 5));
    const readings = message.readings as Reading[];
    const reading = r.pick(readings);
    const names = Object.keys(reading.values);
    const name = r.pick(names);
    const range = QUANTITIES[this.kind][name] as Range;
    let mutation: string;
    let text: string | undefined;
    if (unreadable) {
      const bad = r.pick<[unknown, string]>([
        [String(seq), "seq as a string"],
        [seq + 0.5, "seq not an integer"],
        [-seq, "negative seq"],
        [2 ** 53, "seq 2^53"],
        [1e21, "seq 1e21"],
        [null, "seq null"],
        [undefined, "seq missing"],
        [[seq], "seq in an array"],
      ]);
      message.seq = bad[0];
      mutation = bad[1];
      if (r.chance(0.1)) {
        const top = r.pick(["[]", "[1,2]", "42", '"uplink"', "null", "true", "{}"]);
        return this.dead(top, "schema", `top level ${top}`);
      }
    } else {
      // The heavy ones (hundreds of readings, deep nesting, a quarter megabyte) are rarer.
      const which = r.chance(0.02)
        ? r.pick([15, 21, 22, 24, 27])
        : r.pick([
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 23, 25, 26,
          ]);
      switch (which) {
        case 0:
          message.v = r.pick([2, 0, "1", 1.5, null, true]);
          mutation = "bad v";
          break;
        case 1: {
          const field = r.pick(["v", "deviceId", "kind", "readings"]);
          delete message[field];
          mutation = `${field} missing`;
          break;
        }
        case 2: {
          const field = r.pick(["ts", "quality", "values"] as const);
          delete (reading as Partial<Reading>)[field];
          mutation = `reading ${field} missing`;
          break;
        }
        case 3:
          message[r.pick(["extra", "deviceID", "Seq", "ts", "__proto__x", "数据"])] = r.pick([
            1,
            "x",
            null,
            {},
          ]);
          mutation = "unknown top-level field";
          break;
        case 4:
          (reading as unknown as Record<string, unknown>)[
            r.pick(["unit", "seq", "Quality", "备注"])
          ] = "x";
          mutation = "unknown reading field";
          break;
        case 5: {
          const unknown = r.pick([
            "LAEQ",
            "laeq",
            "pm25",
            "PM10",
            "co2",
            "温度",
            "🌡",
            "",
            " LAeq",
            "LAeq\u0000",
            "constructor",
            "__proto__",
          ]);
          if (unknown === "__proto__") {
            text = JSON.stringify(message).replace('"values":{', '"values":{"__proto__":1,');
          } else reading.values[unknown] = 1;
          mutation = `unknown quantity ${JSON.stringify(unknown)}`;
          break;
        }
        case 6:
          if (range === "boolean") reading.values[name] = r.pick([1, 0, "true", null]);
          else
            reading.values[name] = r.pick([
              String(reading.values[name]),
              null,
              true,
              [1],
              { v: 1 },
            ]);
          mutation = "value of the wrong type";
          break;
        case 7:
          if (range === "boolean") reading.values[name] = 2;
          else
            reading.values[name] = r.chance(0.5)
              ? range[0] - r.pick([0.01, 1, 1e6])
              : range[1] + r.pick([0.01, 1, 1e6]);
          mutation = "value out of range";
          break;
        case 8:
          reading.values[name] = r.pick(["NaN", "Infinity", "-Infinity", "nan", "1e999"]);
          mutation = "NaN or Infinity as a string";
          break;
        case 9:
          text = JSON.stringify(message).replace(
            /("values":\{"[^"]+":)[^,}]+/,
            `$1${r.pick(["1e400", "-1e400", "1e308", "-1e308", "123456789012345678901234567890"])}`,
          );
          mutation = "huge number";
          break;
        case 10:
          reading.ts = r.pick([
            "2026-11-27T22:01:00",
            "2026-11-27T22:01+08:00",
            "2026-11-27T22:01:00+0800",
            "2026-11-27 22:01:00+08:00",
            "2026-11-27t22:01:00z",
            "2026-11-27T22:01:00+08",
            "2026-02-30T22:01:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T22:01:60Z",
            "1795788060000",
            "",
            "２０２６-11-27T22:01:00Z",
          ]);
          mutation = `malformed ts ${String(reading.ts)}`;
          break;
        case 11:
          reading.ts = r.pick([
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999Z",
            "2100-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
          ]);
          mutation = `ts outside 2000..2099 ${String(reading.ts)}`;
          break;
        case 12:
          reading.ts = r.pick([1795788060000, null, { t: 1 }]);
          mutation = "ts of the wrong type";
          break;
        case 13:
          reading.quality = r.pick(["Normal", "ok", "N", "", null, 1, "normal ", "faulty"]);
          mutation = "bad quality";
          break;
        case 14:
          message.readings = [];
          mutation = "no readings";
          break;
        case 15:
          message.readings = Array.from({ length: 501 }, () => ({ ...reading }));
          mutation = "501 readings";
          break;
        case 16:
          message.readings = r.pick([reading, "readings", null, 1]);
          mutation = "readings not an array";
          break;
        case 17:
          reading.values = {};
          mutation = "values empty";
          break;
        case 18:
          message.kind = r.pick(["radiation", "Noise", "", null, 3, "noise "]);
          mutation = "unknown kind";
          break;
        case 19:
          message.deviceId = r.pick([
            "噪声-1",
            `${this.id}/x`,
            `${this.id}+`,
            "#",
            "a".repeat(65),
            "",
            ` ${this.id}`,
            `-${this.id}`,
            `${this.id}\n`,
            null,
            42,
          ]);
          mutation = "malformed deviceId";
          break;
        case 20:
          message.replay = r.pick(["true", 1, null, "yes"]);
          mutation = "replay not a boolean";
          break;
        case 21: {
          const depth = r.int(100, 5_000);
          text = JSON.stringify(message).replace(
            /}$/,
            `,"deep":${"[".repeat(depth)}${"]".repeat(depth)}}`,
          );
          mutation = `nesting ${depth} deep (unknown field)`;
          break;
        }
        case 22: {
          const depth = r.int(100, 5_000);
          text = JSON.stringify(message).replace(
            /("values":\{"[^"]+":)[^,}]+/,
            `$1${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`,
          );
          mutation = `value nested ${depth} deep`;
          break;
        }
        case 23:
          message.seq = 0;
          this.nextSeq--; // seq 0 is read (section 9) but covers no number of ours
          mutation = "seq 0";
          break;
        case 24: {
          // As close to the packet bound as a payload can be (docs/protocol.md 8): still delivered.
          const size = PACKET_BOUND - 2 - this.topicLength - 2 - r.int(0, 16);
          const base = JSON.stringify({ ...message, pad: "" });
          text = base.replace('"pad":""', `"pad":"${"x".repeat(size - base.length)}"`);
          mutation = "near the packet bound (unknown field)";
          break;
        }
        case 25:
          reading.values[name] = `\u202e${"\u{1F4A9}".repeat(r.int(1, 50))}\ud800`;
          mutation = "unicode value";
          break;
        case 26:
          text = JSON.stringify(message)
            .replace(/}$/, `,"deviceId":"${this.id}"}`)
            .replace(`"deviceId":"${this.id}"`, '"deviceId":"x"');
          // Duplicate key: JSON.parse keeps the last, so this one is valid unless spoiled further.
          text = text.replace('"v":1', '"v":"1"');
          mutation = "duplicate key and a string v";
          break;
        default:
          message.readings = Array.from({ length: 501 }, (_, i) => ({
            ...reading,
            ts: this.ts(this.takeTs() + i),
          }));
          mutation = "501 distinct readings";
      }
    }
    return this.dead(text ?? JSON.stringify(message), "schema", mutation);
  }

  private deviceMismatch(): Generated {
    const seq = this.takeSeq();
    const { message } = this.valid(seq);
    message.deviceId = this.r.pick([
      ...this.others.ids.filter((id) => id !== this.id),
      "ghost-1",
      this.id.toUpperCase(),
    ]);
    return this.dead(JSON.stringify(message), "device_mismatch", "deviceId of another device");
  }

  private wrongKind(): Generated {
    const seq = this.takeSeq();
    const kind = this.r.pick(KINDS.filter((k) => k !== this.kind));
    return this.dead(
      JSON.stringify(this.valid(seq, kind, 1).message),
      "wrong_kind",
      `${kind} readings`,
    );
  }

  private outOfWindow(nowMs: number): Generated {
    const r = this.r;
    const seq = this.takeSeq();
    const { message } = this.valid(seq, this.kind, r.int(1, 3));
    const readings = message.readings as Reading[];
    const future = r.chance(0.5);
    const ms = future
      ? nowMs + r.pick([3_600_000, 86_400_000, 365 * 86_400_000, 20 * 365 * 86_400_000])
      : nowMs - r.pick([31 * 86_400_000, 400 * 86_400_000, 20 * 365 * 86_400_000]);
    r.pick(readings).ts = this.ts(ms);
    return this.dead(
      JSON.stringify(message),
      future ? "future_timestamp" : "stale_timestamp",
      future ? "ts far in the future" : "ts far in the past",
    );
  }
}
