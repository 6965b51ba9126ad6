import { pino } from "pino";
import { IngestConfig } from "../../contracts/index.js";
import { localBroker } from "../../cli/runtime/local-broker.js";
import { type ApiDeps, buildApi } from "../../cli/runtime/api.js";
import type { Ingest, RegistryView } from "../../ingest/app.js";
import { buildSystem, type System } from "../../cli/runtime/system.js";
import type { RulesDriver } from "../../rules/driver.js";
import type { RuleSet } from "../../rules/rule-set.js";
import type { TaskSystem } from "../../tasks/app.js";
import { type TestBroker, until } from "./broker.js";

/** The test broker's registry as the ingest reads it. */
export function registryViewOf(t: TestBroker): RegistryView {
  return {
    device: (id) => t.registry.getDevice(id),
    site: (id) => t.registry.getSite(id),
    devices: () => t.registry.listDevices(),
    sites: () => t.registry.listSites(),
  };
}

/**
 * The ingest as `citywatch start` runs it, with the rules and tasks behind it: the ingest's own
 * surface, started and stopped as the whole system, with the rules and tasks at hand.
 */
export type TestIngest = Ingest & {
  readonly tasks: TaskSystem;
  readonly driver: RulesDriver | undefined;
  readonly rules: RuleSet;
};

function testIngestOf(system: System): TestIngest {
  return {
    ...system.ingest,
    start: () => system.start(),
    stop: () => system.stop(),
    tasks: system.tasks,
    driver: system.rules.driver,
    rules: system.rules.ruleSet,
  };
}

/** An in-process ingest subscribed to the test broker with an `ingest` account, started and connected. */
export async function startTestIngest(
  t: TestBroker,
  options: { dataDir: string; clientId: string; config?: Record<string, unknown> },
): Promise<TestIngest> {
  const password = t.addService("ingest", "ingest");
  const ingest = testIngestOf(
    buildSystem({
      log: pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" }),
      config: IngestConfig.parse({ batch: { maxDelayMs: 20 }, ...options.config }),
      dataDir: options.dataDir,
      registry: registryViewOf(t),
      mqtt: { url: t.url, username: "ingest", password, clientId: options.clientId },
    }),
  );
  await ingest.start();
  await until(() => ingest.mqttConnected(), "ingest connected");
  await new Promise((r) => setTimeout(r, 100)); // the subscription is granted right after CONNACK
  return ingest;
}

/**
 * An ingest in the test broker's process, as `citywatch start` builds it: device data is taken at
 * the broker's publish gate and written to the inbox before the broker acknowledges it.
 */
export async function startLocalIngest(
  t: TestBroker,
  options: { dataDir: string; config?: Record<string, unknown> },
): Promise<TestIngest> {
  const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
  const ingest = testIngestOf(
    buildSystem({
      log,
      config: IngestConfig.parse({ batch: { maxDelayMs: 20 }, ...options.config }),
      dataDir: options.dataDir,
      registry: registryViewOf(t),
      local: localBroker(t.broker, log),
    }),
  );
  await ingest.start();
  return ingest;
}

/**
 * The HTTP API over what a test has built, with the defaults a test does not care about: always
 * healthy, 3 online intervals, the real clock.
 */
export function testApi(
  deps: Pick<ApiDeps, "registry" | "state" | "store" | "metrics"> & Partial<ApiDeps>,
) {
  return buildApi({
    health: () => ({ ok: true, detail: {} }),
    onlineIntervals: 3,
    now: Date.now,
    ...deps,
  });
}
