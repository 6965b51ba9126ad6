import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApiError,
  decodeTaskCursor,
  encodeTaskCursor,
  type Task,
  TaskListResponse,
} from "../../../contracts/index.js";
import { openTaskApi, type TaskApi } from "../../support/task-api.js";
import { fillQueue, queueParty } from "../../unit/tasks/queue-fixture.js";

/*
 * The console's task queue (issue #19) on the real API over a real SQLite file: every filter,
 * every sort, cursor walks through all pages with no task twice or missing, the caller's scope,
 * and every bad query a 400 naming its field. The expected answers are computed here from the
 * tasks as written, in plain TypeScript, independently of the SQL.
 */

const N = 700;
const PASSWORD = "correct horse battery";

describe("GET /api/v1/tasks: the console's queue", () => {
  let t: TaskApi;
  let tasks: Task[];
  let nowMs: number;
  let admin: string;
  let scoped: string;

  beforeAll(async () => {
    t = await openTaskApi("cw-queue-");
    // No SLA tick: the tasks stay as written (the expectations are computed from them).
    await t.system.service.stop();
    nowMs = Date.now();
    tasks = fillQueue(t.system.store, N, { nowMs, closedEvery: 7 });
    admin = t.system.tokens.add("admin-q", "admin").token;
    await t.system.tokens.users.add(
      {
        id: "officer.q",
        name: "Officer Q",
        roles: ["enforcement"],
        scope: { districts: ["wuhou"], streets: ["jinjiang-s1"], gridCells: ["qingyang-s2-g3"] },
      },
      PASSWORD,
    );
    scoped = t.system.tokens.add("officer-q", "enforcement", "officer.q").token;
  });
  afterAll(async () => {
    await t.close();
  });

  const get = async (query: string, token = admin) => {
    const res = await t.app.inject({
      method: "GET",
      url: `/api/v1/tasks?${query}`,
      headers: { authorization: `Bearer ${token}` },
    });
    return res;
  };
  const list = async (query: string, token = admin) => {
    const res = await get(query, token);
    expect(res.statusCode, res.body).toBe(200);
    return TaskListResponse.parse(res.json());
  };
  /** Every page of a query, following nextCursor; the ids in order. */
  const walk = async (query: string, token = admin, from?: string) => {
    const ids: string[] = [];
    let cursor: string | undefined = from;
    let pages = 0;
    do {
      const page = await list(
        `${query}${cursor === undefined ? "" : `&cursor=${encodeURIComponent(cursor)}`}`,
        token,
      );
      ids.push(...page.tasks.map((x) => x.id));
      cursor = page.nextCursor;
      pages += 1;
      expect(pages).toBeLessThan(N);
    } while (cursor !== undefined);
    return { ids, pages };
  };

  const byFiledDesc = (a: Task, b: Task) =>
    Date.parse(b.filedAt) - Date.parse(a.filedAt) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  const dueOf = (x: Task) =>
    x.state === "closed" || x.sla.handleBy === undefined
      ? Number.MAX_SAFE_INTEGER
      : Date.parse(x.sla.handleBy);
  const idsOf = (xs: Task[]) => xs.map((x) => x.id);
  const open = () => tasks.filter((x) => x.state !== "closed");

  it("pages the open queue newest first with a cursor, every task once", async () => {
    const expected = idsOf(open().sort(byFiledDesc));
    const first = await list("state=open&limit=50");
    expect(idsOf(first.tasks)).toEqual(expected.slice(0, 50));
    expect(first.nextCursor).toBeDefined();
    const { ids, pages } = await walk("state=open&limit=50");
    expect(ids).toEqual(expected);
    expect(new Set(ids).size).toBe(ids.length);
    expect(pages).toBe(Math.ceil(expected.length / 50));
  });

  it("walks every sort through all pages in its order", async () => {
    const all = [...tasks];
    const orders: Record<string, string[]> = {
      "-filedAt": idsOf([...all].sort(byFiledDesc)),
      filedAt: idsOf([...all].sort(byFiledDesc).reverse()),
      slaDue: idsOf(
        [...all].sort((a, b) => dueOf(a) - dueOf(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
      ),
      level: idsOf([...all].sort((a, b) => b.levelIndex - a.levelIndex || byFiledDesc(a, b))),
    };
    for (const [sort, expected] of Object.entries(orders)) {
      const { ids } = await walk(`sort=${encodeURIComponent(sort)}&limit=97`);
      expect(ids, sort).toEqual(expected);
    }
  });

  it("filters by state list, kind, level, district, street, grid, party, overdue", async () => {
    const bySla = (a: Task, b: Task) => dueOf(a) - dueOf(b) || (a.id < b.id ? -1 : 1);
    const check = async (query: string, keep: (x: Task) => boolean) => {
      const { ids } = await walk(`${query}&limit=1000`);
      const expected = idsOf(
        tasks.filter(keep).sort(query.includes("sort=slaDue") ? bySla : byFiledDesc),
      );
      expect(expected.length, query).toBeGreaterThan(0);
      expect(ids, query).toEqual(expected);
    };
    await check("state=filed,dispatched", (x) => x.state === "filed" || x.state === "dispatched");
    await check("state=closed,filed", (x) => x.state === "closed" || x.state === "filed");
    await check("state=open,closed", () => true);
    await check("kind=emergency&state=open", (x) => x.kind === "emergency" && x.state !== "closed");
    await check("level=I,II", (x) => x.level === "I" || x.level === "II");
    await check("level=warning&kind=enforcement", (x) => x.level === "warning");
    await check(
      "district=qingyang&state=open",
      (x) => x.routing.district === "qingyang" && x.state !== "closed",
    );
    await check("street=wuhou-s2", (x) => x.routing.street === "wuhou-s2");
    await check("grid=chenghua-s3-g1", (x) => x.routing.gridCell === "chenghua-s3-g1");
    await check(`party=${queueParty(7).key}`, (x) => x.graduated?.party.key === queueParty(7).key);
    await check("overdue=true", (x) => x.state !== "closed" && dueOf(x) < nowMs);
    await check("overdue=false&state=open", (x) => x.state !== "closed" && dueOf(x) >= nowMs);
    await check(
      "state=open&district=jinjiang&overdue=true&sort=slaDue",
      (x) => x.state !== "closed" && x.routing.district === "jinjiang" && dueOf(x) < nowMs,
    );
  });

  it("searches by task id prefix, party code prefix and party name, case-insensitive", async () => {
    const search = async (q: string) =>
      (await walk(`q=${encodeURIComponent(q)}&limit=1000`)).ids.sort();
    expect(await search("EMG-10000")).toEqual(
      idsOf(tasks.filter((x) => x.id.startsWith("emg-10000"))).sort(),
    );
    expect(await search("enf-100004")).toEqual(["enf-100004"]);
    const code = queueParty(12).key;
    expect(await search(code.toLowerCase())).toEqual(
      idsOf(tasks.filter((x) => x.graduated?.party.key === code)).sort(),
    );
    expect(await search("builders 2")).toEqual(
      idsOf(tasks.filter((x) => /builders 2/i.test(x.graduated?.party.name ?? ""))).sort(),
    );
    expect(await search("蓉城餐饮13号")).toEqual(
      idsOf(tasks.filter((x) => x.graduated?.party.name.includes("蓉城餐饮13号") === true)).sort(),
    );
    // LIKE's wildcards are taken literally.
    expect(await search("%")).toEqual([]);
    expect(await search("enf_1")).toEqual([]);
  });

  it("applies the caller's scope to every page", async () => {
    const inScope = (x: Task) =>
      x.routing.district === "wuhou" ||
      x.routing.street === "jinjiang-s1" ||
      x.routing.gridCell === "qingyang-s2-g3";
    const { ids } = await walk("state=open&limit=33", scoped);
    expect(ids).toEqual(idsOf(open().filter(inScope).sort(byFiledDesc)));
    const { ids: searched } = await walk("q=emg&limit=1000", scoped);
    expect(searched).toEqual(
      idsOf(tasks.filter((x) => inScope(x) && x.id.startsWith("emg")).sort(byFiledDesc)),
    );
    // Out of scope: an empty page, not an error.
    expect((await list("district=chenghua", scoped)).tasks).toEqual([]);
  });

  it("answers a task changed between pages without repeating or losing the others", async () => {
    const first = await list("state=open&limit=40");
    const store = t.system.store;
    // A new task filed meanwhile (newer than the cursor) does not appear later in the walk.
    const newer = {
      ...tasks[0]!,
      id: "enf-199999",
      subject: { type: "device" as const, id: "dev-new" },
      filedAt: new Date(nowMs + 1_000).toISOString(),
    };
    store.saveTask(newer, {});
    try {
      const rest = await walk("state=open&limit=40", admin, first.nextCursor);
      const expected = idsOf(open().sort(byFiledDesc)).slice(40);
      expect(rest.ids).toEqual(expected);
    } finally {
      store.saveTask({ ...newer, state: "closed" }, {});
    }
  });

  it("refuses every bad query with 400 naming the field", async () => {
    const bad = async (query: string, field: string) => {
      const res = await get(query);
      expect(res.statusCode, query).toBe(400);
      const body = ApiError.parse(res.json());
      expect(body.error).toBe("bad_request");
      expect(
        body.problems?.map((p) => p.path),
        query,
      ).toContain(field);
    };
    await bad("state=opened", "state");
    await bad("state=filed,,closed", "state");
    await bad("state=", "state");
    await bad("kind=fire", "kind");
    await bad("level=I%20II", "level");
    await bad("sort=dueAt", "sort");
    await bad("overdue=yes", "overdue");
    await bad("limit=1001", "limit");
    await bad("limit=0", "limit");
    await bad("limit=ten", "limit");
    await bad("q=", "q");
    await bad(`q=${"x".repeat(101)}`, "q");
    await bad("cursor=not-a-cursor", "cursor");
    await bad("cursor=%24%24", "cursor");
    // A cursor of another sort.
    const page = await list("sort=level&limit=5");
    await bad(`sort=slaDue&cursor=${page.nextCursor ?? ""}`, "cursor");
    await bad(`cursor=${page.nextCursor ?? ""}`, "cursor");
    await bad("district=jinjiang&colour=red", "(root)");
    await bad("street=", "street");
    await bad("grid=", "grid");
    await bad("party=", "party");
  });

  it("round-trips cursors and refuses forged ones", () => {
    const cursor = { sort: "level", keys: [3, 1_700_000_000_000], id: "emg-100003" } as const;
    expect(decodeTaskCursor(encodeTaskCursor(cursor))).toEqual(cursor);
    const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    expect(decodeTaskCursor(forged({ s: "level", k: [1], i: "x" }))).toBeUndefined();
    expect(decodeTaskCursor(forged({ s: "-filedAt", k: [1.5], i: "x" }))).toBeUndefined();
    expect(decodeTaskCursor(forged({ s: "-filedAt", k: [1], i: "x y" }))).toBeUndefined();
    expect(decodeTaskCursor(forged({ s: "up", k: [1], i: "x" }))).toBeUndefined();
    expect(decodeTaskCursor(forged([1]))).toBeUndefined();
    expect(decodeTaskCursor("")).toBeUndefined();
  });
});
