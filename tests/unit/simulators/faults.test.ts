import { describe, expect, it, vi } from "vitest";
import { DeviceId, SensorKind, Uplink } from "../../../contracts/index.js";
import {
  DEFAULT_MAX_PACKET_BYTES,
  choose,
  createScheduler,
  faultRng,
  notJsonPayload,
  oversizedPayload,
  schemaInvalidPayload,
  unknownDeviceId,
  unknownSecret,
} from "../../../simulators/index.js";

describe("fault generators produce what they claim", () => {
  it("not_json payloads never parse", () => {
    for (let i = 0; i < 200; i++) {
      const payload = notJsonPayload("noise-1", faultRng(7, i));
      expect(() => JSON.parse(payload) as unknown).toThrow();
    }
  });

  it("schema payloads are JSON with a readable seq that the uplink schema refuses, for every kind", () => {
    for (const kind of SensorKind.options) {
      const payload = schemaInvalidPayload("dev-1", kind, 42, "2026-11-27T08:00:00Z");
      const parsed = JSON.parse(payload) as { seq: number };
      expect(parsed.seq).toBe(42);
      const result = Uplink.safeParse(parsed);
      expect(result.success).toBe(false);
      expect(result.error?.issues[0]?.path.slice(0, 3)).toEqual(["readings", 0, "values"]);
    }
  });

  it("oversized payloads exceed the broker's default packet limit and are still JSON", () => {
    const payload = oversizedPayload("dev-1");
    expect(Buffer.byteLength(payload)).toBeGreaterThan(DEFAULT_MAX_PACKET_BYTES);
    expect(JSON.parse(payload)).toMatchObject({ deviceId: "dev-1" });
  });

  it("unknown devices have valid ids and secrets of the issued shape", () => {
    const rng = faultRng(1, 0);
    for (let i = 0; i < 50; i++) {
      expect(DeviceId.safeParse(unknownDeviceId(rng)).success).toBe(true);
      expect(unknownSecret(rng)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    }
  });

  it("choose takes ceil(fraction × n) distinct items, the same for the same seed", () => {
    const items = Array.from({ length: 101 }, (_, i) => i);
    const picked = choose(items, 0.5, faultRng(3, 1));
    expect(new Set(picked).size).toBe(51);
    expect(choose(items, 0.5, faultRng(3, 1))).toEqual(picked);
    expect(choose(items, 1, faultRng(3, 1)).sort((a, b) => a - b)).toEqual(items);
  });
});

describe("fleet scheduler", () => {
  it("runs jobs in due order with one timer, ties in scheduling order, and survives a throwing job", () => {
    vi.useFakeTimers({ now: 0 });
    try {
      const errors: unknown[] = [];
      const s = createScheduler({ onError: (e) => errors.push(e) });
      const ran: string[] = [];
      s.at(300, () => ran.push("c"));
      s.at(100, () => ran.push("a1"));
      s.at(100, () => {
        throw new Error("boom");
      });
      s.at(100, () => ran.push("a2"));
      s.at(200, () => s.at(250, () => ran.push("b2")));
      expect(vi.getTimerCount()).toBe(1);
      vi.advanceTimersByTime(99);
      expect(ran).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(ran).toEqual(["a1", "a2"]);
      expect(errors).toHaveLength(1);
      vi.advanceTimersByTime(200);
      expect(ran).toEqual(["a1", "a2", "b2", "c"]);
      expect(s.size).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
