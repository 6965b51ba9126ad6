import { describe, expect, it } from "vitest";
import { parseInstant } from "../../../../cli/commands/rules.js";

/* `--from` / `--to` of `citywatch rules backtest`. */

describe("rules backtest: instants on the command line", () => {
  const now = Date.UTC(2026, 10, 27, 12);
  it("reads RFC 3339 with an offset, epoch ms, now and now-<duration>", () => {
    expect(parseInstant("2026-11-27T08:00:00+08:00", now)).toBe(Date.UTC(2026, 10, 27, 0));
    expect(parseInstant("2026-11-27T00:00:00Z", now)).toBe(Date.UTC(2026, 10, 27, 0));
    expect(parseInstant("1795788000000", now)).toBe(1_795_788_000_000);
    expect(parseInstant("now", now)).toBe(now);
    expect(parseInstant("now-7d", now)).toBe(now - 7 * 86_400_000);
    expect(parseInstant("now-90m", now)).toBe(now - 90 * 60_000);
  });

  it("refuses what it cannot read unambiguously, saying what it takes", () => {
    for (const text of [
      "yesterday",
      "2026-11-27",
      "2026-11-27T08:00:00",
      "now+1d",
      "2026-13-40T00:00:00Z",
    ]) {
      expect(() => parseInstant(text, now), text).toThrow(/give an RFC 3339 time with an offset/);
    }
  });
});
