import { Readable } from "node:stream";

/** A retained message as aedes hands it to its persistence. */
interface RetainedPacket {
  readonly topic: string;
  readonly payload: Buffer | string;
}

/** The part of aedes' memory persistence whose retained messages this module keeps. */
export interface RetainedStore {
  storeRetained(packet: RetainedPacket, cb?: (error: Error | null) => void): unknown;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

/**
 * Does the MQTT topic filter `filter` match `topic` (MQTT 3.1.1 §4.7)? `+` is one level, `#` the
 * rest of the topic including its parent level (`a/#` matches `a`), and a topic that begins with
 * `$` is matched by no filter that begins with a wildcard (§4.7.2).
 */
export function filterMatches(filter: string, topic: string): boolean {
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  const want = filter.split("/");
  const have = topic.split("/");
  for (let i = 0; i < want.length; i++) {
    const level = want[i];
    if (level === "#") return true;
    if (i >= have.length) return false;
    if (level !== "+" && level !== have[i]) return false;
  }
  return want.length === have.length;
}

const hasWildcard = (filter: string) => filter.includes("+") || filter.includes("#");

/**
 * Keep the retained messages of aedes' memory persistence (aedes-persistence 11) in a map by
 * topic and answer a SUBSCRIBE's filter without a wildcard with one lookup.
 *
 * aedes-persistence matches every filter of every SUBSCRIBE against every retained message (a
 * new Qlobber, and each retained topic split into words, per filter). A device's commit and
 * config filters have no wildcard, and every device leaves two retained messages (its status and
 * its commit), so a fleet connecting cost time in the square of its size: with 2,000 devices,
 * 38 % of the broker process's CPU samples were that scan, and 10,000 devices took minutes to
 * connect (bench/fleet.ts, issue #20 item 3). A filter with a wildcard (a service account's) is
 * still matched against every retained message, as before.
 *
 * Same contract as aedes-persistence's: an empty payload deletes the topic's retained message;
 * a message is stored as a shallow copy; each filter yields its matches in the order the topics
 * were first retained, filter after filter.
 */
export function indexRetained(persistence: RetainedStore): void {
  const retained = new Map<string, RetainedPacket>();

  function* matching(filters: readonly string[]): Generator<RetainedPacket> {
    for (const filter of filters) {
      if (!hasWildcard(filter)) {
        const packet = retained.get(filter);
        if (packet !== undefined) yield packet;
        continue;
      }
      for (const [topic, packet] of retained) if (filterMatches(filter, topic)) yield packet;
    }
  }

  persistence.storeRetained = (packet, cb) => {
    if (packet.payload.length === 0) retained.delete(packet.topic);
    else retained.set(packet.topic, { ...packet });
    if (cb === undefined) return Promise.resolve();
    cb(null);
    return undefined;
  };
  persistence.createRetainedStream = (pattern) => Readable.from(matching([pattern]));
  persistence.createRetainedStreamCombi = (patterns) => Readable.from(matching(patterns));
}
