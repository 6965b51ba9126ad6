import Database from "better-sqlite3";
import type { Logger } from "pino";

/*
 * Device revocation at once (issue #16 item 1). `citywatch devices rotate-secret | disable |
 * remove` write the registry file from another process; the running system held a 5-s lookup
 * cache in the ingest and kept the device's MQTT session open. This watch keeps its own read-only
 * connection to registry.db and asks SQLite's data_version (one read of shared memory, no query)
 * whether any connection changed the file; on a change it compares each device's enabled flag and
 * secret hash with what it saw before and tells its listeners which devices were revoked.
 *
 * - The ingest asks `changed()` before each registry lookup (`withRevocations`), so its cache is
 *   dropped the moment the file changed: a reading of a device disabled or removed a moment ago is
 *   dead-lettered (`disabled_device`, `unknown_device`), never stored.
 * - The broker listens with `onRevoked` and closes the device's sessions (`disabled`, `removed`,
 *   `rotated`: the old secret's session must not outlive it); the poll (`intervalMs`) bounds how
 *   late it hears of a change when nothing else asks. In a cluster every broker process runs its
 *   own watch of the registry file it authenticates against.
 */

export type RevocationReason = "disabled" | "removed" | "rotated";

export interface DeviceRevocation {
  readonly deviceId: string;
  readonly why: RevocationReason;
  /** When the watch saw it (ms). */
  readonly at: number;
}

/** What a revocation is told from: a device's enabled flag and secret hash, as last read. */
export interface Seen {
  readonly enabled: boolean;
  readonly secretHash: string;
}

/** The devices revoked between two reads of the registry: removed, disabled, secret rotated. */
export function revocationsBetween(
  before: ReadonlyMap<string, Seen>,
  after: ReadonlyMap<string, Seen>,
  at: number,
): DeviceRevocation[] {
  const revoked: DeviceRevocation[] = [];
  for (const [deviceId, was] of before) {
    const now = after.get(deviceId);
    if (now === undefined) revoked.push({ deviceId, why: "removed", at });
    else if (was.enabled && !now.enabled) revoked.push({ deviceId, why: "disabled", at });
    else if (was.secretHash !== now.secretHash) revoked.push({ deviceId, why: "rotated", at });
  }
  return revoked;
}

/** Log each revocation and tell every listener; a listener that throws is logged, not fatal. */
export function tellRevoked(
  revoked: readonly DeviceRevocation[],
  listeners: Iterable<(revocation: DeviceRevocation) => void>,
  log: Logger,
): void {
  for (const revocation of revoked) {
    log.info(revocation, "device revoked in the registry");
    for (const listener of listeners) {
      try {
        listener(revocation);
      } catch (error) {
        log.error(
          { err: (error as Error).message, device: revocation.deviceId },
          "device revocation listener failed",
        );
      }
    }
  }
}

export interface RevocationWatchOptions {
  /** How often the file is looked at when nobody asks; default 100 ms. */
  readonly intervalMs?: number;
  readonly log: Logger;
  readonly now?: () => number;
}

export class RegistryRevocations {
  readonly #db: Database.Database;
  readonly #version: Database.Statement;
  readonly #devices: Database.Statement;
  readonly #listeners = new Set<(revocation: DeviceRevocation) => void>();
  #seenVersion: number;
  #generation = 0;
  #seen: Map<string, Seen>;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    readonly file: string,
    private readonly options: RevocationWatchOptions,
  ) {
    this.#db = new Database(file, { readonly: true, fileMustExist: true });
    this.#version = this.#db.prepare("PRAGMA data_version").pluck();
    this.#devices = this.#db.prepare("SELECT id, enabled, secret_hash FROM device");
    this.#seenVersion = this.#version.get() as number;
    this.#seen = this.#read();
  }

  /** Hear of each device revoked (disabled, removed, secret rotated); returns the unsubscribe. */
  onRevoked(listener: (revocation: DeviceRevocation) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * How many changes of the registry file the watch has seen (by any connection, this process's
   * included). Asking looks at the file first: on a change the listeners hear of every device
   * revoked before this returns. Each consumer compares with the generation it saw last
   * (`withRevocations`), so the poll seeing a change first hides it from nobody.
   */
  generation(): number {
    this.#look();
    return this.#generation;
  }

  #look(): void {
    if (this.#closed) return;
    const version = this.#version.get() as number;
    if (version === this.#seenVersion) return;
    this.#seenVersion = version;
    this.#generation++;
    const next = this.#read();
    const revoked = revocationsBetween(this.#seen, next, (this.options.now ?? Date.now)());
    this.#seen = next;
    tellRevoked(revoked, this.#listeners, this.options.log);
  }

  /** Look at the file every `intervalMs` (so listeners hear of a change when nobody asks). */
  start(): void {
    this.#timer ??= setInterval(() => {
      try {
        this.#look();
      } catch (error) {
        this.options.log.warn(
          { err: (error as Error).message },
          "registry revocation watch could not read the registry; trying again",
        );
      }
    }, this.options.intervalMs ?? 100);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#closed = true;
    this.#db.close();
  }

  #read(): Map<string, Seen> {
    const rows = this.#devices.all() as Array<{ id: string; enabled: number; secret_hash: string }>;
    return new Map(
      rows.map((r) => [r.id, { enabled: r.enabled === 1, secretHash: r.secret_hash }] as const),
    );
  }
}

/**
 * A registry view with its own `changed()` over the watch's generation: the ingest drops its lookup cache when it
 * answers true (ingest/app.ts), so a revocation reaches the next reading, not one 5 s later.
 */
export function withRevocations<V extends object>(
  view: V,
  revocations: Pick<RegistryRevocations, "generation">,
): V & { changed(): boolean } {
  let seen = revocations.generation();
  return {
    ...view,
    changed: () => {
      const now = revocations.generation();
      if (now === seen) return false;
      seen = now;
      return true;
    },
  };
}
