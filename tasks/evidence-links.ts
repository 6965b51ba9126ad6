import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { lstatSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { z } from "zod";
import { writeOwnerOnly } from "../infra/owner-only.js";
import { DEFAULT_LANGUAGE, type Language, LANGUAGES } from "./i18n/index.js";

/*
 * Signed links to the printable evidence document (issue #17 item 4): a short-lived URL
 *
 *   GET {publicUrl}/evidence/{taskId}/{sequence}?lang=zh-CN&expires=<unix s>&sig=<base64url>
 *
 * that opens one package's document in a browser without a bearer token. `sig` is
 * HMAC-SHA256(link secret, "citywatch-evidence-link/1\n{taskId}\n{sequence}\n{expires}"), base64url
 * without padding, compared in constant time. The language is not signed: it only chooses the
 * catalogue the same package is printed with, so a recipient may switch between zh-CN and en
 * without a new link, and it grants nothing more.
 *
 * The secret is 32 random bytes kept by the deployment in an owner-only file
 * (`{dataDir}/evidence-link.key`, next to the evidence keyring), created on first start; a file
 * that others may read, or that does not hold a secret, is refused with a clear error (never its
 * content). Replacing the file (delete it and restart) rotates the secret and ends every link
 * issued before. A link lives `tasks.evidence.linkTtlMs` (default 24 h); one whose expiry lies
 * further ahead than the current lifetime allows is refused too (a shortened lifetime applies to
 * links already issued).
 */

export const LINK_KEY_FILE = "evidence-link.key";
const CANONICAL_PREFIX = "citywatch-evidence-link/1";
/** Rounding of `expires` up to whole seconds. */
const SLACK_MS = 1_000;

/** A problem with the link secret file: names the file and what is wrong, never the secret. */
export class EvidenceLinkError extends Error {
  override readonly name = "EvidenceLinkError";
}

/** The secret file's content: base64url of 32 bytes (43 characters), a line end allowed. */
const SecretText = z
  .string()
  .transform((s) => s.trim())
  .pipe(z.string().regex(/^[A-Za-z0-9_-]{43}$/, { error: "must hold 32 bytes as base64url" }));

/** A task id as a link carries it: what task ids are made of, nothing that needs escaping. */
export const LinkTaskId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, { error: "not a task id" });

/** The query of a signed link, as the browser sends it back. */
export const SignedLinkQuery = z.strictObject({
  lang: z.enum(LANGUAGES, { error: "lang must be zh-CN or en" }).optional(),
  expires: z
    .string()
    .regex(/^\d{1,12}$/, { error: "expires must be unix seconds" })
    .transform(Number),
  sig: z.string().regex(/^[A-Za-z0-9_-]{43}$/, { error: "sig must be 43 base64url characters" }),
});
export type SignedLinkQuery = z.infer<typeof SignedLinkQuery>;

export const SignedLinkParams = z.strictObject({
  taskId: LinkTaskId,
  sequence: z
    .string()
    .regex(/^[1-9]\d{0,8}$/, { error: "sequence must be a whole number from 1" })
    .transform(Number),
});

/** A link as the task API and the webhooks hand it out. */
export interface EvidenceLink {
  readonly url: string;
  /** UTC ISO 8601. */
  readonly expiresAt: string;
}

export type LinkCheck =
  { readonly ok: true } | { readonly ok: false; readonly reason: "invalid" | "expired" };

export interface EvidenceLinkOptions {
  /** Lifetime of a link (`tasks.evidence.linkTtlMs`). */
  readonly ttlMs: number;
  /** Where recipients reach the API (`tasks.evidence.publicUrl`, else `http://{host}:{port}`). */
  readonly baseUrl: string;
  /** Language of a link that names none (`tasks.evidence.language`). */
  readonly language?: Language | undefined;
  readonly now: () => number;
}

/** The file of the link secret: `{dataDir}/evidence-link.key`. */
export const evidenceLinkKeyFile = (dataDir: string): string => join(dataDir, LINK_KEY_FILE);

/**
 * Read the link secret from `file`, creating it (owner-only, 32 random bytes) when there is none
 * and `create` is set. Refuses a file others may read, a symbolic link, or one without a secret.
 */
export function loadLinkSecret(
  file: string,
  options: { create: boolean; log?: Logger | undefined },
): Buffer {
  let stat;
  try {
    stat = lstatSync(file, { throwIfNoEntry: false });
  } catch (error) {
    throw new EvidenceLinkError(
      `evidence link secret ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
  if (stat === undefined) {
    if (!options.create) throw new EvidenceLinkError(`evidence link secret ${file} does not exist`);
    const secret = randomBytes(32);
    try {
      writeOwnerOnly(file, `${secret.toString("base64url")}\n`);
    } catch (error) {
      throw new EvidenceLinkError(
        `evidence link secret ${file} cannot be written: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
    options.log?.info(
      { file },
      "evidence link secret created (signs the links to printable evidence; keep the file private)",
    );
    return secret;
  }
  if (!stat.isFile())
    throw new EvidenceLinkError(`evidence link secret ${file} is not a regular file`);
  if ((stat.mode & 0o077) !== 0)
    throw new EvidenceLinkError(
      `evidence link secret ${file} may be read by others (mode 0${(stat.mode & 0o777).toString(8)}); make it owner-only: chmod 600 ${file}`,
    );
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new EvidenceLinkError(
      `evidence link secret ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
  const parsed = SecretText.safeParse(text);
  if (!parsed.success)
    throw new EvidenceLinkError(
      `evidence link secret ${file} does not hold a secret (32 bytes as base64url); delete it to have a new one made`,
    );
  return Buffer.from(parsed.data, "base64url");
}

export class EvidenceLinks {
  readonly ttlMs: number;
  readonly baseUrl: string;
  readonly language: Language;
  private readonly now: () => number;

  constructor(
    private readonly secret: Buffer,
    options: EvidenceLinkOptions,
  ) {
    if (secret.length < 32) throw new EvidenceLinkError("the link secret must be 32 bytes or more");
    this.ttlMs = options.ttlMs;
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.language = options.language ?? DEFAULT_LANGUAGE;
    this.now = options.now;
  }

  /** Open the deployment's links: the secret from `file` (created on first start). */
  static open(
    file: string,
    options: EvidenceLinkOptions & { log?: Logger | undefined; create?: boolean },
  ): EvidenceLinks {
    return new EvidenceLinks(
      loadLinkSecret(file, { create: options.create ?? true, log: options.log }),
      options,
    );
  }

  /** Where the deployment's public evidence keys are served (printed on the document). */
  get verifyUrl(): string {
    return `${this.baseUrl}/api/v1/evidence/keys`;
  }

  /** The signature of a link: base64url HMAC-SHA256 of its canonical text. */
  signature(taskId: string, sequence: number, expires: number): string {
    return createHmac("sha256", this.secret)
      .update(`${CANONICAL_PREFIX}\n${taskId}\n${sequence}\n${expires}`, "utf8")
      .digest("base64url");
  }

  /** A link to package `sequence` of `taskId`, valid for the configured lifetime from now. */
  create(taskId: string, sequence: number, language?: Language): EvidenceLink {
    LinkTaskId.parse(taskId);
    if (!Number.isInteger(sequence) || sequence < 1)
      throw new RangeError(`sequence must be a whole number from 1, not ${sequence}`);
    const expires = Math.ceil((this.now() + this.ttlMs) / 1000);
    const query = new URLSearchParams({
      lang: language ?? this.language,
      expires: String(expires),
      sig: this.signature(taskId, sequence, expires),
    });
    return {
      url: `${this.baseUrl}/evidence/${encodeURIComponent(taskId)}/${sequence}?${query.toString()}`,
      expiresAt: new Date(expires * 1000).toISOString(),
    };
  }

  /**
   * Check a link's signature (constant time), then its expiry: `invalid` for a signature that is
   * not ours (or an expiry further ahead than the lifetime allows), `expired` for one of ours
   * that has run out.
   */
  check(taskId: string, sequence: number, expires: number, sig: string): LinkCheck {
    // The text compared, not the bytes it decodes to: the last of 43 base64url characters
    // carries two unused bits, so four spellings decode to one signature, and a link must have
    // exactly one valid spelling.
    const expected = Buffer.from(this.signature(taskId, sequence, expires), "latin1");
    const given = Buffer.from(sig, "latin1");
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return { ok: false, reason: "invalid" };
    const now = this.now();
    if (expires * 1000 - now > this.ttlMs + SLACK_MS) return { ok: false, reason: "invalid" };
    if (now >= expires * 1000) return { ok: false, reason: "expired" };
    return { ok: true };
  }
}
