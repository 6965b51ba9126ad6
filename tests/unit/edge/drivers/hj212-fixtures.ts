import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { Hj212DriverOptions } from "../../../../edge/drivers/hj212-options.js";
import { Hj212Framer } from "../../../../edge/hj212/framer.js";
import { EXAMPLE_HJ212_MAPPING } from "../../../../edge/hj212/mapping-example.js";
import { parseSegment, type DataSegment } from "../../../../edge/hj212/segment.js";
import type { DriverSink, FieldSample } from "../../../../edge/drivers/types.js";

/** The example mapping's combined dust-and-noise site monitor (site-17-dust + site-17-noise). */
export const SITE_MN = "010000A8900016F000169DC0";

/** Options as an edge config would give them, on any free port, taking every data CN unless told otherwise. */
export function driverOptions(overrides: Record<string, unknown> = {}): Hj212DriverOptions {
  return Hj212DriverOptions.parse({
    port: 0,
    mapping: EXAMPLE_HJ212_MAPPING,
    dataCns: ["2011", "2051", "2061", "2031"],
    ...overrides,
  });
}

/** The sink of these tests: records what the driver hands the agent; `refuse` makes it throw. */
export function recordingSink(): {
  sink: DriverSink;
  samples: FieldSample[];
  refuse: (reason: string | undefined) => void;
} {
  const samples: FieldSample[] = [];
  let refusal: string | undefined;
  return {
    samples,
    refuse: (reason) => (refusal = reason),
    sink: (sample) => {
      if (refusal !== undefined) throw new Error(refusal);
      samples.push(sample);
    },
  };
}

/** A logger whose lines are kept as parsed objects, so a test can count warnings. */
export function capturedLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) {
        if (line !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

/** Decodes the reply frames a device would receive, checking each frame's length and CRC. */
export function decodeReplies(wire: string): DataSegment[] {
  const framer = new Hj212Framer();
  return framer.push(wire).map((event) => {
    if (event.type !== "frame") throw new Error(`${event.code}: ${event.reason}`);
    const parsed = parseSegment(event.segment);
    if (!parsed.ok) throw new Error(parsed.error.reason);
    return parsed.segment;
  });
}

/**
 * A data segment of the site monitor: minute data asking for an answer (Flag=5) unless the
 * header says otherwise; `null` leaves a field out, as 2005 devices do.
 */
export function siteSegment(
  cp: string,
  header: {
    qn?: string | null;
    cn?: string;
    flag?: number | null;
    mn?: string;
    extra?: string;
  } = {},
): string {
  const qn = header.qn === undefined ? "20221127080000001" : header.qn;
  const flag = header.flag === undefined ? 5 : header.flag;
  const fields = [
    ...(qn === null ? [] : [`QN=${qn}`]),
    "ST=39",
    `CN=${header.cn ?? "2051"}`,
    "PW=123456",
    `MN=${header.mn ?? SITE_MN}`,
    ...(flag === null ? [] : [`Flag=${flag}`]),
    ...(header.extra === undefined ? [] : [header.extra]),
    `CP=&&${cp}&&`,
  ];
  return fields.join(";");
}
