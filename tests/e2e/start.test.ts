import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import type { MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import {
  bearer,
  type CliProcess,
  startSystem,
  systemPorts,
  type SystemPorts,
} from "../support/cli-process.js";
import { connectMqtt } from "../support/mqtt-client.js";

/** `npm start` as the README gives it, on embedded defaults, with ports moved off the defaults. */
const dir = mkdtempSync(join(tmpdir(), "cw-e2e-"));
const running: CliProcess[] = [];
const clients: MqttClient[] = [];

function start(p: SystemPorts, extra: string[] = []): CliProcess {
  const proc = startSystem(dir, p, extra);
  running.push(proc);
  return proc;
}

async function connect(
  port: number,
  username: string,
  password: string,
  clientId = username,
): Promise<MqttClient> {
  const client = await connectMqtt(port, username, password, clientId);
  clients.push(client);
  return client;
}

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
    encoding: "utf8",
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await Promise.all(running.map((p) => p.stop()));
  rmSync(dir, { recursive: true, force: true });
});

describe("citywatch start (all-in-one, embedded defaults)", () => {
  let p: { mqtt: number; ws: number; http: number };
  let proc: CliProcess;
  const secrets = new Map<string, string>();

  it("seeds the demo registry, writes each secret once to an owner-only file, and says how to connect", async () => {
    p = await systemPorts();
    proc = start(p);
    await proc.waitFor(/citywatch broker is up\./);
    await proc.waitFor(/Metrics {4}http/);
    const out = proc.output();
    // Issue #16 item 8: the secrets and the admin token go to a file only the owner can read,
    // not to stdout (where logs keep them); the start says where.
    const file = join(dir, "first-start-secrets.txt");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "registry.db")).mode & 0o777).toBe(0o600);
    for (const m of readFileSync(file, "utf8").matchAll(/^(\S+)\s+\S+\s+([A-Za-z0-9_-]{20,})$/gm)) {
      secrets.set(m[1] ?? "", m[2] ?? "");
    }
    expect([...secrets.keys()].sort()).toEqual([
      // The console's first user (docs/console.md).
      "admin",
      "demo-dust-1",
      "demo-fume-1",
      "demo-noise-1",
      "demo-river-1",
      "demo-tunnel-s1-gas",
      "demo-tunnel-s2-gas",
      "demo-underpass-1",
      "first-admin",
      "ingest",
      "simulator",
    ]);
    for (const secret of secrets.values()) expect(out).not.toContain(secret);
    expect(out).toContain(`are in ${file} (owner-only, mode 0600)`);
    expect(out).toContain(`mqtt://127.0.0.1:${p.mqtt}`);
    expect(out).toContain(`ws://127.0.0.1:${p.ws}/mqtt`);
    expect(out).toContain(`-P "$(awk '$1=="demo-noise-1"{print $3}' ${file})"`);
  });

  it("stores a demo device's reading, commits it, and serves it on the API, metrics and health", async () => {
    const ingest = await connect(p.mqtt, "ingest", secrets.get("ingest") ?? "", "ingest-e2e");
    const received: string[] = [];
    ingest.on("message", (_topic, payload) => received.push(payload.toString()));
    await ingest.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });
    const device = await connect(p.mqtt, "demo-noise-1", secrets.get("demo-noise-1") ?? "");
    const commits: string[] = [];
    device.on("message", (_topic, payload) => commits.push(payload.toString()));
    await device.subscribeAsync("citywatch/v1/devices/demo-noise-1/commit", { qos: 1 });
    const ts = new Date().toISOString();
    const reading = {
      v: 1,
      deviceId: "demo-noise-1",
      seq: 1,
      kind: "noise",
      readings: [{ ts, quality: "normal", values: { LAeq: 58.2 } }],
    };
    await device.publishAsync("citywatch/v1/devices/demo-noise-1/data", JSON.stringify(reading), {
      qos: 1,
    });
    const deadline = Date.now() + 10_000;
    while ((received.length === 0 || commits.length === 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(received.map((r) => JSON.parse(r) as unknown)).toEqual([reading]);
    expect(JSON.parse(commits[0] ?? "{}")).toMatchObject({
      deviceId: "demo-noise-1",
      committedSeq: 1,
    });

    const api = `http://127.0.0.1:${p.http}`;
    // The readings API takes the admin token the first start wrote, like the task API.
    const headers = bearer(secrets.get("first-admin") ?? "");
    const readingsUrl = `${api}/api/v1/devices/demo-noise-1/readings?from=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`;
    expect((await fetch(readingsUrl)).status).toBe(401);
    const stored = (await (await fetch(readingsUrl, { headers })).json()) as {
      readings: Array<{ ts: string; values: { LAeq: number } }>;
    };
    expect(stored.readings).toEqual([expect.objectContaining({ ts, values: { LAeq: 58.2 } })]);
    const devices = (await (await fetch(`${api}/api/v1/devices`, { headers })).json()) as {
      devices: Array<{ id: string; online: boolean }>;
    };
    expect(devices.devices.find((d) => d.id === "demo-noise-1")?.online).toBe(true);

    const metrics = await (await fetch(`${api}/metrics`)).text();
    // The test subscriber and the device: the ingest in this process takes data at the broker's
    // publish gate, without a connection of its own.
    expect(metrics).toMatch(/^citywatch_broker_connected_clients 2$/m);
    expect(metrics).toMatch(/^citywatch_ingest_readings_stored_total 1$/m);
    const health = await fetch(`${api}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({
      status: "ok",
      store: "sqlite",
      storeUp: true,
      mqttConnected: true,
      inbox: 0,
    });
    expect((await fetch(`${api}/nope`)).status).toBe(404);
    expect(
      (await fetch(`${api}/api/v1/devices/demo-noise-1/readings?from=soon`, { headers })).status,
    ).toBe(400);
  });

  it("raises an emergency task for a violating reading: on the API and on the live stream", async () => {
    const token = secrets.get("first-admin");
    expect(token).toBeDefined();
    const api = `http://127.0.0.1:${p.http}`;
    const auth = { authorization: `Bearer ${token ?? ""}` };
    expect((await fetch(`${api}/api/v1/tasks`)).status).toBe(401);

    // The live stream first, so the task's arrival is seen.
    const abort = new AbortController();
    const stream = await fetch(`${api}/api/v1/tasks/stream`, {
      headers: auth,
      signal: abort.signal,
    });
    expect(stream.status).toBe(200);
    const seen: string[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream.body ?? []) {
        seen.push(decoder.decode(chunk as Uint8Array, { stream: true }));
        if (seen.join("").includes("tunnel.ch4")) return;
      }
    })().catch(() => undefined);

    // Methane at 26 %LEL in the gas compartment of segment 1: GB 50838-2015, level III (shut-off).
    const device = await connect(
      p.mqtt,
      "demo-tunnel-s1-gas",
      secrets.get("demo-tunnel-s1-gas") ?? "",
    );
    // The demo devices are seeded on standby; this CONNECT put the detector in service. The rules
    // take it up when its first reading arrives, but read the registry for that at most once a
    // second (rules/driver.ts), and the previous test's first reading just made them read it.
    await new Promise((r) => setTimeout(r, 1_100));
    const uplink = {
      v: 1,
      deviceId: "demo-tunnel-s1-gas",
      seq: 1,
      kind: "utility_tunnel",
      readings: [
        {
          ts: new Date().toISOString(),
          quality: "normal",
          values: { ch4: 26, o2: 20.9, h2s: 0, co: 0, temperature: 22 },
        },
      ],
    };
    await device.publishAsync(
      "citywatch/v1/devices/demo-tunnel-s1-gas/data",
      JSON.stringify(uplink),
      { qos: 1 },
    );
    const deadline = Date.now() + 10_000;
    while (!seen.join("").includes("tunnel.ch4") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    abort.abort();
    await reading;
    expect(seen.join("")).toMatch(/event: task\ndata: .*"tunnel\.ch4"/);

    const list = (await (
      await fetch(`${api}/api/v1/tasks?kind=emergency`, { headers: auth })
    ).json()) as {
      tasks: Array<{
        id: string;
        kind: string;
        level?: string;
        rule: { id: string };
        subject: { id: string };
      }>;
    };
    // Nothing else: no calibration expired (the demo's are due a year after seeding), and no
    // deadman for the demo devices nobody connected (on standby, not watched).
    const all = (await (await fetch(`${api}/api/v1/tasks`, { headers: auth })).json()) as {
      tasks: Array<{ rule: { id: string } }>;
    };
    expect(all.tasks.map((t) => t.rule.id)).toEqual(["tunnel.ch4"]);
    const task = list.tasks.find((t) => t.rule.id === "tunnel.ch4");
    expect(task).toMatchObject({
      kind: "emergency",
      level: "III",
      subject: { id: "demo-tunnel-s1" },
    });
    const one = await fetch(`${api}/api/v1/tasks/${task?.id ?? ""}`, { headers: auth });
    expect(one.status).toBe(200);
  });

  it("signs in a user added with `users add`; a user out of scope gets 403 on another district's task", async () => {
    const api = `http://127.0.0.1:${p.http}`;
    const admin = { authorization: `Bearer ${secrets.get("first-admin") ?? ""}` };
    const tasks = (await (await fetch(`${api}/api/v1/tasks`, { headers: admin })).json()) as {
      tasks: Array<{ id: string; routing: { district?: string } }>;
    };
    const task = tasks.tasks[0];
    const district = task?.routing.district ?? "";
    expect(district).not.toBe("");
    const addUser = (id: string, scope: string[]) => {
      const added = cli([
        "users",
        "add",
        id,
        "--name",
        id,
        "--role",
        "emergency",
        ...scope,
        "--data-dir",
        dir,
      ]);
      expect(added.status, added.stderr).toBe(0);
      const password = /shown ONCE, hand it over now:\n {2}(\S+)/.exec(added.stdout)?.[1];
      expect(password).toBeDefined();
      return password ?? "";
    };
    const signIn = async (username: string, password: string) => {
      const res = await fetch(`${api}/api/v1/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username, password }),
      });
      expect(res.status).toBe(200);
      const cookie = (res.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
      expect(cookie).toMatch(/^cw_session=cws_/);
      return { cookie };
    };
    const inside = await signIn("duty.in", addUser("duty.in", ["--district", district]));
    const outside = await signIn("duty.out", addUser("duty.out", ["--district", "elsewhere"]));
    const get = (path: string, cookie: string) =>
      fetch(`${api}${path}`, { headers: { cookie } }).then(async (r) => ({
        status: r.status,
        body: (await r.json()) as { tasks?: unknown[]; message?: string },
      }));
    expect((await get(`/api/v1/tasks/${task?.id ?? ""}`, inside.cookie)).status).toBe(200);
    const refused = await get(`/api/v1/tasks/${task?.id ?? ""}`, outside.cookie);
    expect(refused.status).toBe(403);
    expect(refused.body.message).toContain("outside your scope");
    expect((await get("/api/v1/tasks", outside.cookie)).body.tasks).toEqual([]);
    // A change with the cookie but without the CSRF token is refused.
    const move = await fetch(`${api}/api/v1/tasks/${task?.id ?? ""}/transitions`, {
      method: "POST",
      headers: { cookie: inside.cookie, "content-type": "application/json" },
      body: JSON.stringify({ to: "acknowledged" }),
    });
    expect(move.status).toBe(403);
  });

  it("registers a device with `devices add` while running; its printed secret connects", async () => {
    const added = cli([
      "devices",
      "--data-dir",
      dir,
      "add",
      "--id",
      "noise-new",
      "--kind",
      "noise",
      "--site",
      "demo-site-construction",
      "--model",
      "AWA6228+",
      "--serial",
      "X1",
      "--lat",
      "30.6",
      "--lon",
      "104.0",
      "--district",
      "Jinjiang",
      "--grid-cell",
      "JJ-CX-014",
    ]);
    expect(added.stderr).toBe("");
    expect(added.status).toBe(0);
    const secret = /^ {2}([A-Za-z0-9_-]{43})$/m.exec(added.stdout)?.[1] ?? "";
    expect(secret).toHaveLength(43);
    const client = await connect(p.mqtt, "noise-new", secret);
    expect(client.connected).toBe(true);
    const listed = cli(["devices", "--data-dir", dir, "list"]);
    expect(listed.stdout).toContain("noise-new");
    expect(listed.stdout).toContain("8 devices");
    expect(listed.stdout).not.toContain(secret);
  });

  it("names every problem of a bad device and exits non-zero", () => {
    const bad = cli([
      "devices",
      "--data-dir",
      dir,
      "add",
      "--id",
      "bad/id",
      "--kind",
      "radar",
      "--site",
      "demo-site-construction",
      "--model",
      "M",
      "--serial",
      "S",
      "--lat",
      "95",
      "--lon",
      "104",
      "--district",
      "D",
      "--grid-cell",
      "G",
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/3 problems/);
    expect(bad.stderr).toMatch(/- id: /);
    expect(bad.stderr).toMatch(/- kind: unknown sensor kind "radar"/);
    expect(bad.stderr).toMatch(/- location\.lat: /);
  });

  it("stops cleanly on SIGTERM and keeps the registry: no reseed, old secrets still work", async () => {
    expect(await proc.stop()).toBe(0);
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    p = await systemPorts();
    proc = start(p);
    await proc.waitFor(/citywatch broker is up\./);
    expect(proc.output()).not.toMatch(/Seeded the demo registry/);
    expect(proc.output()).toMatch(/secrets are shown only when issued/);
    const device = await connect(p.mqtt, "demo-dust-1", secrets.get("demo-dust-1") ?? "");
    expect(device.connected).toBe(true);
  });

  it("refuses to start on a taken port, naming the setting to change", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const taken = (blocker.address() as { port: number }).port;
    const q = await systemPorts();
    const failing = start({ ...q, mqtt: taken });
    const code = await new Promise<number | null>((resolve) => failing.child.once("exit", resolve));
    blocker.close();
    expect(code).toBe(1);
    expect(failing.output()).toContain(
      `mqtt port ${taken} on 127.0.0.1 is already in use; choose another with broker.mqtt.port (CITYWATCH_MQTT_PORT, --mqtt-port)`,
    );
  });

  it("lists every problem of a broken configuration file and exits non-zero", async () => {
    const file = join(dir, "broken.yaml");
    writeFileSync(
      file,
      "broker:\n  ws:\n    path: mqtt\n  limits:\n    maxConnections: many\nlog:\n  level: chatty\n",
    );
    const failing = start(await systemPorts(), ["--config", file]);
    const code = await new Promise<number | null>((resolve) => failing.child.once("exit", resolve));
    expect(code).toBe(1);
    const out = failing.output();
    expect(out).toContain("3 problems");
    expect(out).toMatch(/broker\.ws\.path: /);
    expect(out).toContain("broker.limits.maxConnections: must be a whole number");
    expect(out).toMatch(/log\.level: /);
  });
});
