import { describe, expect, it } from "vitest";
import { RECONNECT_MAX_MS, reconnectDelayMs } from "../../../simulators/fleet/device.js";
import { mulberry32 } from "../../../simulators/models/random.js";

/*
 * docs/protocol.md §2.5: reconnect after a first delay drawn from the range, doubling with each
 * failed attempt up to 5 minutes, with jitter at every step.
 */
describe("simulated devices' reconnect back-off", () => {
  it("draws the first wait from the range, doubles it per failed attempt, caps it at 5 minutes", () => {
    const range = [1_000, 5_000] as const;
    expect(reconnectDelayMs(range, () => 0)).toBe(1_000);
    expect(reconnectDelayMs(range, () => 0.5, 0)).toBe(3_000);
    expect(reconnectDelayMs(range, () => 0.5, 1)).toBe(6_000);
    expect(reconnectDelayMs(range, () => 0.5, 3)).toBe(24_000);
    expect(reconnectDelayMs(range, () => 0, 8)).toBe(256_000);
    expect(reconnectDelayMs(range, () => 0.99, 8)).toBe(RECONNECT_MAX_MS);
    expect(reconnectDelayMs(range, () => 0.5, 1_000)).toBe(RECONNECT_MAX_MS);
    // A lower cap (a test harness's quick fleet) stops the doubling there.
    expect(reconnectDelayMs(range, () => 0.5, 3, 10_000)).toBe(10_000);
  });

  it("keeps jitter at every attempt: a fleet's waits spread over the doubled range", () => {
    const rng = mulberry32(7);
    for (const failed of [0, 2, 4]) {
      const waits = Array.from({ length: 2_000 }, () =>
        reconnectDelayMs([1_000, 5_000], () => rng.next(), failed),
      );
      const scale = 2 ** failed;
      expect(Math.min(...waits)).toBeGreaterThanOrEqual(1_000 * scale);
      expect(Math.max(...waits)).toBeLessThanOrEqual(5_000 * scale);
      // Spread, not bunched: both quarters of the range are used.
      expect(waits.filter((w) => w < 2_000 * scale).length).toBeGreaterThan(300);
      expect(waits.filter((w) => w > 4_000 * scale).length).toBeGreaterThan(300);
    }
  });
});
