import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, EdgeConfig, loadEdgeConfig } from "../../../../contracts/index.js";
import { createDrivers } from "../../../../edge/drivers/index.js";

let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function file(text: string): string {
  dir ??= mkdtempSync(join(tmpdir(), "cw-edge-config-"));
  const path = join(dir, "edge.yaml");
  writeFileSync(path, text);
  return path;
}

function problemsOf(load: () => unknown): string[] {
  try {
    load();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((p) => `${p.path}: ${p.message}`);
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("edge configuration", () => {
  it("fills defaults around the devices", () => {
    const config = EdgeConfig.parse({
      devices: [{ deviceId: "noise-1", kind: "noise", secret: "s" }],
    });
    expect(config.mqtt.url).toBe("mqtt://127.0.0.1:18830");
    expect(config.devices[0]).toMatchObject({ reportIntervalS: 60, localThresholds: [] });
    expect(config.uplink).toMatchObject({ window: 32, resendTimeoutMs: 30_000 });
    expect(config.wal).toMatchObject({ maxReadingsPerMessage: 500 });
    expect(config.drivers).toEqual([]);
  });

  it("refuses a broken file with every problem named by path", () => {
    const path = file(`
mqtt: { url: "http://broker:1883", keepaliveS: 5 }
devices:
  - { deviceId: "bad id", kind: sound, secret: s }
  - { deviceId: tunnel-1, kind: utility_tunnel }
  - { deviceId: tunnel-1, kind: utility_tunnel, secret: s, localThresholds: [{ quantity: ch4 }] }
uplink: { window: 100, reconnectMinMs: 5000, reconnectMaxMs: 1000 }
wal: { maxBytes: 10 }
drivers: [{ type: serial }]
extra: true
`);
    const problems = problemsOf(() => loadEdgeConfig({ file: path }));
    const paths = problems.map((p) => p.split(":")[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        "(root)",
        "mqtt.url",
        "mqtt.keepaliveS",
        "devices.0.deviceId",
        "devices.0.kind",
        "devices.1.secret",
        "devices.2.localThresholds.0",
        "uplink.window",
        "wal.maxBytes",
        "drivers.0.type",
      ]),
    );
    expect(problems.join("\n")).toMatch(/exactly one of secret, secretFile or secretEnv/);
  });

  it("names duplicate devices and inconsistent backoff bounds", () => {
    const problems = problemsOf(() =>
      loadEdgeConfig({
        file: file(`
devices:
  - { deviceId: n1, kind: noise, secret: a }
  - { deviceId: n1, kind: noise, secret: b }
uplink: { reconnectMinMs: 5000, reconnectMaxMs: 1000 }
`),
      }),
    );
    expect(problems).toEqual([
      "devices.1.deviceId: device n1 is listed twice",
      "uplink.reconnectMaxMs: must be >= uplink.reconnectMinMs",
    ]);
  });

  it("reads secrets from a file or an environment variable, and says when it cannot", () => {
    dir = mkdtempSync(join(tmpdir(), "cw-edge-config-"));
    const secretFile = join(dir, "n2.secret");
    writeFileSync(secretFile, "from-file\n");
    const path = file(`
devices:
  - { deviceId: n1, kind: noise, secretEnv: N1_SECRET }
  - { deviceId: n2, kind: noise, secretFile: ${secretFile} }
`);
    const config = loadEdgeConfig({ file: path, env: { N1_SECRET: "from-env" } });
    expect(config.devices.map((d) => d.secret)).toEqual(["from-env", "from-file"]);
    expect(Object.isFrozen(config)).toBe(true);
    expect(problemsOf(() => loadEdgeConfig({ file: path, env: {} }))).toEqual([
      "devices.0.secretEnv: environment variable N1_SECRET is not set",
    ]);
  });

  it("environment and flags win over the file", () => {
    const path = file(`devices: [{ deviceId: n1, kind: noise, secret: s }]`);
    const config = loadEdgeConfig({
      file: path,
      env: { CITYWATCH_EDGE_MQTT_URL: "mqtt://10.0.0.1:1883", CITYWATCH_LOG_LEVEL: "debug" },
      overrides: { log: { level: "warn" } },
    });
    expect(config.mqtt.url).toBe("mqtt://10.0.0.1:1883");
    expect(config.log.level).toBe("warn");
  });
});

describe("driver options (second stage)", () => {
  const deps = {
    log: pino({ level: "silent" }),
    devices: [{ deviceId: "n1", kind: "noise" as const }],
    now: Date.now,
    simulation: () => ({ at: () => ({ quality: "normal" as const, values: { LAeq: 50 } }) }),
  };

  it("checks each driver's entry with the driver's own schema and names problems by path", () => {
    const config = EdgeConfig.parse({
      devices: [{ deviceId: "n1", kind: "noise", secret: "s" }],
      drivers: [
        { type: "simulated", sampleIntervalMs: 10, colour: "red" },
        { type: "simulated", devices: ["n9"] },
        { type: "modbus", port: "/dev/ttyUSB0" },
      ],
    });
    const problems = problemsOf(() => createDrivers(config.drivers, deps, "edge.yaml"));
    expect(problems).toEqual([
      expect.stringMatching(/^drivers\.0\.sampleIntervalMs: /),
      expect.stringMatching(/^drivers\.0: .*colour/),
      "drivers.1: devices not configured in the agent: n9",
      // The Modbus driver's own schema (edge/drivers/modbus-options.ts) speaks for its entry.
      expect.stringMatching(/^drivers\.2\.connection: /),
      expect.stringMatching(/^drivers\.2\.devices: /),
      'drivers.2: Unrecognized key: "port"',
    ]);
  });

  it("builds a valid simulated driver", () => {
    const [driver] = createDrivers([{ type: "simulated", sampleIntervalMs: 1000 }], deps);
    expect(driver?.name).toBe("simulated");
  });
});
