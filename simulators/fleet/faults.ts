/**
 * Fault payloads and choices, pure and seeded: what a buggy or hostile device sends. Each
 * generator produces exactly the fault it names (tests/unit/simulators/faults.test.ts checks it
 * against the real schemas and limits), so the runner's summary can count what the ingest and
 * the broker must have refused.
 */
import {
  type MeasuredQuantity,
  PROTOCOL_VERSION,
  QUANTITIES,
  type SensorKind,
} from "../../contracts/index.js";
import { type Rng, hashSeed, mulberry32 } from "../models/index.js";

/** The broker's default packet limit (docs/protocol.md §8); an oversized payload goes past it. */
export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;

/** A payload that is not JSON: a message cut off mid-way, as a truncated radio frame looks. */
export function notJsonPayload(deviceId: string, rng: Rng): string {
  const whole = JSON.stringify({
    v: PROTOCOL_VERSION,
    deviceId,
    seq: 1 + Math.floor(rng.next() * 1e6),
  });
  return whole.slice(0, 8 + Math.floor(rng.next() * (whole.length - 10)));
}

/**
 * Valid JSON with a readable `seq` and one value beyond its quantity's plausible range: the
 * ingest dead-letters it as `schema` and commits the seq (docs/protocol.md §9).
 */
export function schemaInvalidPayload(
  deviceId: string,
  kind: SensorKind,
  seq: number,
  ts: string,
): string {
  const [quantity, spec] = Object.entries(QUANTITIES[kind]).find(
    ([, s]) => (s as { type: string }).type === "number",
  ) as [string, MeasuredQuantity];
  return JSON.stringify({
    v: PROTOCOL_VERSION,
    deviceId,
    seq,
    kind,
    readings: [{ ts, quality: "normal", values: { [quantity]: spec.max + 1 } }],
  });
}

/** A JSON payload of `bytes` bytes at least: over the packet limit the broker cuts the connection. */
export function oversizedPayload(
  deviceId: string,
  bytes = DEFAULT_MAX_PACKET_BYTES + 1024,
): string {
  const head = JSON.stringify({ v: PROTOCOL_VERSION, deviceId, pad: "" });
  return head.replace('"pad":""', `"pad":"${"x".repeat(Math.max(0, bytes - head.length))}"`);
}

/** A well-formed device id that no registry holds (a ghost, or someone probing ids). */
export function unknownDeviceId(rng: Rng): string {
  return `ghost-${Math.floor(rng.next() * 0xffffffff)
    .toString(16)
    .padStart(8, "0")}`;
}

/** A secret of the right shape (43 characters of base64url) that was never issued. */
export function unknownSecret(rng: Rng): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  let s = "";
  for (let i = 0; i < 43; i++) s += alphabet[Math.floor(rng.next() * 64)];
  return s;
}

/** A seeded generator for the fault at `index` of a run. */
export function faultRng(seed: number, index: number): Rng {
  return mulberry32(hashSeed(seed, 0xfa17, index));
}

/** `ceil(fraction × n)` distinct items chosen by the seeded generator (partial Fisher–Yates). */
export function choose<T>(items: readonly T[], fraction: number, rng: Rng): T[] {
  const n = Math.min(items.length, Math.ceil(fraction * items.length));
  const pool = [...items];
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rng.next() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j] as T, pool[i] as T];
  }
  return pool.slice(0, n);
}
