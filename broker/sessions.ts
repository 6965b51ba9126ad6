import type { Client } from "aedes";

/** A subscription as aedes hands it to its persistence. */
interface StoredSubscription {
  readonly topic: string;
  readonly qos: number;
}

/** The part of an aedes persistence (memory or Redis) whose calls this module guards. */
export interface SubscriptionStore {
  addSubscriptions(client: Client, subs: StoredSubscription[]): Promise<unknown>;
  removeSubscriptions(client: Client, subs: string[]): Promise<unknown>;
}

/**
 * Guard how aedes 1.x stores the subscriptions of a persistent session (clean session 0).
 *
 * aedes' SUBSCRIBE handler calls `persistence.addSubscriptions(client, packet.subscriptions)` once
 * per filter of the packet, each time with **every** filter of the packet (aedes issue #458), and
 * before the other filters were authorized. Two faults follow:
 *
 * 1. **No SUBACK on Redis.** aedes-persistence-redis announces a stored subscription to the
 *    cluster over `$SYS/sub/add` and waits for its own announcement to come back, keyed by
 *    (client id, first filter) (aedes-persistence's BroadcastPersistence). The concurrent second
 *    call overwrites the first call's waiter under the same key, so the first call never resolves
 *    and the SUBACK is never sent: a device that subscribes to `commit` and `config` in one
 *    SUBSCRIBE waits for ever (aedes issue #602 has the same symptom).
 * 2. **Refused filters stored.** A filter that authorizeSubscribe refused (0x80 in the SUBACK) is
 *    still stored with the session when it shares the SUBSCRIBE with an allowed one, so messages
 *    on it are queued for the session while it is offline and delivered at its next connect: a
 *    device could read another device's commits, on any persistence.
 *
 * The guard stores only the filters `mayStore` allows, stores one packet's filters once (the
 * repeated calls with the same array share the first call's promise), and runs one client's
 * stores and removals one after another, so no two announcements of a client are awaited at once.
 */
export function guardSubscriptionStore(
  persistence: SubscriptionStore,
  mayStore: (client: Client, topic: string) => boolean,
): void {
  const add = persistence.addSubscriptions.bind(persistence);
  const remove = persistence.removeSubscriptions.bind(persistence);
  const pending = new WeakMap<readonly StoredSubscription[], Promise<unknown>>();
  /** The tail of each client's chain of stores and removals. */
  const chains = new Map<string, Promise<unknown>>();

  const serially = (client: Client, work: () => Promise<unknown>): Promise<unknown> => {
    const before = chains.get(client.id) ?? Promise.resolve();
    const run = before.then(work, work);
    const tail = run.catch(() => undefined);
    chains.set(client.id, tail);
    void tail.then(() => {
      if (chains.get(client.id) === tail) chains.delete(client.id);
    });
    return run;
  };

  persistence.addSubscriptions = (client, subs) => {
    const shared = pending.get(subs);
    if (shared !== undefined) return shared;
    const allowed = subs.filter((sub) => mayStore(client, sub.topic));
    const stored =
      allowed.length === 0 ? Promise.resolve() : serially(client, () => add(client, allowed));
    pending.set(subs, stored);
    return stored;
  };
  persistence.removeSubscriptions = (client, subs) => serially(client, () => remove(client, subs));
}
