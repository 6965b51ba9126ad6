/** The fleet bench's closing table and lines (bench/fleet.ts). */
import type { Memory, TargetResult } from "./fleet-phases.js";
import { formatCount, formatTable } from "./table.js";

export interface Goals {
  readonly connectS: number;
  readonly reconnectS: number;
  readonly mibPer1000: number;
}

const MiB = 1024 * 1024;

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1);
}

/** MiB per 1,000 connections: (after - baseline) over the connections made. */
export function per1000(
  result: TargetResult,
  which: "connected" | "held",
  field: "heap" | "rss",
): number | undefined {
  const { baseline, connections } = result.memory;
  const after = result.memory[which]?.[field];
  const before = baseline[field];
  if (after === undefined || before === undefined || connections === 0) return undefined;
  return ((after - before) / MiB) * (1000 / connections);
}

function verdict(value: number | undefined, goal: number): string {
  if (value === undefined || !Number.isFinite(value)) return "MISSED (not reached)";
  return value <= goal ? "met" : "MISSED";
}

/** All connected: the later of the last CONNACK and the last SUBACK, s. */
function connectedS(r: TargetResult): number | undefined {
  const { connackMs, subackMs } = r.connect;
  return connackMs === undefined || subackMs === undefined
    ? undefined
    : Math.max(connackMs, subackMs) / 1000;
}

function connectRate(r: TargetResult): number | undefined {
  const last = r.connect.connackMs;
  return last === undefined || last === 0 ? undefined : (r.connect.connected * 1000) / last;
}

export function printReport(
  results: readonly TargetResult[],
  notes: readonly string[],
  goals: Goals,
  fullRate: number,
): void {
  const city = results.find((r) => r.name === "citywatch");
  const broker = results.find((r) => r.name === "broker");
  const mosq = results.find((r) => r.name === "mosquitto");
  const columns = [city, broker, mosq];
  const sec = (v: number | undefined) => (v === undefined ? "not reached" : v.toFixed(1));
  const fig = (v: number | undefined, digits = 2) =>
    v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(digits);
  const row = (
    label: string,
    read: (r: TargetResult) => string,
    goal = "",
    judged = "",
  ): string[] => [label, ...columns.map((r) => (r === undefined ? "-" : read(r))), goal, judged];
  /** A memory row: judged for citywatch all in one and for its broker alone. */
  const memoryRow = (label: string, which: "connected" | "held", field: "heap" | "rss") =>
    row(
      label,
      (r) => fig(per1000(r, which, field)),
      `<= ${goals.mibPer1000}`,
      [city, broker]
        .flatMap((r) =>
          r === undefined ||
          r.memory[which] === undefined ||
          (field === "heap" && r.memory[which]?.heap === undefined)
            ? []
            : [
                `${r.name === "broker" ? "broker" : "all-in-one"} ${verdict(per1000(r, which, field), goals.mibPer1000)}`,
              ],
        )
        .join(", "),
    );
  const rows: string[][] = [
    row(
      "all connected (last CONNACK and SUBACK), s",
      (r) => sec(connectedS(r)),
      `<= ${goals.connectS}`,
      city === undefined ? "" : verdict(connectedS(city), goals.connectS),
    ),
    row("connect rate (to the last CONNACK), per s", (r) => fig(connectRate(r), 0)),
    row("first reading of all confirmed, s", (r) =>
      sec(r.connect.firstConfirmedMs === undefined ? undefined : r.connect.firstConfirmedMs / 1000),
    ),
    memoryRow("heap per 1,000 connections, MiB", "connected", "heap"),
    memoryRow("RSS per 1,000 connections, MiB", "connected", "rss"),
    memoryRow("heap per 1,000 after the hold, MiB", "held", "heap"),
    memoryRow("RSS per 1,000 after the hold, MiB", "held", "rss"),
    row(
      "hold: readings/s stored (citywatch), acknowledged (mosquitto)",
      (r) => (r.hold === undefined ? "-" : formatCount(r.hold.ratePerSecond)),
      formatCount(fullRate),
    ),
    row("hold: latency to commit / PUBACK p50, p99, ms", (r) =>
      r.hold === undefined
        ? "-"
        : `${fig(r.hold.latencyMs.p50, 0)}, ${fig(r.hold.latencyMs.p99, 0)}`,
    ),
    row(
      "readings lost (sent - rows stored)",
      (r) => (r.loss === undefined ? "-" : formatCount(r.loss.lost)),
      "0",
      city?.loss === undefined ? "" : city.loss.lost === 0 ? "met" : "MISSED",
    ),
    row("cut: last CONNACK after it, s", (r) =>
      r.reconnect === undefined
        ? "-"
        : sec(r.reconnect.connackMs === undefined ? undefined : r.reconnect.connackMs / 1000),
    ),
    row(
      "cut: back to full rate (all caught up), s",
      (r) =>
        r.reconnect === undefined
          ? "-"
          : sec(r.reconnect.caughtUpMs === undefined ? undefined : r.reconnect.caughtUpMs / 1000),
      `<= ${goals.reconnectS}`,
      city?.reconnect === undefined
        ? ""
        : verdict(
            city.reconnect.caughtUpMs === undefined ? undefined : city.reconnect.caughtUpMs / 1000,
            goals.reconnectS,
          ),
    ),
    row("peak RSS of the process, MiB", (r) => (r.peak === undefined ? "-" : mib(r.peak.rss))),
  ];
  console.log("");
  console.log(
    `${formatCount(city?.connect.devices ?? broker?.connect.devices ?? mosq?.connect.devices ?? 0)} devices. Confirmed: by the commit (citywatch all in one), by the PUBACK (broker alone, Mosquitto).`,
  );
  console.log(
    formatTable(
      ["figure", "citywatch", "broker alone", "mosquitto", "goal", "verdict (citywatch)"],
      rows,
    ),
  );
  for (const note of notes) console.log(note);
  const memoryText = (m: Memory) =>
    `${m.heap !== undefined ? `heap ${mib(m.heap)} MiB, ` : ""}RSS ${mib(m.rss)} MiB`;
  for (const r of results) {
    const m = r.memory;
    console.log(
      `${r.label} memory: before any connection ${memoryText(m.cold)}; after the warm-up (the baseline) ${memoryText(m.baseline)}; ${formatCount(m.connections)} connected ${memoryText(m.connected)}${m.held !== undefined ? `; after the hold ${memoryText(m.held)}` : ""}`,
    );
  }
  for (const r of results) {
    if (r.peak === undefined) continue;
    console.log(
      `${r.label} peak RSS ${mib(r.peak.rss)} MiB during the ${r.peak.phase} phase: heap ${mib(r.peak.heapUsed)} MiB used of ${mib(r.peak.heapTotal)} MiB, external (buffers) ${mib(r.peak.external)} MiB at that moment`,
    );
  }
  if (city?.loss !== undefined) {
    const l = city.loss;
    console.log(
      `citywatch delivery: ${formatCount(l.sent)} readings sent (${formatCount(city.final.resent)} sent again), ${formatCount(l.storeRows)} rows in the store (readings_stored ${formatCount(l.counter)}), lost ${formatCount(l.lost)}; the commit ledger at each device's last seq for ${formatCount(l.ledgerMatches)}/${formatCount(l.ledgerDevices)} devices; duplicates dropped ${formatCount(l.duplicates)}, dead letters ${formatCount(l.deadLetters)}, store errors ${formatCount(l.storeErrors)}, inbox left ${formatCount(l.inbox)}; connections refused: ${formatCount(l.authFailures)} credentials, ${formatCount(l.limitRejections)} limits; connections dropped unasked ${formatCount(city.final.drops)}, odd packets ${formatCount(city.final.oddities)}`,
    );
  }
}
