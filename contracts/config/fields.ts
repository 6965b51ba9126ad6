import { z } from "zod";

/** Environment variables and flags arrive as strings: turn a string of digits into a number first. */
export const digitsToNumber = (value: unknown) =>
  typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;

/** A TCP port; accepts a number or a string of digits (environment variables, CLI flags). 0 = any free port. */
export const Port = z.preprocess(
  digitsToNumber,
  z
    .number({ error: "must be a port number" })
    .int({ error: "must be a port number" })
    .min(0, { error: "must be 0..65535" })
    .max(65_535, { error: "must be 0..65535" }),
);

/** A positive integer; accepts a string of digits too. */
export const PositiveInt = z.preprocess(
  digitsToNumber,
  z
    .number({ error: "must be a whole number" })
    .int({ error: "must be a whole number" })
    .min(1, { error: "must be >= 1" }),
);

const TRUE = new Set(["true", "1", "yes"]);
const FALSE = new Set(["false", "0", "no"]);

/** A boolean; accepts `true/false/1/0/yes/no` as strings too. */
export const Flag = z.preprocess(
  (value) =>
    typeof value === "string" && TRUE.has(value)
      ? true
      : typeof value === "string" && FALSE.has(value)
        ? false
        : value,
  z.boolean({ error: "must be true or false" }),
);

/** A broker URL: mqtt://, mqtts://, ws:// or wss://. */
export const MqttUrl = z.string().regex(/^(mqtts?|wss?):\/\//, {
  error: "must be an mqtt://, mqtts://, ws:// or wss:// URL",
});

export const LogLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);
export type LogLevel = z.infer<typeof LogLevel>;

/** A listen address (IP or host name). */
export const Host = z.string().min(1, { error: "must be an address, e.g. 127.0.0.1 or 0.0.0.0" });
