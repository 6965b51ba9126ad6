import { createHash } from "node:crypto";
import { chmodSync, mkdirSync } from "node:fs";
import { readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AttachmentType } from "../contracts/model/tasks.js";

/*
 * Attachment files (field photos, documents): content-addressed under
 * `{dataDir}/attachments/{first two hex}/{sha256}`, owner-only (directories 0700, files 0600,
 * docs/security.md section 6). A file is written once (to a temporary name, then renamed), so
 * the same photo uploaded twice, or to two tasks, is stored once; a file is never changed or
 * removed. The type is told by the first bytes, never by what the client declared.
 */

/** The type of a file by its magic numbers, or undefined for any other. */
export function detectAttachmentType(bytes: Uint8Array): AttachmentType | undefined {
  const at = (offset: number, ...expected: number[]) =>
    expected.every((b, i) => bytes[offset + i] === b);
  const ascii = (offset: number, text: string) =>
    at(offset, ...[...text].map((c) => c.charCodeAt(0)));
  if (at(0, 0xff, 0xd8, 0xff)) return "image/jpeg";
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "image/png";
  if (ascii(0, "RIFF") && ascii(8, "WEBP")) return "image/webp";
  if (ascii(0, "%PDF-")) return "application/pdf";
  // ISO BMFF: a box `ftyp` at 4 and a HEIF brand at 8 (HEIC photos of phones).
  if (ascii(4, "ftyp") && ["heic", "heix", "heim", "heis", "mif1", "msf1"].some((b) => ascii(8, b)))
    return "image/heic";
  return undefined;
}

export const sha256Hex = (bytes: Uint8Array): string =>
  createHash("sha256").update(bytes).digest("hex");

export class AttachmentFiles {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }

  private pathOf(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new RangeError(`not a SHA-256: ${sha256}`);
    return join(this.dir, sha256.slice(0, 2), sha256);
  }

  /** Store the bytes (once per content); their SHA-256. */
  async put(bytes: Uint8Array): Promise<string> {
    const sha256 = sha256Hex(bytes);
    const path = this.pathOf(sha256);
    const existing = await stat(path).catch(() => undefined);
    if (existing?.size === bytes.length) return sha256;
    mkdirSync(join(this.dir, sha256.slice(0, 2)), { recursive: true, mode: 0o700 });
    const temporary = `${path}.${process.pid}.${Date.now()}.tmp`;
    try {
      await writeFile(temporary, bytes, { mode: 0o600, flag: "wx" });
      await rename(temporary, path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    return sha256;
  }

  /** The bytes of a stored file, checked against their name; undefined when it is missing. */
  async get(sha256: string): Promise<Buffer | undefined> {
    const bytes = await readFile(this.pathOf(sha256)).catch(() => undefined);
    if (bytes === undefined) return undefined;
    if (sha256Hex(bytes) !== sha256) {
      throw new Error(`attachment ${sha256} on disk does not match its hash`);
    }
    return bytes;
  }
}
