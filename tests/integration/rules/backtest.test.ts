import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IngestConfig, StoreConfig } from "../../../contracts/index.js";
import type { BacktestReport } from "../../../contracts/model/backtest.js";
import { IngestState } from "../../../ingest/state.js";
import { createInfluxStore } from "../../../ingest/store/influxdb.js";
import { storeRetention } from "../../../ingest/store/retention.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { provideInfluxDB, type ServiceHandle } from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { startSystem } from "../../unit/tasks/fixtures.js";
import {
  DEVICES,
  FROM,
  loudRule,
  rulesDir,
  SITES,
  TO,
  writeHistory,
  writeRegistry,
} from "./backtest-history.js";

/*
 * `citywatch rules backtest` and POST /api/v1/rules/backtest on real parts: the CLI as a process
 * on a real data directory, the API through the app's own routing (inject), the embedded store on
 * a real SQLite file and InfluxDB on a real influxd. The history (backtest-history.ts): noise-1
 * loud at minutes 60-64 (85 dB), 120-124 (75 dB) and 200-201 (85 dB); noise-2 silent at 90-119.
 */

const influx = await requireService("rules: backtest on InfluxDB", provideInfluxDB);
afterAll(async () => {
  await influx?.stop();
});

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const MINUTE = 60_000;
const at = (minute: number) => new Date(FROM + minute * MINUTE).toISOString();
const iso = (ms: number) => new Date(ms).toISOString();

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `citywatch …` as a process, as the README runs it. */
function runCli(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/** The store of one suite: how to open it, and the CLI flags that select it. */
interface StoreUnderTest {
  readonly open: () => Promise<TimeSeriesStore>;
  readonly flags: readonly string[];
  readonly config: StoreConfig;
  readonly dispose: () => Promise<void>;
}

interface Suite {
  dir: string;
  store: TimeSeriesStore;
  system: TaskSystem;
  state: IngestState;
  app: FastifyInstance;
  admin: string;
  viewer: string;
  r80: string;
  r70: string;
  broken: string;
}

/** The cases of local.noise.loud in a run, as [raisedAt, clearedAt]. */
function loudCases(run: BacktestReport["run"]): Array<[string, string | null]> {
  const rule = run.byRule.find((r) => r.id === "local.noise.loud");
  return (rule?.subjects ?? []).flatMap((s) =>
    s.cases.map((c) => [c.raisedAt, c.clearedAt] as [string, string | null]),
  );
}

function backtestSuite(name: string, storeUnderTest: (dataDir: string) => StoreUnderTest) {
  const s = {} as Suite;
  let under: StoreUnderTest;
  const cli = (args: readonly string[]) =>
    runCli(["rules", "backtest", "--data-dir", s.dir, ...under.flags, ...args]);
  const range = ["--from", iso(FROM), "--to", iso(TO)];
  const post = (body: unknown, token = s.admin) =>
    s.app.inject({
      method: "POST",
      url: "/api/v1/rules/backtest",
      headers: { authorization: `Bearer ${token}` },
      payload: body as Record<string, unknown>,
    });
  const inline = (text: string) => ({
    files: [{ name: "loud.yaml", text }],
    defaultPack: false,
  });

  beforeAll(async () => {
    s.dir = await makeTempDir("cw-backtest-");
    under = storeUnderTest(s.dir);
    writeRegistry(s.dir);
    s.store = await under.open();
    await writeHistory(s.store);
    s.r80 = rulesDir(s.dir, "rules-80", { "loud.yaml": loudRule(80) });
    s.r70 = rulesDir(s.dir, "rules-70", { "loud.yaml": loudRule(70, 2) });
    s.broken = rulesDir(s.dir, "rules-broken", {
      "loud.yaml": loudRule(80).replace('op: ">"', "op: bigger"),
    });
    s.system = startSystem(join(s.dir, "tasks"), { now: Date.now });
    s.admin = s.system.tokens.add("backtester", "admin").token;
    s.viewer = s.system.tokens.add("reader", "viewer").token;
    s.state = new IngestState(join(s.dir, "ingest.db"));
    s.app = testApi({
      registry: {
        devices: () => DEVICES,
        sites: () => SITES,
        device: (id) => DEVICES.find((d) => d.id === id),
        site: (id) => SITES.find((x) => x.id === id),
      },
      state: s.state,
      store: s.store,
      metrics: [s.system.metrics.registry],
      tasks: s.system.api,
      backtest: {
        rules: IngestConfig.parse({}).rules,
        retention: () => storeRetention(under.config),
      },
    });
    await s.app.ready();
  });

  afterAll(async () => {
    await s.app?.close();
    await s.system?.stop();
    s.state?.close();
    await s.store?.close();
    await under?.dispose();
    await removeTempDir(s.dir);
  });

  describe(`backtest on the ${name} store`, () => {
    it("CLI: what a rule would have raised and cleared, per subject, with the evidence summary", async () => {
      const run = await cli([...range, "--rules", s.r80, "--rule", "local.noise.loud", "--json"]);
      expect(run.stderr).not.toMatch(/Error|cannot/);
      expect(run.status).toBe(0);
      const report = JSON.parse(run.stdout) as BacktestReport;
      expect(report.data).toMatchObject({ devices: 3, readings: 1_050 });
      expect(report.run.ruleCount).toBe(1);
      expect(loudCases(report.run)).toEqual([
        [at(60), at(65)],
        [at(200), at(202)],
      ]);
      const [rule] = report.run.byRule;
      expect(rule).toMatchObject({ id: "local.noise.loud", raised: 2, cleared: 2, openAtEnd: 0 });
      expect(rule?.subjects.map((x) => `${x.type}:${x.id}`)).toEqual(["device:noise-1"]);
      expect(rule?.subjects[0]?.cases[0]?.evidence).toMatchObject({
        value: 85,
        limit: 80,
        readings: 1,
        windowEnd: at(60),
      });
      expect(report.compare).toBeNull();
      expect(report.diff).toBeNull();
    });

    it("CLI: the difference two rule sets make, per rule, in JSON and in words", async () => {
      const json = await cli([
        ...range,
        "--rules",
        s.r70,
        "--compare",
        s.r80,
        "--rule",
        "local.noise.loud",
        "--json",
      ]);
      expect(json.status).toBe(0);
      const report = JSON.parse(json.stdout) as BacktestReport;
      expect(loudCases(report.run)).toHaveLength(3);
      expect(report.diff).toMatchObject({ more: 1, fewer: 0 });
      expect(report.diff?.summary).toBe("this change would have raised 1 more case");
      expect(report.diff?.byRule).toEqual([
        expect.objectContaining({
          ruleId: "local.noise.loud",
          more: 1,
          fewer: 0,
          same: 2,
          added: [{ subject: "device:noise-1", raisedAt: at(120), clearedAt: at(125) }],
          removed: [],
        }),
      ]);
      // The other way round, as a person reads it.
      const text = await cli([
        ...range,
        "--rules",
        s.r80,
        "--compare",
        s.r70,
        "--rule",
        "local.noise.loud",
      ]);
      expect(text.status).toBe(0);
      expect(text.stdout).toContain("this change would have raised 1 fewer case");
      expect(text.stdout).toMatch(/local\.noise\.loud\s+3\s+2\s+\+0\s+-1\s+2/);
      expect(text.stdout).toContain(`device:noise-1  raised ${at(60).slice(0, 16)}Z`);
      expect(text.stderr).toMatch(/\d+%/); // progress on stderr
    });

    it("API (admin): inline rule files compared, the same answer as the CLI; other roles refused", async () => {
      const response = await post({
        from: iso(FROM),
        to: TO,
        ruleIds: ["local.noise.loud"],
        rules: inline(loudRule(70, 2)),
        compare: inline(loudRule(80)),
      });
      expect(response.statusCode).toBe(200);
      const report = response.json<BacktestReport>();
      expect(loudCases(report.run)).toEqual([
        [at(60), at(65)],
        [at(120), at(125)],
        [at(200), at(202)],
      ]);
      expect(report.diff?.summary).toBe("this change would have raised 1 more case");
      expect(report.run.rules).toBe("1 inline file");

      const viewer = await post({ from: FROM, to: TO }, s.viewer);
      expect(viewer.statusCode).toBe(403);
      expect(viewer.json()).toMatchObject({ error: "forbidden" });
      const none = await s.app.inject({
        method: "POST",
        url: "/api/v1/rules/backtest",
        payload: { from: FROM, to: TO },
      });
      expect(none.statusCode).toBe(401);
    });

    it("the default pack through the API: a silent device's deadman, scoped to a site and to a device", async () => {
      const site = await post({ from: FROM, to: TO, site: "amb-1", ruleIds: ["device.deadman"] });
      expect(site.statusCode).toBe(200);
      const report = site.json<BacktestReport>();
      expect(report.data.devices).toBe(1);
      const [deadman] = report.run.byRule;
      expect(deadman?.id).toBe("device.deadman");
      expect(deadman?.subjects.map((x) => x.id)).toEqual(["noise-2"]);
      const [silence] = deadman?.subjects[0]?.cases ?? [];
      // Silent from minute 90 (last reading at 89); more than 3 minutes later, on a 5-s tick.
      const raised = Date.parse(silence?.raisedAt ?? "");
      expect(raised).toBeGreaterThan(FROM + 92 * MINUTE);
      expect(raised).toBeLessThanOrEqual(FROM + 92 * MINUTE + 5_000);
      expect(silence?.clearedAt).toBe(at(120));

      const device = await post({ from: FROM, to: TO, device: "noise-1" });
      expect(device.statusCode).toBe(200);
      const scoped = device.json<BacktestReport>();
      const subjects = scoped.run.byRule.flatMap((r) => r.subjects.map((x) => `${x.type}:${x.id}`));
      expect(subjects.length).toBeGreaterThan(0);
      for (const subject of subjects) expect(["device:noise-1", "site:cs-1"]).toContain(subject);
      expect(scoped.data.devices).toBe(2); // the device's site: noise-1 and dust-1
    });

    it("CLI: each bad input named by its flag, several at once, exit 1, nothing filed", async () => {
      const future = iso(Date.now() + 3_600_000);
      const cases: Array<[string[], RegExp[]]> = [
        [["--rule", "nope.rule"], [/--rule: no rule nope\.rule in the rules/]],
        [
          ["--site", "nowhere", "--rule", "nope.rule"],
          [/--site: no site nowhere in the registry/, /--rule: no rule nope\.rule/],
        ],
        [["--device", "ghost"], [/--device: no device ghost in the registry/]],
        [["--device", "noise-off"], [/--device: device noise-off is disabled/]],
        [["--from", iso(TO), "--to", iso(FROM)], [/--to: to \(.*\) must be after from/]],
        [["--to", future], [/--to: to \(.*\) is in the future/]],
        [
          ["--from", "yesterday"],
          [/--from <time>.*cannot read "yesterday": give an RFC 3339 time/],
        ],
        [
          ["--rules", s.broken],
          [/--rules: rules: 1 problem/, /rules-broken\/loud\.yaml: rules\.0\.condition/],
        ],
        [["--rules", join(s.dir, "no-such-dir")], [/--rules: [\s\S]*cannot read .*no-such-dir/]],
      ];
      const runs = await Promise.all(
        cases.map(([flags]) => {
          const args = [...range, "--rules", s.r80, ...flags];
          return cli(args);
        }),
      );
      runs.forEach((run, i) => {
        const [flags, patterns] = cases[i] as [string[], RegExp[]];
        expect(run.status, flags.join(" ")).toBe(1);
        for (const pattern of patterns) expect(run.stderr, flags.join(" ")).toMatch(pattern);
        expect(run.stdout, flags.join(" ")).toBe("");
      });
      expect(s.system.store.listTasks({ limit: 10 })).toEqual([]);
    }, 120_000);

    it("API: each bad input a 400 naming its field", async () => {
      const bad = async (body: Record<string, unknown>, path: string, message: RegExp) => {
        const response = await post({ from: FROM, to: TO, ...body });
        expect(response.statusCode, JSON.stringify(body)).toBe(400);
        const error = response.json<{
          error: string;
          problems: Array<{ path: string; message: string }>;
        }>();
        expect(error.error).toBe("bad_request");
        expect(error.problems, JSON.stringify(body)).toContainEqual({
          path,
          message: expect.stringMatching(message) as unknown,
        });
      };
      await bad({ ruleIds: ["nope.rule"] }, "ruleIds", /no rule nope\.rule/);
      await bad({ site: "nowhere" }, "site", /no site nowhere/);
      await bad({ device: "ghost" }, "device", /no device ghost/);
      await bad({ device: "noise-off" }, "device", /disabled/);
      await bad({ site: "cs-1", device: "noise-1" }, "device", /site or device, not both/);
      await bad({ from: TO, to: FROM }, "to", /must be after from/);
      await bad({ to: Date.now() + 3_600_000 }, "to", /in the future/);
      await bad({ from: TO - 8 * 86_400_000 }, "to", /at most 7 days/);
      await bad({ from: "yesterday" }, "from", /RFC 3339/);
      await bad({ tick: "fast" }, "tick", /duration/);
      await bad({ colour: "red" }, "(root)", /colour/);
      await bad(
        { rules: inline(loudRule(80).replace('op: ">"', "op: bigger")) },
        "rules",
        /do not load: rules\/loud\.yaml: rules\.0\.condition/,
      );
      await bad(
        { rules: { files: [{ name: "../escape.yaml", text: "rules: []" }] } },
        "rules.files.0.name",
        /plain file name/,
      );
    });
  });
}

backtestSuite("embedded SQLite", (dataDir) => ({
  // The store the data directory's configuration names: {dataDir}/timeseries.db.
  open: () => Promise.resolve(createSqliteStore(join(dataDir, "timeseries.db"))),
  flags: [],
  config: StoreConfig.parse({ type: "sqlite" }),
  dispose: () => Promise.resolve(),
}));

// describe.runIf does not narrow the type inside the suite.
function present(service: ServiceHandle | undefined): ServiceHandle {
  if (service === undefined) throw new Error("suite ran without its service");
  return service;
}

/** InfluxQL straight to influxd. */
async function influxQL(url: string, q: string): Promise<void> {
  const response = await fetch(`${url}/query`, {
    method: "POST",
    body: new URLSearchParams({ q }),
  });
  const body = (await response.json()) as { results?: Array<{ error?: string }> };
  const error = body.results?.[0]?.error;
  if (error !== undefined) throw new Error(error);
}

describe.runIf(influx)("rules backtest on a real influxd (v1 API)", () => {
  const database = `cw_bt_${randomUUID().slice(0, 8)}`;
  const influxStore = (url: string, db: string) =>
    createInfluxStore(
      {
        url,
        api: "v1",
        v1: { database: db },
        timeoutMs: 10_000,
        maxRetries: 2,
        initialBackoffMs: 5,
        maxBackoffMs: 20,
      },
      { log: pino({ level: "silent" }) },
    );
  backtestSuite("InfluxDB", () => {
    const url = present(influx).url;
    return {
      open: async () => {
        const store = influxStore(url, database);
        await store.open();
        return store;
      },
      flags: ["--store", "influxdb", "--influxdb-url", url, "--influxdb-database", database],
      config: StoreConfig.parse({ type: "influxdb", url, database }),
      dispose: () => influxQL(url, `DROP DATABASE "${database}"`),
    };
  });

  describe("a range the store no longer keeps", () => {
    const short = `cw_bt_short_${randomUUID().slice(0, 8)}`;
    let dir: string;
    beforeAll(async () => {
      dir = await makeTempDir("cw-backtest-retention-");
      writeRegistry(dir);
      // The shortest policy InfluxDB allows; the history is a day old.
      await influxQL(present(influx).url, `CREATE DATABASE "${short}" WITH DURATION 1h`);
    });
    afterAll(async () => {
      await influxQL(present(influx).url, `DROP DATABASE "${short}"`);
      await removeTempDir(dir);
    });

    it("CLI and the store's own words: the policy and what it keeps", async () => {
      const url = present(influx).url;
      const config = StoreConfig.parse({ type: "influxdb", url, database: short });
      await expect(storeRetention(config)).resolves.toMatchObject({
        ms: 3_600_000,
        description: `InfluxDB retention policy "autogen" on database "${short}" keeps 1h0m0s`,
      });
      const rules = rulesDir(dir, "rules-80", { "loud.yaml": loudRule(80) });
      const backtestOn = (db: string) =>
        runCli([
          "rules",
          "backtest",
          "--data-dir",
          dir,
          "--store",
          "influxdb",
          "--influxdb-url",
          url,
          "--influxdb-database",
          db,
          "--rules",
          rules,
          "--from",
          iso(FROM),
          "--to",
          iso(TO),
        ]);
      const run = await backtestOn(short);
      expect(run.status).toBe(1);
      expect(run.stderr).toMatch(
        /--from: from \(.*\) is before what the store keeps: InfluxDB retention policy "autogen" on database "cw_bt_short_\w+" keeps 1h0m0s, nothing before .* remains/,
      );
      // A database that does not exist is named, not created.
      const missing = await backtestOn("no_such_db");
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(
        /the store cannot answer: InfluxDB: database not found: no_such_db/,
      );
    });
  });
});
