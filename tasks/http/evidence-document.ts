import type { FastifyPluginAsync, FastifyReply } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { apiFailure, errorResponses } from "../../contracts/index.js";
import type { TaskApiDeps } from "../app.js";
import { escapeHtml, renderEvidenceDocument } from "../evidence-html.js";
import {
  type EvidenceLinks,
  LinkTaskId,
  SignedLinkParams,
  SignedLinkQuery,
} from "../evidence-links.js";
import { type Language, LANGUAGES, translator } from "../i18n/index.js";
import { security, TaskIdParams, type TaskPluginOptions } from "./options.js";

/*
 * The printable evidence document behind a signed link, and the route that issues such links.
 *
 *   GET /evidence/{taskId}/{sequence}?lang=&expires=&sig=   no token: the signature is the
 *       permission (tasks/evidence-links.ts). 200 the document; 403 an HTML page saying the link
 *       expired or is not valid and how to get a new one; 404 an HTML page for a genuine link to
 *       a package this server does not hold. Not in the OpenAPI document: a browser's page, not
 *       an API (its answers are HTML, not the error catalogue).
 *   GET /api/v1/tasks/{id}/evidence/link?sequence=&lang=   bearer token of a role that reads
 *       tasks: `{ url, expiresAt }` for the newest package or package `sequence`.
 *
 * Every page: `cache-control: private, no-store`, a CSP with no script at all, no referrer (the
 * link's signature must not travel to another site), nosniff. The signed route logs below info
 * (`logLevel: warn`), so a request log at info never holds a link's signature.
 */

declare module "../app.js" {
  interface TaskApiDeps {
    /**
     * Signed links to printable evidence (tasks/evidence-links.ts); absent: the link routes
     * answer that links are not configured.
     */
    readonly evidenceLinks?: EvidenceLinks | undefined;
  }
}

export const DOCUMENT_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "private, no-store",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
} as const;

/** The path of the signed document route. */
export const SIGNED_DOCUMENT_PATH = "/evidence/:taskId/:sequence";

/** A short HTML page for a refused or unanswerable link, in the link's language. */
function messagePage(language: Language, title: string, lines: readonly string[]): string {
  return `<!doctype html>
<html lang="${language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style>body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "SimSun", sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em; line-height: 1.6; } h1 { font-size: 1.4em; }</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${lines.map((l) => `<p>${escapeHtml(l)}</p>`).join("\n")}
</body>
</html>
`;
}

function sendPage(reply: FastifyReply, status: number, html: string) {
  return reply.code(status).headers(DOCUMENT_HEADERS).send(html);
}

/** The language a request asked for, if it is one we have (for the refusal pages too). */
const languageOf = (query: unknown, fallback: Language): Language => {
  const lang = (query as { lang?: unknown } | null)?.lang;
  return LANGUAGES.find((l) => l === lang) ?? fallback;
};

/** The signed document: no token, the link's signature decides. */
const signedDocument: FastifyPluginAsync<{ deps: TaskApiDeps }> = (app, { deps }) => {
  app.get(
    SIGNED_DOCUMENT_PATH,
    { schema: { hide: true }, logLevel: "warn" },
    async (request, reply) => {
      const links = deps.evidenceLinks;
      const fallback = links?.language ?? "zh-CN";
      const language = languageOf(request.query, fallback);
      const t = translator(language);
      const refuse = (reason: "invalid" | "expired", until?: string) =>
        sendPage(
          reply,
          403,
          messagePage(
            language,
            t.t(reason === "expired" ? "link.expiredTitle" : "link.invalidTitle"),
            [
              reason === "expired"
                ? t.t("link.expired", { until: until ?? "" })
                : t.t("link.invalid"),
              t.t("link.renew"),
            ],
          ),
        );
      const params = SignedLinkParams.safeParse(request.params);
      const query = SignedLinkQuery.safeParse(request.query);
      if (links === undefined || !params.success || !query.success) return refuse("invalid");
      const { taskId, sequence } = params.data;
      const { expires, sig } = query.data;
      const check = links.check(taskId, sequence, expires, sig);
      if (!check.ok) {
        const until = new Date(expires * 1000);
        return refuse(check.reason, `${until.toISOString().slice(0, 19).replace("T", " ")} UTC`);
      }
      const pkg = await deps.store.evidence(taskId, sequence);
      if (pkg === undefined) {
        return sendPage(
          reply,
          404,
          messagePage(language, t.t("link.notFoundTitle"), [
            t.t("link.notFound", { taskId, sequence }),
          ]),
        );
      }
      return sendPage(
        reply,
        200,
        renderEvidenceDocument(pkg, {
          language: query.data.lang ?? links.language,
          verifyUrl: links.verifyUrl,
          generatedAt: new Date(deps.now()),
        }),
      );
    },
  );
  return Promise.resolve();
};

const LinkQuery = z.strictObject({
  sequence: z
    .string()
    .regex(/^[1-9]\d{0,8}$/, { error: "must be a whole number from 1" })
    .transform(Number)
    .optional()
    .describe("package number, from 1; default the newest"),
  lang: z
    .enum(LANGUAGES, { error: "lang must be zh-CN or en" })
    .optional()
    .describe("language of the document: zh-CN or en; default configured"),
});

export const EvidenceLinkResponse = z.object({
  url: z.string().describe("the signed link: opens the printable document without a token"),
  expiresAt: z.string().describe("UTC ISO 8601; the link answers 403 from then on"),
});

/** The link-issuing route: a bearer token of a role that reads tasks (its own hook). */
const linkApi: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.reader);
  app.get(
    "/api/v1/tasks/:id/evidence/link",
    {
      schema: {
        tags: ["evidence"],
        summary:
          "A short-lived signed link to the printable document of the task's package (newest, or ?sequence=n)",
        security,
        params: TaskIdParams,
        querystring: LinkQuery,
        response: {
          200: EvidenceLinkResponse,
          ...errorResponses({
            bad_request: "a query parameter is malformed or unknown",
            unauthorized: "no valid bearer token",
            not_found: "no such task, or no evidence package (with that number) for it",
            unavailable: "signed links are not configured on this server",
          }),
        },
      },
    },
    async (request) => {
      const links = deps.evidenceLinks;
      if (links === undefined)
        throw apiFailure("unavailable", "signed evidence links are not configured on this server");
      const { sequence, lang } = request.query;
      const pkg = await deps.store.evidence(request.params.id, sequence);
      if (pkg === undefined) {
        throw apiFailure(
          "not_found",
          `no evidence package${sequence === undefined ? "" : ` ${sequence}`} for task ${request.params.id}`,
        );
      }
      if (!LinkTaskId.safeParse(pkg.taskId).success)
        throw apiFailure("not_found", `task ${pkg.taskId} cannot be linked (its id is unusual)`);
      return links.create(pkg.taskId, pkg.sequence, lang);
    },
  );
  return Promise.resolve();
};

/**
 * The printable document behind signed links, and the task API's link route: two plugins, each
 * with its own hooks (the signed route has none: its signature is its permission).
 */
export const evidenceDocumentRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = async (
  app,
  options,
) => {
  await app.register(signedDocument, { deps: options.deps });
  await app.register(linkApi, options);
};
