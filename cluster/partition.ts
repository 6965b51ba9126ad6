/*
 * Which work partition a subject (a device, a site, a tunnel segment) belongs to. Every node must
 * compute the same answer forever, in any language, so the hash is a fixed, documented one rather
 * than whatever the runtime offers: 32-bit FNV-1a over the key's UTF-8 bytes (offset basis
 * 2166136261, prime 16777619), then the remainder by the partition count.
 *
 * Changing the partition count moves most keys to another partition, so it is a deployment-wide
 * setting that all nodes share (the lease keeper refuses a table laid out for another count).
 */

/** The partition count when none is configured; every node of a deployment uses the same. */
export const DEFAULT_PARTITIONS = 64;

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

const encoder = new TextEncoder();

/** 32-bit FNV-1a of the UTF-8 bytes of `key`, as an unsigned integer. */
export function fnv1a32(key: string): number {
  let hash = FNV_OFFSET_BASIS;
  for (const byte of encoder.encode(key)) {
    hash ^= byte;
    // Math.imul keeps the multiplication in 32 bits, as the C reference does.
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

/** The partition (0 … partitions − 1) of `key`. */
export function partitionOf(key: string, partitions: number): number {
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer (got ${partitions})`);
  }
  return fnv1a32(key) % partitions;
}

/**
 * The partition of a rule's subject (`device:<id>`, `site:<id>`, `segment:<id>`): a site's or a
 * segment's own id, a device's site (`siteOfDevice`). A device the registry does not hold (any
 * more) falls to its own id: no site's lease covers it.
 */
export function partitionOfSubject(
  subject: string,
  partitions: number,
  siteOfDevice: (deviceId: string) => string | undefined,
): number {
  const colon = subject.indexOf(":");
  const type = subject.slice(0, colon);
  const id = subject.slice(colon + 1);
  if (type !== "device") return partitionOf(id, partitions);
  return partitionOf(siteOfDevice(id) ?? id, partitions);
}
