import { readFileSync } from "node:fs";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { EdgeConfig } from "../../../../contracts/index.js";
import { hj212DriverFactory } from "../../../../edge/drivers/hj212-server.js";
import { modbusDriverFactory } from "../../../../edge/drivers/modbus.js";
import { EXAMPLE_HJ212_MAPPING } from "../../../../edge/hj212/mapping-example.js";

/** The example files of docs/edge-drivers.md are complete edge configs that both stages accept. */

const log = pino({ level: "silent" });

function example(name: string): EdgeConfig {
  const text = readFileSync(new URL(`../../../../edge/examples/${name}`, import.meta.url), "utf8");
  const result = EdgeConfig.safeParse(parse(text));
  if (!result.success)
    throw new Error(result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n"));
  return result.data;
}

describe("example configurations", () => {
  it("hj212-dust-noise.yaml: one monitor's MN feeds the dust and the noise device", () => {
    const config = example("hj212-dust-noise.yaml");
    expect(config.drivers).toHaveLength(1);
    const options = hj212DriverFactory.options.parse(config.drivers[0]);
    expect(options.mapping.devices["510104000000000000000001"]?.map((d) => d.deviceId)).toEqual([
      "demo-dust-1",
      "demo-noise-1",
    ]);
    expect(options.dataCns).toEqual(["2051"]);
    const driver = hj212DriverFactory.create(options, { log, devices: config.devices });
    expect(driver.name).toBe("hj212:0.0.0.0:9212");
  });

  it("modbus-tunnel-gas.yaml: two detectors behind one gateway, one request each", () => {
    const config = example("modbus-tunnel-gas.yaml");
    const options = modbusDriverFactory.options.parse(config.drivers[0]);
    expect(options.devices.map((d) => [d.deviceId, d.unitId])).toEqual([
      ["demo-tunnel-s1-gas", 1],
      ["demo-tunnel-s2-gas", 2],
    ]);
    const driver = modbusDriverFactory.create(options, { log, devices: config.devices });
    expect(driver.name).toBe("modbus:tcp:192.168.10.20:502");
  });

  it("the HJ 212 driver takes minute data only unless told otherwise", () => {
    expect(
      hj212DriverFactory.options.parse({ port: 0, mapping: EXAMPLE_HJ212_MAPPING }).dataCns,
    ).toEqual(["2051"]);
  });
});
