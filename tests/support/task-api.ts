import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import type { ApiDeps } from "../../cli/runtime/api.js";
import { IngestState } from "../../ingest/state.js";
import { createSqliteStore } from "../../ingest/store/sqlite.js";
import type { TaskSystem } from "../../tasks/app.js";
import { DEVICES, registry, SITES, startSystem } from "../unit/tasks/fixtures.js";
import { testApi } from "./ingest.js";
import { makeTempDir, removeTempDir } from "./process.js";

/** The task system of the task fixtures' small city behind the real API app, in a temp dir. */
export interface TaskApi {
  readonly system: TaskSystem;
  readonly app: FastifyInstance;
  /** Close the app, the task system and the stores, and remove the directory. */
  close(): Promise<void>;
}

/**
 * Start it: the task system on the wall clock, an ingest state and an SQLite store (the readings
 * routes need them) and the app, driven through inject.
 */
export async function openTaskApi(
  prefix: string,
  extra: Pick<Partial<ApiDeps>, "trustProxy"> = {},
): Promise<TaskApi> {
  const dir = await makeTempDir(prefix);
  const system = startSystem(dir, { now: Date.now });
  const state = new IngestState(join(dir, "ingest.db"));
  const store = createSqliteStore(join(dir, "timeseries.db"));
  await store.open();
  const app = testApi({
    registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
    state,
    store,
    metrics: [system.metrics.registry],
    tasks: system.api,
    ...extra,
  });
  return {
    system,
    app,
    async close() {
      await app.close();
      await system.stop();
      state.close();
      await store.close();
      await removeTempDir(dir);
    },
  };
}
