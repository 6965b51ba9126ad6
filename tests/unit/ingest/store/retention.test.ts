import { describe, expect, it } from "vitest";
import { parseGoDuration, storeRetention } from "../../../../ingest/store/retention.js";

/* Retention as the stores state it (the InfluxDB policy itself: tests/integration/rules/backtest.test.ts). */

describe("store retention", () => {
  it("reads InfluxDB's durations", () => {
    expect(parseGoDuration("0s")).toBe(0);
    expect(parseGoDuration("168h0m0s")).toBe(7 * 86_400_000);
    expect(parseGoDuration("1h30m")).toBe(90 * 60_000);
    expect(parseGoDuration("1.5s")).toBe(1_500);
    expect(parseGoDuration("1095d")).toBeUndefined();
    expect(parseGoDuration("")).toBeUndefined();
  });

  it("the embedded store keeps everything", async () => {
    await expect(storeRetention({ type: "sqlite" })).resolves.toMatchObject({ ms: undefined });
  });
});
