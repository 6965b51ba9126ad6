import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApiError,
  AttachmentListResponse,
  EvidencePackageV2,
  AttachmentResponse,
  TaskDetailResponse,
} from "../../../contracts/index.js";
import { metricValue } from "../../../infra/metrics.js";
import { detectAttachmentType } from "../../../tasks/attachments.js";
import { openTaskApi, type TaskApi } from "../../support/task-api.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { noiseEvidence, noiseNotice, raise } from "../../unit/tasks/fixtures.js";

/*
 * Attachments on the real API and a real data directory: files written to disk here, uploaded as
 * the raw body, stored owner-only under their SHA-256, the hash in the audit trail, listed and
 * downloaded with their type; every refusal (type, size, role, scope, name) with its code.
 */

/** A 1×1 PNG. */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64",
);
const JPEG = Buffer.concat([
  Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]),
  Buffer.from("JFIF\0field photo"),
  Buffer.from([0xff, 0xd9]),
]);
const PDF = Buffer.from("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n");
const WEBP = Buffer.concat([
  Buffer.from("RIFF"),
  Buffer.from([26, 0, 0, 0]),
  Buffer.from("WEBPVP8 "),
]);
const HEIC = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from("ftypheic\0\0\0\0mif1heic")]);
const GIF = Buffer.from("GIF89a\x01\x00\x01\x00");

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("task attachments", () => {
  let t: TaskApi;
  let dir: string;
  let taskId: string;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    t = await openTaskApi("cw-attach-");
    dir = await makeTempDir("cw-attach-files-");
    const now = Date.now();
    await t.system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    taskId = t.system.store.listTasks({ limit: 1, kind: "enforcement" })[0]?.id ?? "";
    expect(taskId).not.toBe("");
    tokens["enf"] = t.system.tokens.add("enf-1", "enforcement").token;
    tokens["emg"] = t.system.tokens.add("emg-1", "emergency").token;
    tokens["viewer"] = t.system.tokens.add("viewer-1", "viewer").token;
    await t.system.tokens.users.add(
      {
        id: "far.away",
        name: "Far Away",
        roles: ["enforcement"],
        scope: { districts: ["nowhere"] },
      },
      "correct horse battery",
    );
    tokens["far"] = t.system.tokens.add("far-1", "enforcement", "far.away").token;
  });
  afterAll(async () => {
    await t.close();
    await removeTempDir(dir);
  });

  /** Write the bytes to a real file, read them back and upload them. */
  const upload = async (
    bytes: Buffer,
    options: {
      type?: string;
      filename?: string;
      token?: string | undefined;
      id?: string;
    } = {},
  ) => {
    const file = join(dir, "upload.bin");
    await writeFile(file, bytes);
    return t.app.inject({
      method: "POST",
      url: `/api/v1/tasks/${options.id ?? taskId}/attachments${options.filename === undefined ? "?filename=photo.png" : options.filename}`,
      headers: {
        authorization: `Bearer ${options.token ?? tokens["enf"] ?? ""}`,
        "content-type": options.type ?? "image/png",
      },
      payload: await readFile(file),
    });
  };
  const get = (url: string, token = tokens["enf"] ?? "") =>
    t.app.inject({ method: "GET", url, headers: { authorization: `Bearer ${token}` } });
  const refused = (
    res: { statusCode: number; json: () => unknown },
    status: number,
    code: string,
  ) => {
    expect(res.statusCode).toBe(status);
    expect(ApiError.parse(res.json()).error).toBe(code);
  };

  it("tells the types by their first bytes", () => {
    expect(detectAttachmentType(PNG)).toBe("image/png");
    expect(detectAttachmentType(JPEG)).toBe("image/jpeg");
    expect(detectAttachmentType(PDF)).toBe("application/pdf");
    expect(detectAttachmentType(WEBP)).toBe("image/webp");
    expect(detectAttachmentType(HEIC)).toBe("image/heic");
    expect(detectAttachmentType(GIF)).toBeUndefined();
    expect(detectAttachmentType(Buffer.alloc(0))).toBeUndefined();
  });

  it("stores an upload owner-only under its SHA-256 and records the hash in the audit trail", async () => {
    const res = await upload(PNG, {
      filename: `?filename=${encodeURIComponent("现场照片 1.png")}`,
    });
    expect(res.statusCode, res.body).toBe(201);
    const { attachment } = AttachmentResponse.parse(res.json());
    expect(attachment).toMatchObject({
      taskId,
      sha256: sha(PNG),
      filename: "现场照片 1.png",
      type: "image/png",
      size: PNG.length,
    });
    expect(attachment.by).toContain("enf-1");
    const root = join(t.system.store.file, "..", "attachments");
    const path = join(root, sha(PNG).slice(0, 2), sha(PNG));
    expect(await readFile(path)).toEqual(PNG);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(root)).mode & 0o777).toBe(0o700);
    expect((await stat(join(root, sha(PNG).slice(0, 2)))).mode & 0o777).toBe(0o700);
    const detail = TaskDetailResponse.parse((await get(`/api/v1/tasks/${taskId}`)).json());
    const entry = detail.audit.find((e) => e.action === "attachment_added");
    expect(entry?.detail).toContain(sha(PNG));
    expect(entry?.detail).toContain("现场照片 1.png");
    expect(entry?.actor).toContain("enf-1");
  });

  it("takes JPEG, PDF, WebP and HEIC; octet-stream is judged by the bytes", async () => {
    expect(
      (await upload(JPEG, { type: "image/jpeg", filename: "?filename=a.jpg" })).statusCode,
    ).toBe(201);
    expect(
      (await upload(PDF, { type: "application/octet-stream", filename: "?filename=notice.pdf" }))
        .statusCode,
    ).toBe(201);
    expect(
      (await upload(WEBP, { type: "image/webp", filename: "?filename=w.webp" })).statusCode,
    ).toBe(201);
    expect(
      (await upload(HEIC, { type: "image/heif", filename: "?filename=h.heic" })).statusCode,
    ).toBe(201);
    const list = AttachmentListResponse.parse(
      (await get(`/api/v1/tasks/${taskId}/attachments`)).json(),
    );
    expect(list.attachments.map((a) => a.type)).toEqual([
      "image/png",
      "image/jpeg",
      "application/pdf",
      "image/webp",
      "image/heic",
    ]);
    // Any reader lists.
    expect((await get(`/api/v1/tasks/${taskId}/attachments`, tokens["viewer"])).statusCode).toBe(
      200,
    );
  });

  it("downloads with its type, as an attachment, nosniff", async () => {
    const res = await get(`/api/v1/tasks/${taskId}/attachments/${sha(PDF)}`, tokens["viewer"]);
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload).toEqual(PDF);
    expect(res.headers["content-type"]).toBe("application/pdf");
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["content-disposition"]).toBe(
      `attachment; filename="notice.pdf"; filename*=UTF-8''notice.pdf`,
    );
    const png = await get(`/api/v1/tasks/${taskId}/attachments/${sha(PNG)}`);
    expect(png.headers["content-disposition"]).toContain(
      `filename*=UTF-8''${encodeURIComponent("现场照片 1.png")}`,
    );
    refused(await get(`/api/v1/tasks/${taskId}/attachments/${sha(GIF)}`), 404, "not_found");
    refused(await get(`/api/v1/tasks/${taskId}/attachments/ABC`), 400, "bad_request");
    refused(await get(`/api/v1/tasks/enf-999999/attachments`), 404, "not_found");
  });

  it("refuses other types, a false Content-Type, too large, no name, a second copy", async () => {
    refused(await upload(GIF, { type: "application/octet-stream" }), 415, "unsupported_media_type");
    refused(
      await upload(Buffer.from("hello"), { type: "text/plain" }),
      415,
      "unsupported_media_type",
    );
    refused(await upload(PDF, { type: "image/png" }), 415, "unsupported_media_type");
    refused(await upload(PNG, { type: "application/json" }), 415, "unsupported_media_type");
    const big = Buffer.concat([PNG, Buffer.alloc(10 * 1_048_576)]);
    refused(await upload(big), 413, "payload_too_large");
    const noName = await upload(JPEG, { type: "image/jpeg", filename: "" });
    refused(noName, 400, "bad_request");
    expect(ApiError.parse(noName.json()).problems?.map((p) => p.path)).toContain("filename");
    refused(
      await upload(JPEG, { type: "image/jpeg", filename: "?filename=..%2Fx.jpg" }),
      400,
      "bad_request",
    );
    refused(await upload(Buffer.alloc(0)), 400, "bad_request");
    refused(await upload(PNG), 409, "conflict");
    // Nothing refused was recorded.
    const list = AttachmentListResponse.parse(
      (await get(`/api/v1/tasks/${taskId}/attachments`)).json(),
    );
    expect(list.attachments).toHaveLength(5);
  });

  it("takes at most tasks.attachments.maxPerTask files a task (50), refusing the next before storing it", async () => {
    const counted = (outcome: string) =>
      metricValue(t.system.metrics.registry.getSingleMetric("citywatch_tasks_attachments_total"), {
        outcome,
      });
    const held = AttachmentListResponse.parse(
      (await get(`/api/v1/tasks/${taskId}/attachments`)).json(),
    ).attachments.length;
    const stored = await counted("stored");
    // Distinct PNGs (the same image with a different trailer) up to the bound.
    const nth = (i: number) => Buffer.concat([PNG, Buffer.from(`#${i}`)]);
    for (let i = held; i < 50; i++) expect((await upload(nth(i))).statusCode).toBe(201);
    expect((await counted("stored")) - stored).toBe(50 - held);
    const over = await upload(nth(50));
    refused(over, 409, "conflict");
    expect(ApiError.parse(over.json()).message).toContain("holds 50 attachments already");
    expect(await counted("refused_full")).toBe(1);
    // Refused before a byte was written: the file is not in the store's directory.
    const files = t.system.api.attachments.files.dir;
    const path = join(files, sha(nth(50)).slice(0, 2), sha(nth(50)));
    await expect(stat(path)).rejects.toThrow();
  });

  it("checks role and scope like other task actions", async () => {
    refused(await upload(JPEG, { type: "image/jpeg", token: tokens["viewer"] }), 403, "forbidden");
    refused(await upload(JPEG, { type: "image/jpeg", token: tokens["emg"] }), 403, "forbidden");
    refused(await upload(JPEG, { type: "image/jpeg", token: tokens["far"] }), 403, "forbidden");
    refused(await get(`/api/v1/tasks/${taskId}/attachments`, tokens["far"]), 403, "forbidden");
    refused(
      await get(`/api/v1/tasks/${taskId}/attachments/${sha(PNG)}`, tokens["far"]),
      403,
      "forbidden",
    );
    refused(await upload(JPEG, { type: "image/jpeg", id: "enf-999999" }), 404, "not_found");
  });

  it("lists the attachments by hash in an evidence package sealed after the upload", async () => {
    const id = taskId;
    const before = (await t.system.service.task(id))?.evidenceCount ?? 0;
    expect(before).toBeGreaterThan(0);
    expect(t.system.store.evidence(id, before)).not.toHaveProperty("attachments");
    // The case's alarm raised again with its readings: a new package is sealed.
    const now = Date.now();
    await t.system.service.applyAlarm(
      noiseNotice("cs-1", raise(now, { alarmSeq: 2 }), noiseEvidence(now)),
    );
    const sequence = (await t.system.service.task(id))?.evidenceCount ?? 0;
    expect(sequence).toBe(before + 1);
    const sealed = EvidencePackageV2.parse(t.system.store.evidence(id, sequence));
    const listed = AttachmentListResponse.parse(
      (await get(`/api/v1/tasks/${id}/attachments`)).json(),
    ).attachments;
    expect(sealed.attachments?.map((a) => a.sha256)).toEqual(listed.map((a) => a.sha256));
    expect(sealed.attachments).toContainEqual(
      expect.objectContaining({
        sha256: sha(PDF),
        filename: "notice.pdf",
        type: "application/pdf",
      }),
    );
    // The package still verifies (the hash covers the attachments).
    const verify = await get(`/api/v1/tasks/${id}/evidence/verify?sequence=${sequence}`);
    expect(verify.statusCode, verify.body).toBe(200);
    expect(verify.json()).toMatchObject({ valid: true, problems: [] });
  });
});
