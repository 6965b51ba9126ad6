import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import modbusSerial, { type IServiceVector } from "modbus-serial";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modbusDriverFactory } from "../../../../edge/drivers/modbus.js";
import { until } from "../../../support/broker.js";
import type { Provided, ServiceHandle } from "../../../support/provide.js";
import { requireService } from "../../../support/suite.js";
import { recordingSink } from "../../../unit/edge/drivers/hj212-fixtures.js";

/*
 * Modbus RTU over a real serial line: socat joins two pseudo-terminals, the library's
 * ServerSerial answers on one end as the bus's units, the driver polls from the other through
 * the `serialport` binding, exactly as it would an RS-485 adapter.
 */

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });

/** A pair of linked pseudo-terminals (`{dir}/bus` ↔ `{dir}/unit`) from socat. */
async function provideSerialPair(): Promise<Provided> {
  const dir = mkdtempSync(join(tmpdir(), "cw-rtu-"));
  const link = (name: string) => `pty,raw,echo=0,link=${join(dir, name)}`;
  const child = spawn("socat", [link("bus"), link("unit")], { stdio: "ignore" });
  const spawned = await new Promise<boolean>((resolve) => {
    child.once("spawn", () => resolve(true));
    child.once("error", () => resolve(false));
  });
  if (!spawned) {
    rmSync(dir, { recursive: true, force: true });
    return { ok: false, reason: "socat is not installed (apt-get install -y socat)" };
  }
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(
      () => existsSync(join(dir, "bus")) && existsSync(join(dir, "unit")),
      "socat's ptys",
    );
  } catch (error) {
    await stop();
    return { ok: false, reason: `socat did not create its ptys: ${String(error)}` };
  }
  return { ok: true, service: { url: dir, source: "local-binary", stop } };
}

let pair: ServiceHandle | undefined;
beforeAll(async () => {
  pair = await requireService("Modbus RTU over a pty pair", provideSerialPair);
});
afterAll(async () => {
  await pair?.stop();
});

describe("Modbus driver over RTU", () => {
  it("polls units on one bus, and a silent unit does not cut off the others", async (context) => {
    if (pair === undefined) return context.skip();
    const vector: IServiceVector = {
      getHoldingRegister: (addr: number, unitId: number) =>
        unitId === 3 ? new Promise<number>(() => undefined) : unitId * 100 + addr,
      getInputRegister: () => 42,
    };
    const server = new modbusSerial.ServerSerial(vector, {
      path: join(pair.url, "unit"),
      baudRate: 19_200,
      unitID: 255,
    });
    server.on("error", () => undefined);
    try {
      const options = modbusDriverFactory.options.parse({
        connection: { transport: "rtu", path: join(pair.url, "bus"), baudRate: 19_200 },
        timeoutMs: 300,
        backoff: { minMs: 100, maxMs: 200 },
        devices: [1, 2, 3].map((unitId) => ({
          deviceId: `tunnel-gas-${unitId}`,
          kind: "utility_tunnel",
          unitId,
          pollIntervalMs: 200,
          registers: [
            { quantity: "ch4", address: 5, scale: 0.1 },
            { quantity: "sumpLevel", function: "input", address: 0 },
          ],
        })),
      });
      const driver = modbusDriverFactory.create(options, { log });
      const { sink, samples } = recordingSink();
      await driver.start(sink);
      try {
        await until(
          () => samples.filter((s) => s.deviceId === "tunnel-gas-2").length >= 3,
          "samples of unit 2",
          10_000,
        );
        await until(() => (driver.stats()["pollFailures"] ?? 0) >= 2, "unit 3 failing", 10_000);
      } finally {
        await driver.stop();
      }
      expect(samples.find((s) => s.deviceId === "tunnel-gas-1")?.values).toEqual({
        ch4: 10.5,
        sumpLevel: 42,
      });
      expect(samples.find((s) => s.deviceId === "tunnel-gas-2")?.values).toEqual({
        ch4: 20.5,
        sumpLevel: 42,
      });
      expect(samples.some((s) => s.deviceId === "tunnel-gas-3")).toBe(false);
      // The port stayed open through unit 3's timeouts.
      expect(driver.stats()).toMatchObject({ connections: 1, devicesFailing: 1 });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
