import { closeSync, fchmodSync, openSync, writeSync } from "node:fs";

/** Owner-only modes. */
export const PRIVATE_DIR = 0o700;
export const PRIVATE_FILE = 0o600;

/**
 * Write `text` to `file` readable and writable by the owner only (0600, also when the file was
 * there before with other modes), replacing what it held.
 */
export function writeOwnerOnly(file: string, text: string): void {
  const fd = openSync(file, "w", PRIVATE_FILE);
  try {
    fchmodSync(fd, PRIVATE_FILE);
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}
