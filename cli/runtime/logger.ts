import { type DestinationStream, pino, type Logger } from "pino";
import type { LogLevel } from "../../contracts/index.js";

/**
 * One JSON line with each key once. pino writes a child's bindings and then the call's own
 * object without merging them, so a key bound twice (a child of a child both binding `module`,
 * or a call passing a key its logger already binds) appears twice, which log stores reject or
 * read differently (jq and JSON.parse keep the last, Elasticsearch refuses the line). The last
 * value wins, the call's own over its logger's bindings, at the first key's position. A line
 * that is not JSON is written as it is.
 */
export function uniqueKeys(line: string): string {
  try {
    const newline = line.endsWith("\n") ? "\n" : "";
    return `${JSON.stringify(JSON.parse(line))}${newline}`;
  } catch {
    return line;
  }
}

/**
 * The one root logger; components take `log.child({ module })`. Secrets are redacted wherever
 * they appear; no line carries a key twice (uniqueKeys). `destination`: tests read the lines.
 */
export function createLogger(
  options: { level: LogLevel; pretty: boolean },
  destination?: DestinationStream,
): Logger {
  const settings = {
    level: options.level,
    base: { service: "citywatch" },
    redact: {
      paths: [
        "password",
        "secret",
        "*.password",
        "*.secret",
        "token",
        "*.token",
        "authorization",
        "*.authorization",
      ],
      censor: "[redacted]",
    },
    hooks: { streamWrite: uniqueKeys },
    ...(options.pretty
      ? {
          transport: {
            target: "pino-pretty",
            options: { colorize: true, translateTime: "SYS:standard" },
          },
        }
      : {}),
  };
  return destination === undefined ? pino(settings) : pino(settings, destination);
}
