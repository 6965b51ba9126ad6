import { loadavg } from "node:os";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { TaskListResponse } from "../contracts/index.js";
import { openTaskApi } from "../tests/support/task-api.js";
import { fillQueue } from "../tests/unit/tasks/queue-fixture.js";
import { formatCount, formatTable } from "./table.js";

/*
 * `npm run bench -- console`: the console's task queue API (issue #19, goal p95 < 100 ms with
 * 10,000 open tasks). A task store with 10,000 open and 2,000 closed tasks across 4 districts,
 * 16 streets and 80 grid cells (tests/unit/tasks/queue-fixture.ts), the real API (buildApi with
 * the task routes, bearer auth, zod validation) on a real loopback socket, and an HTTP client
 * (fetch, keep-alive) in the same process. Each scenario: warm-up, then requests one after the
 * other (latency: p50/p95/p99), then `CONCURRENCY` clients at once (requests/s). The baseline
 * is GET /healthz on the same server. Figures are printed, never asserted.
 */

const OPEN = 10_000;
const CLOSED = 2_000;
const REQUESTS = 300;
const WARMUP = 30;
const CONCURRENCY = 8;

const quantile = (sorted: readonly number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

export async function run(): Promise<void> {
  const nowMs = Date.now();
  const t = await openTaskApi("cw-bench-console-");
  const { system, app } = t;
  // No SLA tick during the run: the figures are the API's.
  await system.service.stop();
  try {
    // Every 6th task closed: 12,000 tasks, 10,000 open.
    const filled = performance.now();
    const tasks = fillQueue(system.store, OPEN + CLOSED, { nowMs, closedEvery: 6 });
    const open = tasks.filter((t) => t.state !== "closed").length;
    console.log(
      `task store: ${formatCount(tasks.length)} tasks (${formatCount(open)} open) written in ${Math.round(performance.now() - filled)} ms`,
    );
    await app.listen({ host: "127.0.0.1", port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const token = system.tokens.add("bench-console", "command_centre").token;
    const headers = { authorization: `Bearer ${token}` };
    const get = async (path: string) => {
      const res = await fetch(`${base}${path}`, { headers });
      const body = await res.text();
      if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body.slice(0, 200)}`);
      return body;
    };
    const pages = (body: string) => TaskListResponse.parse(JSON.parse(body));

    // The cursor walk: one request per page of 100, following nextCursor to the end.
    const cursors: string[] = [];
    {
      let cursor: string | undefined;
      do {
        cursors.push(cursor ?? "");
        cursor = pages(
          await get(
            `/api/v1/tasks?state=open&limit=100${cursor === undefined ? "" : `&cursor=${cursor}`}`,
          ),
        ).nextCursor;
      } while (cursor !== undefined);
    }
    let walkAt = 0;
    const scenarios: Array<{ name: string; path: () => string }> = [
      { name: "baseline GET /healthz", path: () => "/healthz" },
      { name: "open queue, first page (100)", path: () => "/api/v1/tasks?state=open" },
      {
        name: "district + state page",
        path: () => "/api/v1/tasks?district=wuhou&state=filed,dispatched",
      },
      { name: "search (party name)", path: () => "/api/v1/tasks?q=builders%2012&state=open" },
      { name: "search (task id prefix)", path: () => "/api/v1/tasks?q=enf-1050" },
      { name: "overdue, by SLA due", path: () => "/api/v1/tasks?overdue=true&sort=slaDue" },
      {
        name: `cursor walk (${cursors.length} pages of 100)`,
        path: () => {
          const cursor = cursors[walkAt++ % cursors.length] ?? "";
          return `/api/v1/tasks?state=open&limit=100${cursor === "" ? "" : `&cursor=${cursor}`}`;
        },
      },
      { name: "open queue, 1000 per page", path: () => "/api/v1/tasks?state=open&limit=1000" },
      {
        name: "task detail",
        path: () => `/api/v1/tasks/${tasks[(walkAt++ * 37) % tasks.length]?.id ?? ""}`,
      },
    ];
    const rows: string[][] = [];
    for (const scenario of scenarios) {
      for (let i = 0; i < WARMUP; i++) await get(scenario.path());
      const times: number[] = [];
      let bytes = 0;
      for (let i = 0; i < REQUESTS; i++) {
        const t0 = performance.now();
        bytes += (await get(scenario.path())).length;
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const t0 = performance.now();
      let done = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (done < REQUESTS) {
            done += 1;
            await get(scenario.path());
          }
        }),
      );
      const rps = REQUESTS / ((performance.now() - t0) / 1_000);
      rows.push([
        scenario.name,
        quantile(times, 0.5).toFixed(1),
        quantile(times, 0.95).toFixed(1),
        quantile(times, 0.99).toFixed(1),
        formatCount(rps),
        formatCount(bytes / REQUESTS / 1_024),
      ]);
    }
    console.log(
      formatTable(
        ["scenario", "p50 ms", "p95 ms", "p99 ms", `req/s (${CONCURRENCY} clients)`, "KiB/answer"],
        rows,
      ),
    );
    console.log(
      `${REQUESTS} sequential requests per scenario after ${WARMUP} warm-up (latency), then ${REQUESTS} from ${CONCURRENCY} concurrent clients (req/s); client and server in one process, loopback; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}; goal: p95 < 100 ms for the queue with 10,000 open tasks`,
    );
  } finally {
    await t.close();
  }
}
