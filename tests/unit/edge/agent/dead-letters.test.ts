import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { deadLettersRoute, EdgeDeadLetterLog } from "../../../../edge/agent/dead-letters.js";
import { startHttp } from "../../../../cli/runtime/http.js";

/*
 * The edge's dead-letter log (issue 16 item 7: HJ 212 refusals left no queryable record): a real
 * SQLite file, its bounds, and its HTTP route on the agent's listener.
 */

let dir: string | undefined;
const closers: Array<() => unknown> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function openLog(limits = { maxEntries: 10, maxPerSource: 4 }) {
  dir = mkdtempSync(join(tmpdir(), "cw-edge-dlq-"));
  const log = new EdgeDeadLetterLog(join(dir, "dead-letters.db"), limits);
  closers.push(() => log.close());
  return log;
}

const letter = (source: string, n: number) => ({
  driver: "hj212:127.0.0.1:9212",
  source,
  code: "HJ212_CRC_MISMATCH",
  reason: `frame ${n}`,
  remote: "127.0.0.1:40000",
  payload: `QN=${n};…`,
});

describe("edge dead-letter log", () => {
  it("keeps each refusal with its reason, bounded per source so a flood does not push out others", () => {
    const log = openLog();
    log.record({ ...letter("MN-QUIET", 0), code: "HJ212_UNKNOWN_MN" });
    for (let n = 1; n <= 50; n++) log.record(letter("10.0.0.9", n));
    const rows = log.list({ limit: 100 });
    // The flooding peer keeps only its 4 newest; the quiet MN's record is still there.
    expect(rows.map((r) => [r.source, r.reason])).toEqual([
      ["MN-QUIET", "frame 0"],
      ["10.0.0.9", "frame 47"],
      ["10.0.0.9", "frame 48"],
      ["10.0.0.9", "frame 49"],
      ["10.0.0.9", "frame 50"],
    ]);
    expect(log.stats()).toEqual({
      entries: 5,
      recordedByCode: { HJ212_UNKNOWN_MN: 1, HJ212_CRC_MISMATCH: 50 },
      pruned: 46,
      failures: 0,
    });
  });

  it("prunes the oldest first when the whole log is full, and pages by id", () => {
    const log = openLog({ maxEntries: 10, maxPerSource: 100 });
    for (let n = 1; n <= 25; n++) log.record(letter(`MN-${n}`, n));
    const first = log.list({ limit: 4 });
    expect(first.map((r) => r.reason)).toEqual(["frame 16", "frame 17", "frame 18", "frame 19"]);
    const next = log.list({ afterId: first.at(-1)?.id ?? 0, limit: 100 });
    expect(next).toHaveLength(6);
    expect(log.stats()).toMatchObject({ entries: 10, pruned: 15 });
    expect(log.list({ source: "MN-25" }).map((r) => r.payload)).toEqual(["QN=25;…"]);
  });

  it("never throws when the file cannot be written: the loss is counted", () => {
    const log = openLog();
    log.close();
    expect(() => log.record(letter("MN", 1))).not.toThrow();
    expect(log.stats().failures).toBe(1);
    closers.pop();
  });

  it("is served on GET /dead-letters with its query checked", async () => {
    const log = openLog();
    log.record(letter("MN-1", 1));
    log.record({ ...letter("MN-2", 2), code: "HJ212_BAD_VALUE" });
    const http = await startHttp({
      host: "127.0.0.1",
      port: 0,
      registries: [],
      health: () => ({ ok: true, detail: {} }),
      routes: { "/dead-letters": deadLettersRoute(log) },
      log: pino({ level: "silent" }),
    });
    closers.push(() => http.close());
    const base = `http://127.0.0.1:${http.port}/dead-letters`;
    const ok = await fetch(`${base}?code=HJ212_BAD_VALUE`);
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { deadLetters: Array<{ source: string }>; entries: number };
    expect(body.deadLetters.map((d) => d.source)).toEqual(["MN-2"]);
    expect(body.entries).toBe(2);
    const bad = await fetch(`${base}?limit=0&colour=red`);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toMatch(/limit|colour/);
  });
});
