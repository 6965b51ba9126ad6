import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type CliProcess, startSystem, systemPorts } from "../support/cli-process.js";

/*
 * `citywatch start` in region sichuan: the construction dust rule there is a placeholder shipped
 * disabled, so a site at 500 µg/m³ raises nothing. The start says so: a warn line, the /healthz
 * detail and citywatch_rules_placeholders.
 */
const dir = mkdtempSync(join(tmpdir(), "cw-e2e-placeholders-"));
let proc: CliProcess | undefined;

afterAll(async () => {
  await proc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The JSON log lines of the output (pino writes one object per line). */
function logLines(output: string): Array<Record<string, unknown>> {
  return output
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("citywatch start --rules-region sichuan", () => {
  it("warns of each placeholder in force, shows them on /healthz and counts them in /metrics", async () => {
    const ports = await systemPorts();
    proc = startSystem(dir, ports, ["--rules-region", "sichuan"]);
    await proc.waitFor(/rule dust\.pm10\.sichuan is a disabled placeholder in region sichuan/);
    await proc.waitFor(/Metrics {4}http/);

    const warned = logLines(proc.output()).filter((l) => l["level"] === 40 && "rule" in l);
    expect(warned.find((l) => l["rule"] === "dust.pm10.sichuan")).toMatchObject({
      module: "rules",
      region: "sichuan",
      state: "disabled",
      disabled: true,
      unverified: [{ path: "limits" }],
      set: expect.stringContaining("enabled: true") as unknown,
    });
    expect(warned.find((l) => l["rule"] === "tunnel.sump")).toMatchObject({ state: "unverified" });
    expect(warned.some((l) => l["rule"] === "dust.pm10.default")).toBe(false);

    const api = `http://127.0.0.1:${ports.http}`;
    const health = await fetch(`${api}/healthz`);
    expect(health.status).toBe(200); // a placeholder is not a failure
    const body = (await health.json()) as {
      status: string;
      rules: { region: string; placeholders: Array<Record<string, unknown>> };
    };
    expect(body.status).toBe("ok");
    expect(body.rules.region).toBe("sichuan");
    expect(body.rules.placeholders).toContainEqual({
      rule: "dust.pm10.sichuan",
      title: expect.not.stringMatching(/PLACEHOLDER/i) as unknown,
      state: "disabled",
      unverified: ["limits"],
      set: expect.stringContaining("DB51/2682-2020") as unknown,
    });
    expect(body.rules.placeholders.map((p) => p["rule"]).sort()).toEqual(
      warned.map((l) => l["rule"]).sort(),
    );

    const metrics = await (await fetch(`${api}/metrics`)).text();
    expect(metrics).toMatch(
      /^citywatch_rules_placeholders\{rule="dust\.pm10\.sichuan",state="disabled"\} 1$/m,
    );
    expect(metrics).toMatch(
      /^citywatch_rules_placeholders\{rule="water\.ponding\.rate-of-rise",state="unverified"\} 1$/m,
    );
  });
});
