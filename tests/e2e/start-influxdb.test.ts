import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import {
  bearer,
  type CliProcess,
  firstStartSecret,
  startSystem,
  systemPorts,
} from "../support/cli-process.js";
import { connectMqtt } from "../support/mqtt-client.js";
import { provideInfluxDB } from "../support/services.js";
import { requireService } from "../support/suite.js";

const influx = await requireService("citywatch start with InfluxDB", provideInfluxDB);

describe.runIf(influx)(
  "citywatch start --influxdb-url (the same product, InfluxDB as the store)",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "cw-e2e-influx-"));
    let proc: CliProcess | undefined;
    let device: MqttClient | undefined;
    afterAll(async () => {
      await device?.endAsync(true);
      await proc?.stop();
      await influx?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("stores a demo device's reading in InfluxDB and serves it on the API", async () => {
      const ports = await systemPorts();
      const [mqttPort, httpPort] = [ports.mqtt, ports.http];
      const database = `e2e_${Date.now()}`;
      proc = startSystem(dir, ports, [
        "--influxdb-url",
        influx?.url ?? "",
        "--influxdb-database",
        database,
      ]);
      await proc.waitFor(/citywatch broker is up\./);
      const secret = firstStartSecret(dir, "demo-tunnel-s1-gas");
      device = await connectMqtt(mqttPort, "demo-tunnel-s1-gas", secret);
      const ts = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString();
      await device.publishAsync(
        "citywatch/v1/devices/demo-tunnel-s1-gas/data",
        JSON.stringify({
          v: 1,
          deviceId: "demo-tunnel-s1-gas",
          seq: 1,
          kind: "utility_tunnel",
          readings: [{ ts, quality: "normal", values: { ch4: 21.5, o2: 20.4 } }],
        }),
        { qos: 1 },
      );
      const api = `http://127.0.0.1:${httpPort}`;
      let readings: Array<{ ts: string; values: Record<string, number> }> = [];
      const deadline = Date.now() + 15_000;
      while (readings.length === 0 && Date.now() < deadline) {
        const res = await fetch(
          `${api}/api/v1/devices/demo-tunnel-s1-gas/readings?from=${Date.parse(ts) - 1000}`,
          {
            headers: bearer(firstStartSecret(dir, "first-admin")),
          },
        );
        readings = ((await res.json()) as { readings: typeof readings }).readings;
        if (readings.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(readings).toEqual([expect.objectContaining({ ts, values: { ch4: 21.5, o2: 20.4 } })]);

      // And it is really in InfluxDB, where Grafana and InfluxQL users will look for it.
      const q = encodeURIComponent(
        `SELECT "ch4", "o2", "quality", "site" FROM "utility_tunnel" WHERE "device" = 'demo-tunnel-s1-gas'`,
      );
      const raw = (await (
        await fetch(`${influx?.url}/query?db=${database}&epoch=ms&q=${q}`)
      ).json()) as {
        results: Array<{ series?: Array<{ columns: string[]; values: unknown[][] }> }>;
      };
      expect(raw.results[0]?.series?.[0]?.values).toEqual([
        [Date.parse(ts), 21.5, 20.4, "normal", "demo-tunnel-s1"],
      ]);
      const health = (await (await fetch(`${api}/healthz`)).json()) as Record<string, unknown>;
      expect(health).toMatchObject({ status: "ok", store: "influxdb", storeUp: true });
    });
  },
);
