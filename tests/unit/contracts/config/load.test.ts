import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  CITYWATCH_ENV,
  CitywatchConfig,
  ConfigError,
  loadConfig,
} from "../../../../contracts/index.js";

const made: string[] = [];
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function file(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "cw-config-"));
  made.push(dir);
  const path = join(dir, "citywatch.yaml");
  writeFileSync(path, text);
  return path;
}

function problemsOf(load: () => unknown): Array<{ path: string; message: string }> {
  try {
    load();
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration loading", () => {
  it("gives embedded defaults with no file", () => {
    const config = loadConfig(CitywatchConfig);
    expect(config.broker.mqtt.port).toBe(18830);
    expect(config.broker.ws.port).toBe(18832);
    expect(config.http.port).toBe(18080);
    expect(config.broker.persistence).toEqual({ type: "memory" });
    expect(config.broker.limits.maxPacketBytes).toBe(262_144);
    expect(Object.isFrozen(config.broker.limits)).toBe(true);
  });

  it("layers file < environment < flags", () => {
    const path = file(
      "broker:\n  mqtt:\n    port: 2000\n  ws:\n    port: 2001\nhttp:\n  port: 2002\n",
    );
    const config = loadConfig(CitywatchConfig, {
      file: path,
      env: { CITYWATCH_WS_PORT: "3001", CITYWATCH_HTTP_PORT: "3002" },
      envMapping: CITYWATCH_ENV,
      overrides: { http: { port: "4002" } },
    });
    expect(config.broker.mqtt.port).toBe(2000);
    expect(config.broker.ws.port).toBe(3001);
    expect(config.http.port).toBe(4002);
  });

  it("selects Redis persistence from a URL alone", () => {
    const config = loadConfig(CitywatchConfig, {
      env: { CITYWATCH_REDIS_URL: "redis://127.0.0.1:6390" },
      envMapping: CITYWATCH_ENV,
    });
    expect(config.broker.persistence).toEqual({ type: "redis", url: "redis://127.0.0.1:6390" });
  });

  it("lists every problem of a broken file, not just the first", () => {
    const path = file(
      "broker:\n  mqtt:\n    port: 70000\n  tls:\n    certFile: cert.pem\n  limits:\n    maxPacketBytes: -1\n  colour: blue\nlog:\n  level: loud\n",
    );
    const problems = problemsOf(() => loadConfig(CitywatchConfig, { file: path }));
    expect(problems.map((p) => p.path).sort()).toEqual([
      "broker",
      "broker.limits.maxPacketBytes",
      "broker.mqtt.port",
      "broker.tls",
      "log.level",
    ]);
    expect(problems.find((p) => p.path === "broker.tls")?.message).toBe(
      "tls needs both certFile and keyFile, or neither",
    );
    expect(problems.find((p) => p.path === "broker")?.message).toMatch(/colour/);
  });

  it("reports YAML syntax errors with line and column", () => {
    const path = file("broker:\n  mqtt: [unclosed\n");
    const problems = problemsOf(() => loadConfig(CitywatchConfig, { file: path }));
    expect(problems[0]?.path).toMatch(/^line \d+, column \d+$/);
  });

  it("reports duplicate keys, a non-mapping file and a missing file", () => {
    expect(
      problemsOf(() =>
        loadConfig(CitywatchConfig, { file: file("http:\n  port: 1\nhttp:\n  port: 2\n") }),
      )[0]?.message,
    ).toMatch(/unique/i);
    expect(problemsOf(() => loadConfig(CitywatchConfig, { file: file("- a\n- b\n") }))).toEqual([
      { path: "(root)", message: "the file must hold a mapping (key: value)" },
    ]);
    expect(
      problemsOf(() => loadConfig(CitywatchConfig, { file: "/nonexistent/citywatch.yaml" }))[0]
        ?.message,
    ).toMatch(/cannot read/);
  });

  it("rejects a bad environment value by its configuration path", () => {
    const problems = problemsOf(() =>
      loadConfig(CitywatchConfig, {
        env: { CITYWATCH_MQTT_PORT: "eighteen" },
        envMapping: CITYWATCH_ENV,
      }),
    );
    expect(problems).toEqual([{ path: "broker.mqtt.port", message: "must be a port number" }]);
  });
});
