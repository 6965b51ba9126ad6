import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import Fastify from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { bearerAuth } from "../../../tasks/auth/bearer.js";
import {
  EvidenceLinkError,
  EvidenceLinks,
  evidenceLinkKeyFile,
  loadLinkSecret,
} from "../../../tasks/evidence-links.js";
import { evidenceDocumentRoutes } from "../../../tasks/http/evidence-document.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { methanePackage, nightNoisePackage } from "./evidence-document-fixtures.js";
import { DEVICES, registry, SITES, startSystem } from "./fixtures.js";

/*
 * Signed links to the printable evidence document (tasks/evidence-links.ts) and their routes
 * (tasks/http/evidence-document.ts): the owner-only secret file, HMAC signatures checked in
 * constant time, expiry, scope to one package, and the routes through the real API app (inject):
 * the document without a token, 403 HTML pages for expired and altered links, the link route
 * behind a bearer token, the security headers, and no signature in an info-level request log.
 */

const T0 = Date.UTC(2026, 11, 5, 14, 40);
const HOUR = 3_600_000;

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("cw-evidence-links-");
});
afterAll(async () => {
  await removeTempDir(dir);
});

describe("link secret file", () => {
  it("is created owner-only on first start, read back the same, never logged", () => {
    const file = evidenceLinkKeyFile(join(dir, "a"));
    mkdirSync(join(dir, "a"));
    const lines: string[] = [];
    const log = pino(
      { level: "info" },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const secret = loadLinkSecret(file, { create: true, log });
    expect(secret).toHaveLength(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8").trim()).toBe(secret.toString("base64url"));
    expect(loadLinkSecret(file, { create: true }).equals(secret)).toBe(true);
    expect(lines.join("")).toContain(file);
    expect(lines.join("")).not.toContain(secret.toString("base64url"));
  });

  it("refuses a file others may read, a malformed one, a directory, and a missing one when not creating", () => {
    const file = join(dir, "shared.key");
    writeFileSync(file, `${Buffer.alloc(32, 7).toString("base64url")}\n`, { mode: 0o644 });
    chmodSync(file, 0o644);
    expect(() => loadLinkSecret(file, { create: true })).toThrow(
      /may be read by others \(mode 0644\); make it owner-only: chmod 600/,
    );
    try {
      loadLinkSecret(file, { create: true });
    } catch (error) {
      expect(error).toBeInstanceOf(EvidenceLinkError);
      expect(String(error)).not.toContain(Buffer.alloc(32, 7).toString("base64url"));
    }
    chmodSync(file, 0o600);
    expect(loadLinkSecret(file, { create: false })).toEqual(Buffer.alloc(32, 7));
    writeFileSync(file, "not a secret\n");
    expect(() => loadLinkSecret(file, { create: true })).toThrow(
      /does not hold a secret \(32 bytes as base64url\); delete it/,
    );
    expect(() => loadLinkSecret(dir, { create: true })).toThrow(/is not a regular file/);
    expect(() => loadLinkSecret(join(dir, "none.key"), { create: false })).toThrow(
      /does not exist/,
    );
  });
});

describe("signed links", () => {
  let now = T0;
  const links = new EvidenceLinks(Buffer.alloc(32, 1), {
    ttlMs: 24 * HOUR,
    baseUrl: "https://cw.example.gov.cn/",
    now: () => now,
  });
  const parts = (url: string) => {
    const u = new URL(url);
    const [, , taskId = "", sequence = ""] = u.pathname.split("/");
    return {
      taskId: decodeURIComponent(taskId),
      sequence: Number(sequence),
      expires: Number(u.searchParams.get("expires")),
      sig: u.searchParams.get("sig") ?? "",
      lang: u.searchParams.get("lang"),
    };
  };

  it("are scoped to one package and expire after the lifetime", () => {
    now = T0;
    const link = links.create("enf-000042", 2);
    expect(link.url).toMatch(
      /^https:\/\/cw\.example\.gov\.cn\/evidence\/enf-000042\/2\?lang=zh-CN&expires=\d+&sig=[A-Za-z0-9_-]{43}$/,
    );
    expect(link.expiresAt).toBe(new Date(T0 + 24 * HOUR).toISOString());
    const p = parts(link.url);
    expect(links.check(p.taskId, p.sequence, p.expires, p.sig)).toEqual({ ok: true });
    // Another package, another task, another expiry: the signature does not cover them.
    expect(links.check(p.taskId, 1, p.expires, p.sig)).toEqual({ ok: false, reason: "invalid" });
    expect(links.check("enf-000043", 2, p.expires, p.sig)).toEqual({
      ok: false,
      reason: "invalid",
    });
    expect(links.check(p.taskId, 2, p.expires + 3600, p.sig)).toEqual({
      ok: false,
      reason: "invalid",
    });
    // One character of the signature changed.
    const flipped = (p.sig[0] === "A" ? "B" : "A") + p.sig.slice(1);
    expect(links.check(p.taskId, 2, p.expires, flipped)).toEqual({ ok: false, reason: "invalid" });
    // The last character with its two unused bits set: the same bytes, another spelling. Each
    // link has one valid spelling (the route test that changed the last character was refused
    // a 403 only when the signature did not end in "A").
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(p.sig.slice(-1));
    expect(last % 4).toBe(0);
    for (const unused of [1, 2, 3]) {
      const respelled = p.sig.slice(0, -1) + alphabet.charAt(last + unused);
      expect(Buffer.from(respelled, "base64url")).toEqual(Buffer.from(p.sig, "base64url"));
      expect(links.check(p.taskId, 2, p.expires, respelled)).toEqual({
        ok: false,
        reason: "invalid",
      });
    }
    // Another deployment's secret.
    const other = new EvidenceLinks(Buffer.alloc(32, 2), {
      ttlMs: 24 * HOUR,
      baseUrl: "x",
      now: () => now,
    });
    expect(other.check(p.taskId, 2, p.expires, p.sig)).toEqual({ ok: false, reason: "invalid" });
    // Just before and at the expiry.
    now = T0 + 24 * HOUR - 1;
    expect(links.check(p.taskId, 2, p.expires, p.sig)).toEqual({ ok: true });
    now = T0 + 24 * HOUR;
    expect(links.check(p.taskId, 2, p.expires, p.sig)).toEqual({ ok: false, reason: "expired" });
  });

  it("refuse an expiry further ahead than the lifetime (a shortened lifetime applies at once)", () => {
    now = T0;
    const long = parts(links.create("enf-000042", 1).url);
    const shorter = new EvidenceLinks(Buffer.alloc(32, 1), {
      ttlMs: HOUR,
      baseUrl: "x",
      now: () => now,
    });
    expect(shorter.check(long.taskId, 1, long.expires, long.sig)).toEqual({
      ok: false,
      reason: "invalid",
    });
  });

  it("do not sign the language: the same link opens in zh-CN or en", () => {
    now = T0;
    const zh = parts(links.create("enf-000042", 2).url);
    const en = parts(links.create("enf-000042", 2, "en").url);
    expect(zh.lang).toBe("zh-CN");
    expect(en.lang).toBe("en");
    expect(en.sig).toBe(zh.sig);
    expect(links.verifyUrl).toBe("https://cw.example.gov.cn/api/v1/evidence/keys");
  });

  it("refuse to make a link for what is no task id or package number", () => {
    expect(() => links.create("a/b", 1)).toThrow(/not a task id/);
    expect(() => links.create("enf-1", 0)).toThrow(/whole number from 1/);
  });
});

describe("signed document routes (real API app, inject)", () => {
  let now = Date.now();
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: ReturnType<typeof testApi>;
  let links: EvidenceLinks;
  let viewer: string;
  const noise = nightNoisePackage();
  const methane = methanePackage();

  beforeAll(async () => {
    const data = join(dir, "api");
    mkdirSync(data);
    system = startSystem(data, { now: Date.now });
    system.store.addEvidence(noise, Date.now());
    system.store.addEvidence(methane, Date.now());
    state = new IngestState(join(data, "ingest.db"));
    store = createSqliteStore(join(data, "timeseries.db"));
    await store.open();
    links = EvidenceLinks.open(evidenceLinkKeyFile(data), {
      ttlMs: HOUR,
      baseUrl: "https://cw.example.gov.cn",
      now: () => now,
    });
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: { ...system.api, evidenceLinks: links },
    });
    viewer = system.tokens.add("viewer-1", "viewer").token;
  });
  afterAll(async () => {
    await app.close();
    await system.stop();
    state.close();
    await store.close();
  });

  const path = (url: string) => url.replace("https://cw.example.gov.cn", "");

  it("issues a link behind a bearer token; the link opens the document without one", async () => {
    now = Date.now();
    expect(
      (await app.inject({ method: "GET", url: `/api/v1/tasks/${noise.taskId}/evidence/link` }))
        .statusCode,
    ).toBe(401);
    const res = await app.inject({
      method: "GET",
      url: `/api/v1/tasks/${noise.taskId}/evidence/link`,
      headers: { authorization: `Bearer ${viewer}` },
    });
    expect(res.statusCode).toBe(200);
    const { url, expiresAt } = res.json<{ url: string; expiresAt: string }>();
    expect(url).toContain(`/evidence/${noise.taskId}/2?lang=zh-CN&expires=`);
    expect(Date.parse(expiresAt) - now).toBeGreaterThan(HOUR - 1_000);
    const page = await app.inject({ method: "GET", url: path(url) });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["cache-control"]).toBe("private, no-store");
    expect(page.headers["content-security-policy"]).toBe(
      "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    );
    expect(page.headers["referrer-policy"]).toBe("no-referrer");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.body).toContain("非现场执法证据");
    expect(page.body).toContain("64.2 dB(A)，超过限值 55 dB(A)");
    expect(page.body).toContain("https://cw.example.gov.cn/api/v1/evidence/keys");
    expect(page.body).not.toContain("sig=");
    // The same link in English.
    const en = await app.inject({ method: "GET", url: path(url).replace("lang=zh-CN", "lang=en") });
    expect(en.statusCode).toBe(200);
    expect(en.body).toContain('<html lang="en">');
  });

  it("links a given package and language; refuses bad queries and unknown packages", async () => {
    now = Date.now();
    const get = (q: string, id = methane.taskId) =>
      app.inject({
        method: "GET",
        url: `/api/v1/tasks/${id}/evidence/link${q}`,
        headers: { authorization: `Bearer ${viewer}` },
      });
    const one = await get("?sequence=1&lang=en");
    expect(one.statusCode).toBe(200);
    expect(one.json<{ url: string }>().url).toContain(`/evidence/${methane.taskId}/1?lang=en&`);
    expect((await get("?sequence=2")).statusCode).toBe(404);
    expect((await get("", "enf-999999")).statusCode).toBe(404);
    const bad = await get("?sequence=0&lang=fr&x=1");
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error: string }>().error).toBe("bad_request");
  });

  it("answers an expired link with a 403 HTML page saying so and how to get a new one", async () => {
    now = Date.now() - 2 * HOUR; // issued two hours ago, lifetime one hour
    const { url } = links.create(noise.taskId, 2);
    now = Date.now();
    const res = await app.inject({ method: "GET", url: path(url) });
    expect(res.statusCode).toBe(403);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["cache-control"]).toBe("private, no-store");
    expect(res.body).toContain("<h1>链接已过期</h1>");
    expect(res.body).toContain("GET /api/v1/tasks/{id}/evidence/link");
    expect(res.body).not.toContain("非现场执法证据");
  });

  it("answers altered, foreign and incomplete links with a 403 HTML page, a missing package with 404", async () => {
    now = Date.now();
    const { url } = links.create(noise.taskId, 2, "en");
    const sig = new URL(url).searchParams.get("sig") ?? "";
    const variants = [
      path(url).replace(`/${noise.taskId}/2`, `/${noise.taskId}/1`), // another package
      path(url).replace(`/${noise.taskId}/`, `/${methane.taskId}/`), // another task
      path(url).replace(sig, `${sig.slice(0, -1)}${sig.endsWith("A") ? "B" : "A"}`),
      path(url).replace(/&sig=[^&]+/, ""),
      path(url).replace(/expires=\d+/, "expires=99999999999"),
      `${path(url)}&extra=1`,
      `${path(url)}&sig=${sig}`, // twice
      `/evidence/${noise.taskId}/x?lang=en&expires=1&sig=${sig}`,
    ];
    for (const v of variants) {
      const res = await app.inject({ method: "GET", url: v });
      expect(res.statusCode, v).toBe(403);
      expect(res.headers["content-type"], v).toBe("text/html; charset=utf-8");
      expect(res.body, v).toContain("<h1>This link is not valid</h1>");
    }
    const missing = links.create("enf-000099", 1);
    const res = await app.inject({ method: "GET", url: path(missing.url) });
    expect(res.statusCode).toBe(404);
    expect(res.body).toContain("链接真实有效，但本服务器没有案件 enf-000099 的第 1 号证据包");
  });

  it("keeps the signed route out of the OpenAPI document and the link route in it", async () => {
    const doc = (await app.inject({ method: "GET", url: "/openapi.json" })).json<{
      paths: Record<string, unknown>;
    }>();
    expect(Object.keys(doc.paths)).toContain("/api/v1/tasks/{id}/evidence/link");
    expect(Object.keys(doc.paths).some((p) => p.startsWith("/evidence/"))).toBe(false);
  });

  it("logs no signature in an info-level request log", async () => {
    const lines: string[] = [];
    const logged = Fastify({
      logger: {
        level: "info",
        stream: { write: (line: string) => void lines.push(line) },
      },
    });
    logged.setValidatorCompiler(validatorCompiler);
    logged.setSerializerCompiler(serializerCompiler);
    await logged.register(evidenceDocumentRoutes, {
      deps: { ...system.api, evidenceLinks: links },
      auth: bearerAuth(system.sharedTokens, { cacheMs: 0, now: Date.now }),
    });
    now = Date.now();
    const { url } = links.create(noise.taskId, 2);
    const res = await logged.inject({ method: "GET", url: path(url) });
    expect(res.statusCode).toBe(200);
    // Another route of the same app is logged, so the log is on.
    await logged.inject({ method: "GET", url: `/api/v1/tasks/${noise.taskId}/evidence/link` });
    await logged.close();
    expect(lines.join("")).toContain("/api/v1/tasks/");
    expect(lines.join("")).not.toContain(new URL(url).searchParams.get("sig") ?? "no sig");
  });

  it("without configured links: the link route answers 503, a link 403", async () => {
    const bare = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [],
      tasks: system.api,
    });
    const res = await bare.inject({
      method: "GET",
      url: `/api/v1/tasks/${noise.taskId}/evidence/link`,
      headers: { authorization: `Bearer ${viewer}` },
    });
    expect(res.statusCode).toBe(503);
    expect(res.json<{ error: string }>().error).toBe("unavailable");
    now = Date.now();
    const page = await bare.inject({ method: "GET", url: path(links.create(noise.taskId, 2).url) });
    expect(page.statusCode).toBe(403);
    await bare.close();
  });
});
