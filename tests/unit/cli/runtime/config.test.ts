import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { loadCitywatchConfig } from "../../../../cli/runtime/config.js";
import { createLogger } from "../../../../cli/runtime/logger.js";
import { duplicateKeys } from "../../../support/json-keys.js";

const dir = mkdtempSync(join(tmpdir(), "cw-flags-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("run flags", () => {
  it("set the ingest's broker: file < environment < flags", () => {
    const file = join(dir, "c.yaml");
    writeFileSync(file, "ingest:\n  mqtt:\n    url: mqtt://file:1\n    clientId: from-file\n");
    expect(loadCitywatchConfig({ config: file }, {}).ingest.mqtt.url).toBe("mqtt://file:1");
    const env = { CITYWATCH_INGEST_MQTT_URL: "mqtt://env:2", CITYWATCH_INGEST_MQTT_PASSWORD: "e" };
    expect(loadCitywatchConfig({ config: file }, env).ingest.mqtt).toMatchObject({
      url: "mqtt://env:2",
      password: "e",
      clientId: "from-file",
    });
    const secretFile = join(dir, "secret");
    writeFileSync(secretFile, "s3cret\n");
    const config = loadCitywatchConfig(
      {
        config: file,
        brokerUrl: "mqtts://flag:3",
        brokerPasswordFile: secretFile,
        httpHost: "0.0.0.0",
      },
      env,
    );
    expect(config.ingest.mqtt).toMatchObject({ url: "mqtts://flag:3", password: "s3cret" });
    expect(config.http.host).toBe("0.0.0.0");
  });

  it("name an unreadable password file and a bad URL", () => {
    expect(() => loadCitywatchConfig({ brokerPasswordFile: join(dir, "missing") }, {})).toThrow(
      /--broker-password-file: cannot read/,
    );
    expect(() => loadCitywatchConfig({ brokerUrl: "http://x" }, {})).toThrow(/ingest\.mqtt\.url/);
  });
});

describe("log lines", () => {
  it("carry each key once, the call's own value winning", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(
          ...chunk
            .toString()
            .split("\n")
            .filter((l) => l !== ""),
        );
        done();
      },
    });
    const log = createLogger({ level: "info", pretty: false }, sink);
    log.child({ module: "edge" }).child({ module: "local-alarm" }).info({ module: "x" }, "one");
    log.child({ module: "sim", scenario: "demo" }).info({ scenario: "demo", n: 1 }, "two");
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(duplicateKeys(line)).toEqual([]);
    expect(JSON.parse(lines[0] ?? "")).toMatchObject({ module: "x", msg: "one" });
    expect(duplicateKeys('{"a":1,"b":{"c":1,"c":2},"a":3}')).toEqual(["b.c", "a"]);
  });
});
