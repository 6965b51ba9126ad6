/*
 * Which work partition a subject (a device, a site, a tunnel segment) belongs to. Every node must
 * compute the same answer forever, in any language, so the hash is a fixed, documented one rather
 * than whatever the runtime offers: 32-bit FNV-1a over the key's UTF-8 bytes (offset basis
 * 2166136261, prime 16777619), then the remainder by the partition count.
 *
 * Changing the partition count moves most keys to another partition, so it is a deployment-wide
 * setting that all nodes share (the lease keeper refuses a table laid out for another count).
 */

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
