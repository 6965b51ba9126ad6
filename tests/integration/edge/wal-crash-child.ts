/**
 * Child process of wal-crash.test.ts: appends readings to the edge's write-ahead log in a loop
 * and prints "ack <deviceId> <id>,<id>..." after each append returned, until it is killed.
 * Usage: node --import tsx wal-crash-child.ts <file> <firstId>
 */
import type { Reading } from "../../../contracts/model/uplink.js";
import { WriteAheadLog } from "../../../edge/wal/log.js";

const T0 = Date.parse("2026-11-27T14:00:00Z");
const DEVICES = ["noise-0001", "noise-0002"] as const;

const [file, first] = process.argv.slice(2);
if (file === undefined || first === undefined) throw new Error("usage: <file> <firstId>");

const log = new WriteAheadLog(
  { file, limits: { maxReadingsPerMessage: 5 } },
  { now: () => Date.now() },
);

let id = Number(first);
for (let round = 0; ; round++) {
  const deviceId = DEVICES[round % DEVICES.length] ?? "noise-0001";
  const ids = Array.from({ length: 1 + (round % 3) }, () => id++);
  const readings: Reading[] = ids.map((n) => ({
    ts: new Date(T0 + n * 1000).toISOString(),
    quality: "normal",
    values: { LAeq: 50 },
  }));
  log.append(deviceId, readings);
  process.stdout.write(`ack ${deviceId} ${ids.join(",")}\n`);
  if (round % 7 === 0) {
    // What the uplink does: form messages and record the send.
    for (const m of log.pending(deviceId, { limit: 32 })) log.markSent(deviceId, m.seq, Date.now());
  }
  // Yield now and then so stdout is flushed while the loop runs.
  if (round % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
}
