import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EvidenceKey,
  EvidencePackage,
  EvidencePackageV2,
  EvidenceVerification,
  TaskDetailResponse,
} from "../../../contracts/index.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { EvidenceKeyring } from "../../../tasks/evidence-keys.js";
import { canonicalBytes, sealEvidence } from "../../../tasks/evidence-seal.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { sampleV1 } from "../../unit/tasks/evidence-sample.js";
import {
  DEVICES,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  SITES,
  startSystem,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

/*
 * Signed evidence through the real task system and API (fastify inject): the service seals
 * format 2 packages with the deployment's key file; the keys are public; the verification routes
 * refuse every tampering with its reason (edited and re-hashed, re-signed with another key,
 * packages swapped between tasks in the database, another sequence, an unknown task, a format 1
 * package); the offline script of docs/tasks.md verifies a genuine package with the public keys
 * alone and refuses a tampered one.
 */

const TASKS_MD = new URL("../../../docs/tasks.md", import.meta.url);
const PUBLIC_URL = "https://citywatch.example.gov.cn";

describe("signed evidence: sealing, keys and verification through the API", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: FastifyInstance;
  let token: string;
  let forger: EvidenceKeyring;
  const ids: string[] = [];

  beforeAll(async () => {
    dir = await makeTempDir("cw-evidence-verify-");
    system = startSystem(dir, {
      now: Date.now,
      config: tasksConfig({ evidence: { publicUrl: PUBLIC_URL } }),
    });
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
    });
    token = system.tokens.add("viewer-1", "viewer").token;
    forger = EvidenceKeyring.open(join(dir, "forger", "keys.json"), { create: true });
    // Two enforcement cases (two parties' sites), the first one raised again with evidence.
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now, 64)));
    await system.service.applyAlarm(noiseNotice("cs-3", raise(now), noiseEvidence(now, 66)));
    await system.service.applyAlarm(
      noiseNotice("cs-1", raise(now + 1, { alarmSeq: 2 }), noiseEvidence(now + 1, 65)),
    );
    ids.push(...system.store.listTasks({ limit: 10 }).map((t) => t.id));
    ids.sort();
  });
  afterAll(async () => {
    await app.close();
    await system.stop();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  const get = (url: string, auth = true) =>
    app.inject({
      method: "GET",
      url,
      headers: auth ? { authorization: `Bearer ${token}` } : {},
    });
  const post = (body: unknown) =>
    app.inject({
      method: "POST",
      url: "/api/v1/evidence/verify",
      headers: { authorization: `Bearer ${token}` },
      payload: body as Record<string, unknown>,
    });
  const stored = async (id: string, sequence?: number) =>
    EvidencePackageV2.parse(
      (
        await get(
          `/api/v1/tasks/${id}/evidence${sequence === undefined ? "" : `?sequence=${sequence}`}`,
        )
      ).json(),
    );
  const verified = async (body: unknown) => {
    const res = await post(body);
    expect(res.statusCode).toBe(200);
    return EvidenceVerification.parse(res.json());
  };
  const codes = (v: EvidenceVerification) => v.problems.map((p) => p.code).sort();
  /** Recompute the hash of an edited package, as a forger who knows the scheme would. */
  const rehash = (pkg: EvidencePackageV2): EvidencePackageV2 => ({
    ...pkg,
    hash: { ...pkg.hash, value: createHash("sha256").update(canonicalBytes(pkg)).digest("hex") },
  });

  it("serves the public keys without a token, documented as open in the OpenAPI document", async () => {
    const res = await get("/api/v1/evidence/keys", false);
    expect(res.statusCode).toBe(200);
    const keys = EvidenceKey.array().parse(res.json<{ keys: unknown }>().keys);
    expect(keys).toHaveLength(1);
    expect(keys[0]?.keyId).toBe(system.keyring.current().keyId);
    expect(res.body).not.toContain("PRIVATE");
    const doc = (await get("/openapi.json", false)).json<{
      paths: Record<string, Record<string, { security?: unknown }>>;
    }>();
    expect(doc.paths["/api/v1/evidence/keys"]?.get?.security).toEqual([]);
    expect(doc.paths["/api/v1/evidence/verify"]?.post?.security).toEqual([
      { bearer: [] },
      { session: [] },
    ]);
    // The other evidence routes still need a token.
    expect((await get(`/api/v1/tasks/${ids[0]}/evidence`, false)).statusCode).toBe(401);
  });

  it("seals signed packages with the audit trail at sealing; a re-seal links to the previous one; both verify", async () => {
    const [first, second] = [await stored(ids[0]!, 1), await stored(ids[0]!, 2)];
    expect(first.signature.keyId).toBe(system.keyring.current().keyId);
    expect(first.previous).toBeNull();
    expect(second.previous).toEqual({ sequence: 1, hash: first.hash.value });
    // The trail as it was when each package was sealed: this change's entries included.
    const trail = first.audit.map((e) => e.action);
    expect(trail.slice(0, 2)).toEqual(["filed", "routed"]);
    expect(trail).not.toContain("evidence_attached");
    expect(second.audit.map((e) => e.action).slice(0, trail.length + 2)).toEqual([
      ...trail,
      "evidence_attached",
      "repeat_attached",
    ]);
    const detail = TaskDetailResponse.parse((await get(`/api/v1/tasks/${ids[0]}`)).json());
    expect(detail.task.evidenceCount).toBe(2);
    expect(detail.audit.filter((e) => e.action === "evidence_attached").at(-1)?.detail).toContain(
      `evidence package 2, sha256 ${second.hash.value}, signed by key ${second.signature.keyId}`,
    );
    for (const sequence of [1, 2]) {
      const res = await get(`/api/v1/tasks/${ids[0]}/evidence/verify?sequence=${sequence}`);
      expect(EvidenceVerification.parse(res.json())).toMatchObject({ valid: true, problems: [] });
    }
    expect((await get(`/api/v1/tasks/${ids[0]}/evidence/verify`)).json()).toMatchObject({
      sequence: 2,
      valid: true,
    });
    expect(await verified(first)).toMatchObject({ valid: true, problems: [] });
    expect(await verified(second)).toMatchObject({ valid: true, problems: [] });
  });

  it("refuses an edited value (64.21 → 54.9 style), re-hashed or not, and says exactly what differs", async () => {
    const pkg = await stored(ids[0]!, 1);
    const edited = { ...pkg, computation: { ...pkg.computation, value: 54.9 } };
    const plain = await verified(edited);
    expect(plain.valid).toBe(false);
    expect(codes(plain)).toEqual(["bad_signature", "differs_from_stored", "hash_mismatch"]);
    expect(plain.problems.find((p) => p.code === "differs_from_stored")?.paths).toEqual([
      "computation.value",
    ]);
    const rehashed = await verified(rehash(edited));
    expect(codes(rehashed)).toEqual(["bad_signature", "differs_from_stored"]);
    expect(rehashed.actual).toBe(rehashed.expected);
    // Re-signed with another key (the forger's own), content and hash consistent.
    const { hash: _h, signature: _s, previous, ...body } = edited;
    const resigned = sealEvidence(body, previous, forger);
    const answer = await verified(resigned);
    expect(codes(answer)).toEqual(["differs_from_stored", "unknown_key"]);
    expect(answer.problems.find((p) => p.code === "unknown_key")?.message).toContain(
      resigned.signature.keyId,
    );
    // A member the schema does not know, added to a genuine package.
    const extra = await verified({ ...pkg, paid: true });
    expect(codes(extra)).toEqual(["bad_signature", "differs_from_stored", "hash_mismatch"]);
  });

  it("never answers valid for a package of an unknown task, or with a sequence the task does not have", async () => {
    const pkg = await stored(ids[0]!, 1);
    const { hash: _h, signature: _s, previous, ...body } = pkg;
    // Signed with the deployment's own key (an insider), for a task that does not exist.
    const ghost = sealEvidence({ ...body, taskId: "enf-999999" }, previous, system.keyring);
    const unknown = await verified(ghost);
    expect(unknown.valid).toBe(false);
    expect(codes(unknown)).toEqual(["unknown_task"]);
    const resequenced = sealEvidence(
      { ...body, sequence: 7 },
      { sequence: 6, hash: "0".repeat(64) },
      system.keyring,
    );
    const answer = await verified(resequenced);
    expect(codes(answer)).toEqual(["not_stored", "previous_mismatch"]);
    expect(answer.problems[0]?.message).toContain(`task ${ids[0]} has no evidence package 7`);
    // Changing the sequence of a genuine package breaks its signature and its link too.
    expect(codes(await verified(rehash({ ...pkg, sequence: 2 })))).toEqual([
      "bad_previous_link",
      "bad_signature",
      "differs_from_stored",
    ]);
  });

  it("prints the document in the language asked, with where the public keys are; signed links are wired", async () => {
    const zh = await get(`/api/v1/tasks/${ids[0]}/evidence?format=html`);
    expect(zh.statusCode).toBe(200);
    expect(zh.body).toContain('<html lang="zh-CN">');
    expect(zh.body).toContain(`${PUBLIC_URL}/api/v1/evidence/keys`);
    const en = await get(`/api/v1/tasks/${ids[0]}/evidence?format=html&language=en&sequence=1`);
    expect(en.body).toContain('<html lang="en">');
    const link = await get(`/api/v1/tasks/${ids[0]}/evidence/link`);
    expect(link.statusCode).toBe(200);
    const { url } = link.json<{ url: string }>();
    expect(url.startsWith(`${PUBLIC_URL}/evidence/${ids[0]}/2?`)).toBe(true);
    // The link opens the document without a token.
    const opened = await app.inject({ method: "GET", url: url.slice(PUBLIC_URL.length) });
    expect(opened.statusCode).toBe(200);
    expect(opened.headers["content-type"]).toBe("text/html; charset=utf-8");
  });

  it("keeps a user to their scope: another district's evidence is 403 to export and to verify", async () => {
    // cs-1 (the first case) is in pudong, cs-3 (the second) in xuhui.
    await system.tokens.users.add(
      { id: "li.na", name: "Li Na", roles: ["enforcement"], scope: { districts: ["xuhui"] } },
      "correct horse battery",
    );
    const scoped = system.tokens.add("li.na@laptop", "enforcement", "li.na").token;
    const headers = { authorization: `Bearer ${scoped}` };
    const other = await stored(ids[0]!, 1);
    for (const url of [
      `/api/v1/tasks/${ids[0]}/evidence`,
      `/api/v1/tasks/${ids[0]}/evidence?format=html`,
      `/api/v1/tasks/${ids[0]}/evidence/verify`,
    ]) {
      const res = await app.inject({ method: "GET", url, headers });
      expect(res.statusCode, url).toBe(403);
      expect(res.json<{ message: string }>().message, url).toContain("outside your scope");
    }
    const posted = await app.inject({
      method: "POST",
      url: "/api/v1/evidence/verify",
      headers,
      payload: other,
    });
    expect(posted.statusCode).toBe(403);
    const own = await app.inject({
      method: "GET",
      url: `/api/v1/tasks/${ids[1]}/evidence/verify?sequence=1`,
      headers,
    });
    expect(own.json()).toMatchObject({ valid: true });
  });

  it("answers malformed bodies and queries with 400, naming the problem", async () => {
    const res = await post({ format: "citywatch-evidence/2", taskId: 1 });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: string }>().error).toBe("bad_request");
    expect((await get(`/api/v1/tasks/${ids[0]}/evidence?language=fr`)).statusCode).toBe(400);
    expect((await get(`/api/v1/tasks/${ids[0]}/evidence/verify?sequence=0`)).statusCode).toBe(400);
    expect((await get(`/api/v1/tasks/enf-424242/evidence/verify`)).json()).toMatchObject({
      error: "not_found",
      message: "no task enf-424242",
    });
  });

  it("keeps format 1 packages readable and answers them unsigned_format, never valid", async () => {
    // A task and its package from before packages were signed (an older database).
    const task = system.store.task(ids[1]!)!;
    const old = { ...task, id: "enf-000900", evidenceCount: 1 };
    system.store.saveTask({ ...old, state: "closed" }, {});
    const v1 = sampleV1(old.id, 1);
    system.store.addEvidence(v1, Date.now());
    const json = await get(`/api/v1/tasks/${old.id}/evidence`);
    expect(EvidencePackage.parse(json.json())).toEqual(v1);
    const html = await get(`/api/v1/tasks/${old.id}/evidence?format=html`);
    expect(html.statusCode).toBe(200);
    const stored = EvidenceVerification.parse(
      (await get(`/api/v1/tasks/${old.id}/evidence/verify`)).json(),
    );
    expect(stored).toMatchObject({ valid: false, keyId: null });
    expect(codes(stored)).toEqual(["unsigned_format"]);
    expect(stored.problems[0]?.message).toContain("integrity only, the hash matches");
    const edited = await verified({ ...v1, computation: { ...v1.computation, value: 1 } });
    expect(codes(edited)).toEqual(["differs_from_stored", "hash_mismatch", "unsigned_format"]);
    expect(edited.problems.find((p) => p.code === "unsigned_format")?.message).toContain(
      "does not match",
    );
  });

  it("the offline script of docs/tasks.md verifies a genuine package with the public keys alone and refuses a tampered one", async () => {
    const markdown = readFileSync(TASKS_MD, "utf8");
    const match =
      /<!-- verify-script:start -->\s*```js\n([\s\S]*?)```\s*<!-- verify-script:end -->/.exec(
        markdown,
      );
    expect(match).not.toBeNull();
    const script = join(dir, "verify-evidence.mjs");
    writeFileSync(script, match![1]!);
    const pkg = await stored(ids[0]!, 1);
    const keysJson = join(dir, "keys.json");
    writeFileSync(keysJson, (await get("/api/v1/evidence/keys", false)).body);
    const pem = join(dir, "key.pem");
    const key = system.keyring.publicKeys().find((k) => k.keyId === pkg.signature.keyId)!;
    writeFileSync(pem, key.publicKeyPem);
    const run = (p: unknown, keys: string) => {
      const file = join(dir, "pkg.json");
      writeFileSync(file, JSON.stringify(p, null, 2));
      // The script alone: a plain node, no loader, cwd outside the repository.
      const result = spawnSync(process.execPath, [script, file, keys], {
        cwd: dir,
        encoding: "utf8",
      });
      return { status: result.status, out: `${result.stdout}${result.stderr}` };
    };
    const genuine = run(pkg, keysJson);
    expect(genuine.out).toContain("VALID: package 1");
    expect(genuine.status).toBe(0);
    expect(run(pkg, pem).status).toBe(0);
    const edited = { ...pkg, computation: { ...pkg.computation, value: 54.9 } };
    const tampered = run(edited, keysJson);
    expect(tampered.status).toBe(1);
    expect(tampered.out).toContain("NOT VALID");
    expect(tampered.out).toContain("hash: content gives");
    expect(tampered.out).toContain("signature does not verify");
    const rehashed = run(rehash(edited), keysJson);
    expect(rehashed.status).toBe(1);
    expect(rehashed.out).not.toContain("hash: content gives");
    expect(rehashed.out).toContain("signature does not verify");
    const { hash: _h, signature: _s, previous, ...body } = edited;
    const byForger = run(sealEvidence(body, previous, forger), keysJson);
    expect(byForger.status).toBe(1);
    expect(byForger.out).toMatch(/key [0-9a-f]{32} is not in/);
    const late = run(
      pkg,
      (() => {
        const f = join(dir, "keys-closed.json");
        writeFileSync(
          f,
          JSON.stringify({ keys: [{ ...key, validTo: "2000-01-01T00:00:00.000Z" }] }),
        );
        return f;
      })(),
    );
    expect(late.status).toBe(1);
    expect(late.out).toContain("after key");
    expect(run(sampleV1(), keysJson).status).toBe(1);
  });

  it("after a rotation, new packages are signed with the new key and old ones still verify", async () => {
    const before = system.keyring.current().keyId;
    const { added } = EvidenceKeyring.open(system.keyring.file).rotate(); // as the CLI does
    // The case of cs-3 raised again: its package 2 is signed with the new key.
    const now = Date.now() + 10;
    await system.service.applyAlarm(
      noiseNotice("cs-3", raise(now, { alarmSeq: 2 }), noiseEvidence(now, 63)),
    );
    const fresh = await stored(ids[1]!, 2);
    expect(fresh.signature.keyId).toBe(added.keyId);
    expect(fresh.previous?.hash).toBe((await stored(ids[1]!, 1)).hash.value);
    expect(await verified(fresh)).toMatchObject({ valid: true });
    const keys = (await get("/api/v1/evidence/keys", false)).json<{ keys: EvidenceKey[] }>().keys;
    expect(keys.map((k) => [k.keyId, k.validTo === null])).toEqual([
      [before, false],
      [added.keyId, true],
    ]);
    // Packages sealed under the old key still verify, stored and held.
    const old = await stored(ids[0]!, 2);
    expect(old.signature.keyId).toBe(before);
    expect((await get(`/api/v1/tasks/${ids[0]}/evidence/verify?sequence=2`)).json()).toMatchObject({
      valid: true,
      keyId: before,
    });
    expect(await verified(old)).toMatchObject({ valid: true, keyId: before });
  });

  it("files the task and records why when the key file cannot be used at sealing", async () => {
    const file = system.keyring.file;
    const sealed = system.store.task(ids[0]!)!.evidenceCount;
    chmodSync(file, 0o644);
    try {
      const now = Date.now() + 20;
      await system.service.applyAlarm(
        noiseNotice("cs-1", raise(now, { alarmSeq: 9 }), noiseEvidence(now, 64)),
      );
      const detail = TaskDetailResponse.parse((await get(`/api/v1/tasks/${ids[0]}`)).json());
      const last = detail.audit.filter((e) => e.action === "evidence_attached").at(-1);
      expect(last?.detail).toMatch(
        /^evidence could not be sealed: evidence key file .* \(mode 0644\); it holds private keys: chmod 600/,
      );
      expect(last?.detail).not.toContain("PRIVATE KEY-----");
      expect(detail.task.evidenceCount).toBe(sealed);
      expect(detail.task.repeats).toBeGreaterThan(0);
    } finally {
      chmodSync(file, 0o600);
    }
  });

  it("refuses packages swapped between tasks in the database (signatures intact)", async () => {
    const a = await stored(ids[0]!, 1);
    const b = await stored(ids[1]!, 1);
    // Someone with the database file: the append-only trigger is no obstacle to them.
    const db = new Database(join(dir, "tasks.db"));
    try {
      db.exec("DROP TRIGGER evidence_append_only_update");
      db.prepare("UPDATE evidence SET package = ? WHERE task_id = ? AND sequence = 1").run(
        JSON.stringify(a),
        ids[1],
      );
      db.prepare("UPDATE evidence SET package = ? WHERE task_id = ? AND sequence = 1").run(
        JSON.stringify(b),
        ids[0],
      );
    } finally {
      db.close();
    }
    const res = EvidenceVerification.parse(
      (await get(`/api/v1/tasks/${ids[1]}/evidence/verify?sequence=1`)).json(),
    );
    expect(res.valid).toBe(false);
    expect(codes(res)).toContain("not_this_package");
    expect(res.problems.find((p) => p.code === "not_this_package")?.message).toBe(
      `this is package 1 of task ${ids[0]}, not package 1 of task ${ids[1]}`,
    );
    // The holder of A's genuine package is told the stored package 1 of A is not it.
    const held = await verified(a);
    expect(codes(held)).toEqual(["differs_from_stored"]);
    expect(held.problems[0]?.paths?.slice(0, 3)).toContain("taskId");
    expect(held.problems[0]?.paths).toContain("hash.value");
    // Package 2 of A links to the genuine package 1: the stored one no longer fits.
    expect(codes(await verified(await stored(ids[0]!, 2)))).toEqual(["previous_mismatch"]);
  });
});
