import { z } from "zod";
import type { BearerAuth } from "../auth/bearer.js";
import type { TaskApiDeps } from "../app.js";

/** What every task plugin is registered with: the task system's API side and the bearer auth. */
export interface TaskPluginOptions {
  readonly deps: TaskApiDeps;
  readonly auth: BearerAuth;
}

/**
 * Every task route needs a bearer token or a signed-in session (the `bearer` and `session`
 * security schemes of the document; either one suffices).
 */
export const security = [{ bearer: [] }, { session: [] }];

export const TaskIdParams = z.object({ id: z.string().describe("task id") });
