import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { verifyEvidencePackage } from "../../../tasks/evidence-seal.js";
import { metricValue, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { startLocalIngest, type TestIngest } from "../../support/ingest.js";

/**
 * A rule file of its own (the pack's windows are an hour long): LAeq above 70 dB(A) in a rolling
 * 10 s window, held for 2 s, clearing below 65. Enforcement, so a case with evidence.
 */
const RULES = `
rules:
  - id: test.noise-loud
    version: 3
    title: Loud for two seconds (test rule)
    clause: { standard: TEST 1-2026, section: "4.2" }
    confidence: verified
    taskKind: enforcement
    scope: { kinds: [noise] }
    subject: device
    condition:
      type: threshold
      quantity: LAeq
      aggregate: max
      window: 10s
      op: ">"
      raise: 70
      clear: 65
      for: 2s
`;

const dataTopic = (id: string) => `citywatch/v1/devices/${id}/data`;

describe("rules to tasks through MQTT (all-in-one ingest, real broker, real SQLite)", () => {
  let t: TestBroker | undefined;
  let ingest: TestIngest | undefined;
  let device: MqttClient | undefined;
  const dirs: string[] = [];
  afterEach(async () => {
    await device?.endAsync(true).catch(() => undefined);
    await ingest?.stop();
    await t?.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    device = ingest = t = undefined;
  });

  function tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  }

  async function setUp(dataDir: string, rulesDir: string, broker?: TestBroker) {
    t =
      broker ??
      (await startTestBroker({ limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } }));
    ingest = await startLocalIngest(t, {
      dataDir,
      config: { rules: { defaultPack: false, directories: [rulesDir], tickMs: 100 } },
    });
    return { t, ingest };
  }

  let seq = 0;
  async function send(client: MqttClient, laeq: number, at = Date.now()) {
    seq += 1;
    await client.publishAsync(
      dataTopic("noise-1"),
      JSON.stringify({
        v: 1,
        deviceId: "noise-1",
        seq,
        kind: "noise",
        readings: [{ ts: new Date(at).toISOString(), quality: "normal", values: { LAeq: laeq } }],
      }),
      { qos: 1 },
    );
  }

  it("a violating series raises exactly one case whose evidence is complete and verifies", async () => {
    seq = 0;
    const rulesDir = tempDir("cw-rules-");
    writeFileSync(join(rulesDir, "test.yaml"), RULES);
    const broker = await startTestBroker({
      limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 },
    });
    const secret = broker.addDevice("noise-1", "noise", { calibrationDueOn: "2099-01-01" });
    const { ingest } = await setUp(tempDir("cw-data-"), rulesDir, broker);
    device = await broker.connect({ username: "noise-1", password: secret });
    const client = device;

    // Compliant for a while: nothing.
    for (let i = 0; i < 5; i++) {
      await send(client, 55);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ingest.tasks.store.listTasks({ limit: 10 })).toEqual([]);

    // 80 dB(A) for 3.5 s: pending for 2 s, then one case; later violations attach to it.
    const started = Date.now();
    while (Date.now() - started < 3_500) {
      await send(client, 80);
      await new Promise((r) => setTimeout(r, 100));
    }
    await until(() => ingest.tasks.store.listTasks({ limit: 10 }).length > 0, "a case filed");
    const tasks = ingest.tasks.store.listTasks({ limit: 10 });
    expect(tasks).toHaveLength(1);
    const task = tasks[0];
    expect(task).toMatchObject({
      kind: "enforcement",
      rule: { id: "test.noise-loud", version: 3 },
      subject: { type: "device", id: "noise-1" },
    });
    // Raised no sooner than `for` after the first violating reading.
    const sealed = ingest.tasks.store.evidence(task?.id ?? "");
    expect(sealed?.format).toBe("citywatch-evidence/2");
    if (sealed?.format !== "citywatch-evidence/2") return;
    const evidence = sealed;
    expect(Date.parse(evidence.decision.at) - started).toBeGreaterThanOrEqual(2_000);
    expect(evidence.rule).toMatchObject({
      id: "test.noise-loud",
      version: 3,
      clause: { standard: "TEST 1-2026", section: "4.2" },
    });
    expect(evidence.computation).toMatchObject({
      conditionType: "threshold",
      aggregate: "max",
      windowMs: 10_000,
      align: "rolling",
      reported: "80.0",
      unit: "dB(A)",
    });
    expect(evidence.computation.method).toContain("max of LAeq over a rolling 10s window");
    expect(evidence.computation.value).toBe(80);
    expect(evidence.computation.limit).toBe(70);
    expect(evidence.devices).toEqual([
      expect.objectContaining({
        id: "noise-1",
        serial: "S-noise-1",
        calibrationDueOn: "2099-01-01",
      }),
    ]);
    expect(evidence.site?.location).toBeDefined();
    expect(evidence.readings.length).toBeGreaterThanOrEqual(15);
    expect(evidence.readings.every((r) => r.deviceId === "noise-1")).toBe(true);
    // Every reading the computation used, each with the message it came in and when it arrived.
    expect(evidence.readings.every((r) => r.seq !== null && r.receivedAt !== null)).toBe(true);
    expect(evidence.computation.recomputed).toBe(80);
    const keys = ingest.tasks.keyring.publicKeys();
    expect(verifyEvidencePackage(evidence, keys).valid).toBe(true);
    // Tampering shows.
    const tampered = { ...evidence, readings: evidence.readings.slice(1) };
    expect(verifyEvidencePackage(tampered, keys).valid).toBe(false);
    // Still one task after more ticks.
    await new Promise((r) => setTimeout(r, 500));
    expect(ingest.tasks.store.listTasks({ limit: 10 })).toHaveLength(1);
    expect(await metricValue(ingest, "citywatch_rules_decisions_total", { type: "raise" })).toBe(1);
    expect(await metricValue(ingest, "citywatch_rules_open_alarms")).toBe(1);
  });

  it("keeps a pending alarm's timer across a restart", async () => {
    seq = 0;
    const rulesDir = tempDir("cw-rules-");
    // Held for 4 s: the restart falls in the middle.
    writeFileSync(join(rulesDir, "test.yaml"), RULES.replace("for: 2s", "for: 4s"));
    const dataDir = tempDir("cw-data-");
    const broker = await startTestBroker(
      { limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } },
      { dataDir: tempDir("cw-reg-") },
    );
    const secret = broker.addDevice("noise-1", "noise");
    await setUp(dataDir, rulesDir, broker);
    device = await broker.connect({ username: "noise-1", password: secret });
    const first = Date.now();
    for (let i = 0; i < 10; i++) {
      await send(device, 80);
      await new Promise((r) => setTimeout(r, 100));
    }
    const pending = ingest?.driver?.evaluationCount ?? 0;
    expect(pending).toBeGreaterThan(0);
    expect(ingest?.tasks.store.listTasks({ limit: 10 })).toEqual([]);
    // Restart the ingest (the broker stays): the pending alarm and the windows come back.
    await ingest?.stop();
    ingest = await startLocalIngest(broker, {
      dataDir,
      config: { rules: { defaultPack: false, directories: [rulesDir], tickMs: 100 } },
    });
    const restarted = ingest;
    while (Date.now() - first < 4_800) {
      await send(device, 80);
      await new Promise((r) => setTimeout(r, 100));
    }
    await until(() => restarted.tasks.store.listTasks({ limit: 10 }).length === 1, "case filed");
    const evidence = restarted.tasks.store.evidence(
      restarted.tasks.store.listTasks({ limit: 10 })[0]?.id ?? "",
    );
    // The alarm started before the restart: the timer was kept, not restarted.
    expect(Date.parse(evidence?.decision.startedAt ?? "")).toBeLessThan(first + 1_000);
    expect(Date.parse(evidence?.decision.at ?? "") - first).toBeLessThan(5_500);
  });

  it("does not raise for a site holding a valid permit of an exempting type", async () => {
    seq = 0;
    const rulesDir = tempDir("cw-rules-");
    writeFileSync(
      join(rulesDir, "test.yaml"),
      RULES.replace("for: 2s", "for: 0s") + "    permitExemption: { types: [night_works] }\n",
    );
    const broker = await startTestBroker({
      limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 },
    });
    const base = broker.registry.getSite("site-1");
    if (base === undefined) throw new Error("the test broker has no site-1");
    const hour = 3_600_000;
    broker.registry.putSite({
      ...base,
      id: "site-permit",
      permits: [
        {
          type: "night_works",
          reference: "NW-2026-001",
          validFrom: new Date(Date.now() - hour).toISOString(),
          validTo: new Date(Date.now() + hour).toISOString(),
        },
      ],
    });
    const permitted = broker.addDevice("noise-1", "noise", { siteId: "site-permit" });
    const other = broker.addDevice("noise-2", "noise");
    const { ingest } = await setUp(tempDir("cw-data-"), rulesDir, broker);
    device = await broker.connect({ username: "noise-1", password: permitted });
    const second = await broker.connect({ username: "noise-2", password: other });
    const loud = (id: string, n: number) =>
      JSON.stringify({
        v: 1,
        deviceId: id,
        seq: n,
        kind: "noise",
        readings: [{ ts: new Date().toISOString(), quality: "normal", values: { LAeq: 85 } }],
      });
    for (let n = 1; n <= 5; n++) {
      await device.publishAsync(dataTopic("noise-1"), loud("noise-1", n), { qos: 1 });
      await second.publishAsync(dataTopic("noise-2"), loud("noise-2", n), { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
    }
    await until(() => ingest.tasks.store.listTasks({ limit: 10 }).length > 0, "a case filed");
    await new Promise((r) => setTimeout(r, 500));
    expect(ingest.tasks.store.listTasks({ limit: 10 }).map((t) => t.subject.id)).toEqual([
      "noise-2",
    ]);
    await second.endAsync(true);
  });
});
