/**
 * Uplink payloads for the ingest bench: dust monitors and utility-tunnel gas monitors, each
 * device sending 2 to 5 quantities per reading, one reading per second of device time, `seq`
 * counting up by one per message, as docs/protocol.md describes a device.
 */
import type { BenchKind } from "./ingest-protocol.js";

/** Quantity, plausible low and high (within contracts/model/sensors.ts ranges). */
type QuantityRange = readonly [name: string, low: number, high: number];

const QUANTITIES: Record<BenchKind, readonly QuantityRange[]> = {
  dust: [
    ["pm10", 20, 300],
    ["pm2_5", 10, 200],
    ["tsp", 50, 600],
    ["windSpeed", 0, 12],
    ["humidity", 20, 95],
  ],
  utility_tunnel: [
    ["ch4", 0, 5],
    ["o2", 19.5, 21],
    ["h2s", 0, 3],
    ["co", 0, 10],
    ["temperature", 15, 30],
  ],
};

/** The bench's devices: half dust monitors, half tunnel gas monitors. */
export function benchDevices(count: number): Array<{ id: string; kind: BenchKind }> {
  return Array.from({ length: count }, (_, i) => {
    const kind: BenchKind = i % 2 === 0 ? "dust" : "utility_tunnel";
    return {
      id: `bench-${kind === "dust" ? "dust" : "tunnel"}-${String(i).padStart(4, "0")}`,
      kind,
    };
  });
}

/** mulberry32: a small seeded generator, so every run sends the same values. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const READING_INTERVAL_MS = 1_000;

/**
 * One device's message stream. Readings are one second of device time apart and never repeat a
 * timestamp, so no reading overwrites another in either store (both key a reading by
 * measurement, device and time).
 */
export class DeviceStream {
  private seq = 0;
  private readings = 0;
  private readonly random: () => number;
  private readonly quantities: readonly QuantityRange[];

  constructor(
    readonly id: string,
    readonly kind: BenchKind,
    index: number,
    /** Device time of the first reading, epoch ms. */
    private readonly startMs: number,
  ) {
    this.random = generator(index + 1);
    this.quantities = QUANTITIES[kind].slice(0, 2 + (index % 4));
  }

  /** The next message with `readings` readings. */
  next(readings: number): Buffer {
    const list = [];
    for (let i = 0; i < readings; i++) {
      const values: Record<string, number> = {};
      for (const [name, low, high] of this.quantities) {
        values[name] = Math.round((low + this.random() * (high - low)) * 10) / 10;
      }
      list.push({
        ts: new Date(this.startMs + this.readings * READING_INTERVAL_MS).toISOString(),
        quality: "normal",
        values,
      });
      this.readings++;
    }
    this.seq++;
    return Buffer.from(
      JSON.stringify({ v: 1, deviceId: this.id, seq: this.seq, kind: this.kind, readings: list }),
    );
  }
}

/**
 * Device time of the first reading: far enough back that every reading of a run is in the past,
 * and well within the ingest's default maxAgeMs (30 days). A run sends at most a few thousand
 * readings per device, one second apart.
 */
export function firstReadingMs(now: number): number {
  return Math.floor((now - 24 * 3_600_000) / 1_000) * 1_000;
}
