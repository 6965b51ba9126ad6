import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { build as buildBroker, type Broker } from "../../../broker/app.js";
import { startDemo } from "../../../cli/commands/sim.js";
import { loadCitywatchConfig } from "../../../cli/runtime/config.js";
import { localBroker } from "../../../cli/runtime/local-broker.js";
import {
  DEMO_REGISTRY_FILE,
  readRegistryFile,
  registryPath,
  seedDemoCity,
} from "../../../cli/runtime/registry-file.js";
import { authenticateDevices } from "../../../cli/runtime/standby.js";
import { buildSystem, type System } from "../../../cli/runtime/system.js";
import { RegistryStore } from "../../../registry/store.js";
import { type ExpectedTask, loadScenario } from "../../../simulators/index.js";
import { connectMqtt } from "../../support/mqtt-client.js";
import { expectedEntries } from "../../support/scenario-tasks.js";

/*
 * The first start of `citywatch start`, in process and wired as cli/commands/serve.ts wires it:
 * the demo city seeded by the same function, the real broker authenticating against the registry
 * the same way, the real ingest, rules and tasks (buildSystem) on the embedded defaults, and for
 * `--demo` the same startDemo. Only the rules' clock is driven: minutes pass as clock ticks at
 * the configured tick interval, so ten idle minutes take a second.
 */

const MINUTE = 60_000;

interface Started {
  readonly registry: RegistryStore;
  readonly broker: Broker;
  readonly system: System;
  readonly log: Logger;
  readonly lines: string[];
  /** Move the system's clock on by `ms`, one rules tick per tick interval. */
  pass(ms: number): void;
  /** Every task filed, in the scenarios' terms, sorted. */
  tasks(): Promise<ExpectedTask[]>;
  readonly mqttUrl: string;
  stop(): Promise<void>;
}

const dirs: string[] = [];
const running: Started[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const sorted = (tasks: readonly ExpectedTask[]) =>
  [...tasks].sort((a, b) => `${a.rule}/${a.subject}`.localeCompare(`${b.rule}/${b.subject}`));

/** `citywatch start` on embedded defaults; `seed` fills the empty registry (default: as start does). */
async function start(
  seed: (registry: RegistryStore, nowMs: number) => unknown = seedDemoCity,
): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), "cw-first-start-"));
  dirs.push(dir);
  const config = loadCitywatchConfig({ dataDir: dir }, {});
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
  let offset = 0;
  const now = () => Date.now() + offset;
  const registry = new RegistryStore(registryPath(dir));
  seed(registry, now());
  const broker = buildBroker({
    log,
    config: {
      ...config.broker,
      host: "127.0.0.1",
      mqtt: { enabled: true, port: 0 },
      ws: { ...config.broker.ws, enabled: false },
    },
    authenticate: authenticateDevices(registry, log),
  });
  const addresses = await broker.start();
  const system = buildSystem({
    log,
    config: config.ingest,
    dataDir: dir,
    registry: registry.view(),
    local: localBroker(broker, log),
    now,
  });
  await system.start();
  const driver = system.rules.driver;
  if (driver === undefined) throw new Error("the rules are enabled by default");
  const started: Started = {
    registry,
    broker,
    system,
    log,
    lines,
    mqttUrl: `mqtt://127.0.0.1:${addresses.mqtt}`,
    pass(ms) {
      const tick = config.ingest.rules.tickMs;
      for (let t = 0; t < ms; t += tick) {
        offset += tick;
        driver.tick();
      }
    },
    async tasks() {
      // The decisions the rules handed over are applied first.
      await system.tasks.service.settled();
      return sorted(
        system.tasks.store.listTasks({ limit: 1000 }).flatMap((task) => expectedEntries(task)),
      );
    },
    async stop() {
      await system.stop();
      await broker.stop();
      registry.close();
    },
  };
  running.push(started);
  return started;
}

/** The demo city as it was seeded before: every device in service, its dates two years old. */
function oldSeed(registry: RegistryStore, nowMs: number): void {
  const demo = readRegistryFile(DEMO_REGISTRY_FILE, nowMs - 2 * 365 * 24 * 60 * MINUTE);
  registry.importFile({
    ...demo,
    devices: demo.devices.map((device) => ({ ...device, standby: undefined })),
  });
}

async function until(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("the first start: quiet and true", () => {
  it("`citywatch start` followed by ten idle minutes files no task", async () => {
    const s = await start();
    expect(s.registry.listDevices().map((d) => [d.id, d.standby])).toEqual(
      s.registry.listDevices().map((d) => [d.id, true]),
    );
    s.pass(10 * MINUTE);
    expect(await s.tasks()).toEqual([]);
  });

  it("the same ten minutes on the old seed (devices in service, fixed dates now past) file tasks: the assertion above can fail", async () => {
    const s = await start(oldSeed);
    s.pass(10 * MINUTE);
    const tasks = await s.tasks();
    // Every device silent for longer than 3 × its interval (not the river gauge, 300 s, or the
    // cooking-fume monitor, 600 s) has its deadman …
    const silent = s.registry
      .listDevices()
      .filter((d) => 3 * d.expectedIntervalS * 1000 < 10 * MINUTE)
      .map((d) => d.id);
    expect(silent).toHaveLength(5);
    expect(tasks.filter((t) => t.rule === "device.deadman").map((t) => t.subject)).toEqual(silent);
    // … and an expired calibration for every device that has a due date.
    expect(tasks.filter((t) => t.rule === "device.calibration-expired")).toHaveLength(5);
  });

  it("a demo device that connects is in service: judged and watched from then on", async () => {
    const s = await start();
    const secret = s.registry.rotateSecret("demo-tunnel-s1-gas");
    const client = await connectMqtt(Number(new URL(s.mqttUrl).port), "demo-tunnel-s1-gas", secret);
    await client.endAsync();
    expect(s.lines.join("")).toContain("device on standby connected: in service now");
    expect(s.registry.getDevice("demo-tunnel-s1-gas")).not.toHaveProperty("standby");
    s.pass(3 * MINUTE);
    // Connected, then silent for more than 3 × 30 s: its deadman, and only its.
    expect(await s.tasks()).toEqual([
      { rule: "device.deadman", subject: "demo-tunnel-s1-gas", kind: "maintenance" },
    ]);
  });

  it("`citywatch start --demo` files exactly the demo's documented tasks, then none when the scenario ends", async () => {
    const s = await start();
    const demo = await startDemo({ log: s.log, registry: s.registry, mqttUrl: s.mqttUrl });
    try {
      await until(() => s.lines.some((l) => l.includes("demo scenario played")), "the demo");
    } finally {
      await demo.stop();
    }
    const expected = sorted(loadScenario("demo").expect.tasks);
    // Every message was committed, so every reading was stored and judged.
    expect(await s.tasks()).toEqual(expected);

    // Forty idle minutes later (the slowest demo device reports every 10 minutes: its deadman
    // would come after 30): still exactly the documented tasks.
    s.pass(40 * MINUTE);
    expect(await s.tasks()).toEqual(expected);

    // The end of the scenario is visible: a log line, and each device's registry state.
    const layout = loadScenario("demo").layout.devices.map((d) => d.id as string);
    const retired = s.lines
      .map((l) => JSON.parse(l) as { msg: string; devices?: string[] })
      .find((l) => l.msg.includes("back on standby"));
    expect(retired?.msg).toMatch(/^scenario demo ended: 8 devices back on standby/);
    expect(retired?.devices).toEqual(layout);
    for (const id of layout) expect(s.registry.getDevice(id)?.standby).toBe(true);
  }, 120_000);
});
