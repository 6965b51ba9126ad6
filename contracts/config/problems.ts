import type { z } from "zod";

/** One problem in a configuration or data file: where, and what is wrong. */
export interface Problem {
  readonly path: string;
  readonly message: string;
}

/** Every issue of a zod error as `path: message`, paths in dotted form (`broker.mqtt.port`). */
export function problemsOf(error: z.ZodError, prefix = ""): Problem[] {
  return error.issues.map((issue) => {
    const path = [prefix, ...issue.path.map(String)].filter((p) => p !== "").join(".");
    return { path: path === "" ? "(root)" : path, message: issue.message };
  });
}

/** Problems formatted one per line, for a terminal or a log. */
export function formatProblems(source: string, problems: readonly Problem[]): string {
  const lines = problems.map((p) => `  - ${p.path}: ${p.message}`);
  return `${source}: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n${lines.join("\n")}`;
}

/** A configuration that failed to load; `problems` lists every problem found, not just the first. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  constructor(
    readonly source: string,
    readonly problems: readonly Problem[],
  ) {
    super(formatProblems(source, problems));
    this.name = "ConfigError";
  }
}
