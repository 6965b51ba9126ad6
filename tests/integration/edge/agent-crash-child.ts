/**
 * Child process of agent-crash.test.ts: a whole edge agent (write-ahead log, uplink) fed interval
 * readings numbered first, first+1, ... as fast as the log takes them; prints "ack <n>" once the
 * sink returned (the reading is durable), and "fed" after `count` readings; runs until killed.
 * Usage: node --import tsx agent-crash-child.ts <url> <deviceId> <secret> <dir> <first> <count>
 */
import { setTimeout as sleep } from "node:timers/promises";
import { buildAgent } from "../../../edge/index.js";
import { edgeConfig, testLog, tsOf } from "./agent-harness.js";

const [url, deviceId, secret, dir, first, count] = process.argv.slice(2);
if (count === undefined || first === undefined || dir === undefined || secret === undefined) {
  throw new Error("usage: <url> <deviceId> <secret> <dir> <first> <count>");
}
if (url === undefined || deviceId === undefined) throw new Error("usage");

const agent = buildAgent({
  log: testLog(),
  config: edgeConfig(url, [{ deviceId, kind: "noise", secret }], dir),
});
await agent.start();
process.once("SIGTERM", () => void agent.stop().then(() => process.exit(0)));

const start = Number(first);
for (let n = start; n < start + Number(count); n++) {
  agent.sink({
    deviceId,
    kind: "noise",
    ts: tsOf(n),
    quality: "normal",
    values: { LAeq: 40 + (n % 50) },
    form: "interval",
  });
  process.stdout.write(`ack ${n}\n`);
  // Let the uplink publish and take commits between appends.
  if (n % 5 === 0) await sleep(1);
}
process.stdout.write("fed\n");
