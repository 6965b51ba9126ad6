import { spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssessmentReport } from "../../../contracts/model/assessment.js";
import { assessFrom, reportsCsv } from "../../../tasks/assessment.js";
import { calendarOf } from "../../../tasks/calendar/working-time.js";
import { TaskStore } from "../../../tasks/store.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  assessmentConfig,
  buildAssessmentFixture,
  local,
} from "../../unit/tasks/assessment-fixture.js";

/*
 * `citywatch assessment` as an operator runs it (through tsx, a real data directory): the report of
 * the hand-checked fixture (tests/unit/tasks/assessment-fixture.ts) to stdout and to an owner-only
 * file, and clear errors for bad input and a directory without a task store.
 */

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

describe("citywatch assessment", () => {
  let dir: string;
  let dataDir: string;

  beforeAll(async () => {
    dir = await makeTempDir("cw-assessment-cli-");
    dataDir = join(dir, "data");
    const { system } = await buildAssessmentFixture(dataDir);
    await system.stop();
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("writes the CSV report to an owner-only file, as the report computes it", async () => {
    const out = join(dir, "november-team.csv");
    const run = await cli([
      "assessment",
      "--data-dir",
      dataDir,
      "--from",
      "2026-11-01",
      "--to",
      "2026-12-01",
      "--by",
      "team",
      "--format",
      "csv",
      "--out",
      out,
    ]);
    expect(run.stderr).toContain(`written to ${out}`);
    expect(run.status).toBe(0);
    expect(run.stdout).toBe("");
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const config = assessmentConfig();
    const store = new TaskStore(join(dataDir, "tasks.db"));
    try {
      const expected = reportsCsv([
        await assessFrom(
          store,
          { from: "2026-11-01", to: "2026-12-01", by: "team" },
          { sla: config.sla, calendar: calendarOf(config.calendar) },
          local("2026-12-06T08:00:00"),
        ),
      ]);
      expect(readFileSync(out, "utf8")).toBe(expected);
    } finally {
      store.close();
    }
    // The hand-computed totals row (tests/unit/tasks/assessment.test.ts).
    expect(readFileSync(out, "utf8")).toContain(
      "total,team,,8,5,5,5,4,5,1,0.2,4,2,48.27,13.07,2,2026-11-01,2026-12-01,Asia/Shanghai\r\n",
    );
  });

  it("prints the JSON report to stdout", async () => {
    const run = await cli([
      "assessment",
      "--data-dir",
      dataDir,
      "--from",
      "2026-11-01",
      "--to",
      "2026-12-01",
      "--by",
      "district",
    ]);
    expect(run.status).toBe(0);
    const report = AssessmentReport.parse(JSON.parse(run.stdout));
    expect(report.rows.map((r) => [r.group, r.received])).toEqual([
      ["pudong", 5],
      ["xuhui", 3],
    ]);
    expect(report.period.timeZone).toBe("Asia/Shanghai");
  });

  it("refuses bad input and a data directory without a task store, clearly (exit 1)", async () => {
    const bad = await cli([
      "assessment",
      "--data-dir",
      dataDir,
      "--from",
      "2026-12-01",
      "--to",
      "2026-11-01",
      "--by",
      "grid",
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("--by: by must be district, street or team");
    const format = await cli([
      "assessment",
      "--data-dir",
      dataDir,
      "--from",
      "2026-11-01",
      "--to",
      "2026-12-01",
      "--by",
      "team",
      "--format",
      "xlsx",
    ]);
    expect(format.status).toBe(1);
    expect(format.stderr).toContain("--format: format must be json or csv");
    const empty = join(dir, "empty");
    const none = await cli([
      "assessment",
      "--data-dir",
      empty,
      "--from",
      "2026-11-01",
      "--to",
      "2026-12-01",
      "--by",
      "team",
    ]);
    expect(none.status).toBe(1);
    expect(none.stderr).toContain(`no task store at ${join(empty, "tasks.db")}`);
    expect(existsSync(join(empty, "tasks.db"))).toBe(false);
  });
});
