import { Writable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { createCounters, startProgress } from "../../../simulators/index.js";

function sink(isTTY: boolean): Writable & { isTTY: boolean; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return Object.assign(stream, { isTTY, text: () => chunks.join("") });
}

describe("fleet progress", () => {
  it("writes one plain line per period when the stream is not a terminal, with rate and counts", () => {
    vi.useFakeTimers({ now: 0 });
    try {
      const counters = createCounters(10);
      counters.connected = 10;
      const out = sink(false);
      const stop = startProgress({
        stream: out,
        counters,
        simNow: () => Date.parse("2026-11-27T01:00:00Z"),
        plainEveryMs: 1_000,
      });
      counters.published = 50;
      counters.publishedReadings = 500;
      counters.committedMessages = 40;
      counters.errors = 2;
      vi.advanceTimersByTime(1_000);
      counters.published = 70;
      counters.publishedReadings = 700;
      vi.advanceTimersByTime(1_000);
      stop();
      const lines = out.text().trimEnd().split("\n");
      expect(lines).toHaveLength(3);
      expect(lines[0]).toBe(
        "sim 2026-11-27T01:00Z | devices 10/10 | rate 50 msg/s 500 readings/s | published 50 | committed 40 | resent 0 | faults 0 | reconnects 0 | errors 2",
      );
      expect(lines[1]).toContain("rate 20 msg/s 200 readings/s | published 70");
      expect(out.text()).not.toContain("\u001b[");
    } finally {
      vi.useRealTimers();
    }
  });

  it("redraws in place on a terminal", () => {
    vi.useFakeTimers({ now: 0 });
    try {
      const out = Object.assign(sink(true), { columns: 200 });
      const counters = createCounters(1);
      const stop = startProgress({ stream: out, counters, simNow: () => 0, ttyEveryMs: 100 });
      vi.advanceTimersByTime(100);
      counters.published = 7;
      vi.advanceTimersByTime(100);
      stop();
      // log-update erases the previous line with ANSI escapes before it draws the new one.
      expect(out.text()).toContain("\u001b[");
      const text = out.text();
      const erase = text.indexOf("\u001b[", text.indexOf("published 0 "));
      expect(erase).toBeGreaterThan(0);
      expect(text.indexOf("published 7 ")).toBeGreaterThan(erase);
    } finally {
      vi.useRealTimers();
    }
  });
});
