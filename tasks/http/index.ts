import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { attachmentRoutes } from "./attachments.js";
import { evidenceRoutes } from "./evidence.js";
import { evidenceDocumentRoutes } from "./evidence-document.js";
import { noticeRoutes } from "./notices.js";
import type { TaskPluginOptions } from "./options.js";
import { streamRoutes } from "./stream.js";
import { taskRoutes } from "./tasks.js";

export type { TaskPluginOptions } from "./options.js";
export { evidenceRoutes, streamRoutes, taskRoutes };

/**
 * The task API under /api/v1: tasks, evidence and the live stream, each its own plugin with its
 * own auth hook. Every query and body is validated by its zod schema in contracts/model/tasks.ts.
 */
export const taskApi: FastifyPluginAsyncZod<TaskPluginOptions> = async (app, options) => {
  await app.register(taskRoutes, options);
  await app.register(evidenceRoutes, options);
  await app.register(evidenceDocumentRoutes, options);
  await app.register(streamRoutes, options);
  await app.register(noticeRoutes, options);
  await app.register(attachmentRoutes, options);
};
