import { z } from "zod";

/** A TCP port; accepts a number or a string of digits (environment variables, CLI flags). 0 = any free port. */
export const Port = z
  .union([
    z.number(),
    z.string().regex(/^\d+$/, { error: "must be a port number" }).transform(Number),
  ])
  .pipe(
    z
      .number()
      .int()
      .min(0, { error: "must be 0..65535" })
      .max(65_535, { error: "must be 0..65535" }),
  );

/** A positive integer; accepts a string of digits too. */
export const PositiveInt = z
  .union([
    z.number(),
    z.string().regex(/^\d+$/, { error: "must be a whole number" }).transform(Number),
  ])
  .pipe(z.number().int().min(1, { error: "must be >= 1" }));

/** A boolean; accepts `true/false/1/0/yes/no` as strings too. */
export const Flag = z.union([
  z.boolean(),
  z
    .enum(["true", "false", "1", "0", "yes", "no"], { error: "must be true or false" })
    .transform((v) => v === "true" || v === "1" || v === "yes"),
]);

export const LogLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);
export type LogLevel = z.infer<typeof LogLevel>;

/** A listen address (IP or host name). */
export const Host = z.string().min(1, { error: "must be an address, e.g. 127.0.0.1 or 0.0.0.0" });
