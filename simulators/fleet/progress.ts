/**
 * The live progress line of a fleet run: rate, published, committed, errors. On a terminal it
 * redraws in place (log-update); elsewhere (CI logs, a pipe) it writes one plain line every
 * `plainEveryMs`, so a log file is not flooded with redraws.
 */
import type { Writable } from "node:stream";
import { createLogUpdate } from "log-update";
import type { FleetCounters } from "./counters.js";

export interface ProgressOptions {
  readonly stream: Writable & { isTTY?: boolean };
  readonly counters: FleetCounters;
  readonly simNow: () => number;
  /** Redraw period on a terminal, and line period elsewhere. */
  readonly ttyEveryMs?: number;
  readonly plainEveryMs?: number;
}

/** One line of figures; `rate` is messages/s and readings/s over the last period. */
export function progressLine(
  c: FleetCounters,
  simMs: number,
  rate: { messages: number; readings: number },
): string {
  const faults =
    c.duplicatesSent +
    c.malformedSchema +
    c.malformedNotJson +
    c.oversized +
    c.unknownRefused +
    c.skewed;
  return [
    `sim ${new Date(simMs).toISOString().slice(0, 16)}Z`,
    `devices ${c.connected}/${c.devices}`,
    `rate ${rate.messages.toFixed(0)} msg/s ${rate.readings.toFixed(0)} readings/s`,
    `published ${c.published}`,
    `committed ${c.committedMessages}`,
    `resent ${c.resent}`,
    `faults ${faults}`,
    `reconnects ${c.reconnects}`,
    `errors ${c.errors}`,
  ].join(" | ");
}

/** Start drawing; returns a function that stops and leaves the last line on screen. */
export function startProgress(options: ProgressOptions): () => void {
  const tty = options.stream.isTTY === true;
  const every = tty ? (options.ttyEveryMs ?? 250) : (options.plainEveryMs ?? 5_000);
  const draw = tty ? createLogUpdate(options.stream) : undefined;
  let last = { at: Date.now(), published: 0, readings: 0 };
  const render = () => {
    const now = Date.now();
    const c = options.counters;
    const seconds = Math.max(0.001, (now - last.at) / 1000);
    const line = progressLine(c, options.simNow(), {
      messages: (c.published - last.published) / seconds,
      readings: (c.publishedReadings - last.readings) / seconds,
    });
    last = { at: now, published: c.published, readings: c.publishedReadings };
    if (draw !== undefined) draw(line);
    else options.stream.write(`${line}\n`);
  };
  const timer = setInterval(render, every);
  return () => {
    clearInterval(timer);
    render();
    draw?.done();
  };
}
