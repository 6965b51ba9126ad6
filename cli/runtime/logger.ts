import { pino, type Logger } from "pino";
import type { LogLevel } from "../../contracts/index.js";

/** The one root logger; components take `log.child({ module })`. Secrets are redacted wherever they appear. */
export function createLogger(options: { level: LogLevel; pretty: boolean }): Logger {
  return pino({
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
    ...(options.pretty
      ? {
          transport: {
            target: "pino-pretty",
            options: { colorize: true, translateTime: "SYS:standard" },
          },
        }
      : {}),
  });
}
