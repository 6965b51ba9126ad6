import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TaskStore } from "../../../tasks/store.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { fillQueue } from "./queue-fixture.js";

/*
 * The task store's side columns of the queue on a real SQLite file: rows stored before they
 * existed (empty columns, cols_v 0) are filled from their JSON at open, once; the queue's plans
 * use the indexes, not a scan of the JSON.
 */
describe("task store: the queue's side columns", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir("cw-queue-store-");
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it("fills the columns of rows written before them from their JSON, once", () => {
    const file = join(dir, "tasks.db");
    const nowMs = Date.parse("2026-12-06T08:00:00Z");
    let store = new TaskStore(file);
    const tasks = fillQueue(store, 2_500, { nowMs, closedEvery: 5 });
    const expected = (q: Parameters<TaskStore["queryTasks"]>[0]) =>
      store.queryTasks(q).tasks.map((t) => t.id);
    const queries = [
      { limit: 1000, street: "wuhou-s1" },
      { limit: 1000, gridCell: "jinjiang-s2-g3", state: "open" as const },
      { limit: 1000, levels: ["I"], sort: "level" as const },
      { limit: 1000, overdue: true, nowMs, sort: "slaDue" as const },
      { limit: 1000, search: "蓉城餐饮1" },
    ];
    const before = queries.map(expected);
    expect(before.every((ids) => ids.length > 0)).toBe(true);
    store.close();
    // As an older version left them: the columns empty.
    const raw = new Database(file);
    raw
      .prepare(
        "UPDATE task SET street = NULL, grid_cell = NULL, level = NULL, level_index = 0, sla_due_ms = NULL, party_name = NULL, cols_v = 0",
      )
      .run();
    raw.close();
    store = new TaskStore(file);
    expect(queries.map(expected)).toEqual(before);
    const check = new Database(file, { readonly: true });
    expect(check.prepare("SELECT count(*) AS n FROM task WHERE cols_v = 0").get()).toEqual({
      n: 0,
    });
    const plan = check
      .prepare(
        "EXPLAIN QUERY PLAN SELECT id FROM task WHERE open = 1 ORDER BY filed_ms DESC, id DESC LIMIT 100",
      )
      .all() as Array<{ detail: string }>;
    expect(plan.map((p) => p.detail).join("; ")).toContain("task_open_filed");
    check.close();
    expect(store.queryTasks({ limit: 5000 }).tasks).toHaveLength(tasks.length);
    store.close();
  });
});
