/**
 * The floor sampler's process (bench/floor-sampler.ts starts it): between "start" and "stop" it
 * runs the floor (bench/ingest-floor.ts: JSON.parse + zod + line protocol) in bursts of
 * BURST_CPU_MICROS of CPU every PERIOD_MS, and reports their CPU time and readings. The bursts
 * land at any moment of a round, so they are slowed by the rest of the machine as the process
 * under test is.
 *
 *   node --import tsx bench/floor-sampler-process.ts '{"devices":100,"messages":200}'
 */
import { floorBurst, floorPayloads } from "./ingest-floor.js";
import { SamplerArgs, type SamplerMessage, SamplerParentMessage } from "./ingest-protocol.js";

/** One burst: about 2,500 readings; short, so the sampler takes a tenth of one core. */
const BURST_CPU_MICROS = 10_000;
const PERIOD_MS = 100;
/** Untimed bursts at start: JIT and caches settle before the first round. */
const WARMUP_CPU_MICROS = 300_000;

function send(message: SamplerMessage): void {
  process.send?.(message);
}

function main(): void {
  if (process.send === undefined)
    throw new Error("bench/floor-sampler-process.ts runs under fork() only");
  const { devices, messages } = SamplerArgs.parse(JSON.parse(process.argv[2] ?? "null"));
  const payloads = floorPayloads(devices, messages);
  const cursor = { next: 0, sink: { n: 0 } };
  floorBurst(payloads, WARMUP_CPU_MICROS, cursor);
  let timer: NodeJS.Timeout | undefined;
  let totals = { cpuMicros: 0, readings: 0, bursts: 0 };
  const stop = () => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };
  process.on("message", (raw: unknown) => {
    const parsed = SamplerParentMessage.safeParse(raw);
    if (!parsed.success) return;
    const message = parsed.data;
    switch (message.type) {
      case "start":
        stop();
        totals = { cpuMicros: 0, readings: 0, bursts: 0 };
        timer = setInterval(() => {
          const burst = floorBurst(payloads, BURST_CPU_MICROS, cursor);
          totals.cpuMicros += burst.cpuMicros;
          totals.readings += burst.readings;
          totals.bursts++;
        }, PERIOD_MS);
        break;
      case "stop":
        stop();
        send({ type: "result", id: message.id, ...totals });
        break;
      case "exit":
        stop();
        process.disconnect();
        break;
    }
  });
  send({ type: "ready" });
}

main();
