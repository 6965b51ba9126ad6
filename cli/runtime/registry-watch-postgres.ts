import type pg from "pg";
import type { Logger } from "pino";
import type { Device, Site } from "../../contracts/index.js";
import type { RegistryView } from "../../ingest/app.js";
import type { AsyncRegistryStore } from "../../registry/store-port.js";
import {
  type DeviceRevocation,
  revocationsBetween,
  type Seen,
  tellRevoked,
} from "./revocations.js";

/*
 * The registry of a cluster node, in memory (issue #21). The broker's partition of a message,
 * the ingest's decoding and the rules read the registry synchronously, many times a second; the
 * registry is in PostgreSQL, shared by the nodes and changed by any of them or by the CLI. So
 * each node holds a copy: every site (its party resolved) and device, read whole at start and
 * again whenever `registry_change` (migration 9, counted by triggers on every registry table)
 * moved on. One poll reads that one row (every `intervalMs`, 1 s by default), so another node's
 * change reaches this one within about a second.
 *
 * - A device that authenticates but is not in the copy yet (registered a moment ago elsewhere)
 *   makes its CONNECT wait for a fresh read (`knows`/`refresh`), so its first reading is never
 *   dead-lettered as unknown because of the copy's age.
 * - Revocations (disabled, removed, secret rotated) are told to listeners as the SQLite watch
 *   (revocations.ts) tells them: the broker closes the device's sessions.
 * - A read that fails keeps the copy as it was and is tried again at the next poll; the failure
 *   is logged once until a read succeeds again.
 */

export interface RegistryWatchOptions {
  readonly pool: pg.Pool;
  readonly store: AsyncRegistryStore;
  readonly log: Logger;
  /** How often `registry_change` is read; default 1,000 ms. */
  readonly intervalMs?: number;
  readonly now?: () => number;
}

interface Snapshot {
  readonly version: string;
  readonly devices: readonly Device[];
  readonly sites: readonly Site[];
  readonly device: ReadonlyMap<string, Device>;
  readonly site: ReadonlyMap<string, Site>;
  readonly seen: ReadonlyMap<string, Seen>;
}

export class PostgresRegistryWatch {
  readonly #options: RegistryWatchOptions;
  readonly #listeners = new Set<(revocation: DeviceRevocation) => void>();
  #snapshot: Snapshot;
  /** Bumped on every new copy: each view's `changed()` compares with the one it saw. */
  #generation = 0;
  #reading: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  #closed = false;

  private constructor(options: RegistryWatchOptions, snapshot: Snapshot) {
    this.#options = options;
    this.#snapshot = snapshot;
  }

  /** The watch with its first copy (a registry that cannot be read stops the start). */
  static async open(options: RegistryWatchOptions): Promise<PostgresRegistryWatch> {
    const version = await readVersion(options.pool);
    return new PostgresRegistryWatch(options, await readSnapshot(options, version));
  }

  /** The copy as the ingest and the rules read it, with its own `changed()`. */
  view(): RegistryView {
    let seen = this.#generation;
    return {
      device: (id) => this.#snapshot.device.get(id),
      site: (id) => this.#snapshot.site.get(id),
      devices: () => [...this.#snapshot.devices],
      sites: () => [...this.#snapshot.sites],
      changed: () => {
        if (seen === this.#generation) return false;
        seen = this.#generation;
        return true;
      },
    };
  }

  /** Whether the copy holds this device at this generation (or any, when none is given). */
  knows(deviceId: string, generation?: number): boolean {
    const device = this.#snapshot.device.get(deviceId);
    return (
      device !== undefined && (generation === undefined || (device.generation ?? 1) === generation)
    );
  }

  /** Hear of each device revoked (disabled, removed, secret rotated); returns the unsubscribe. */
  onRevoked(listener: (revocation: DeviceRevocation) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Read `registry_change`, and the registry again if it moved on. Calls while a read is in
   * flight wait for one more read after it (a change made just before the call is seen).
   */
  refresh(): Promise<void> {
    const next = (this.#reading ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.#look());
    this.#reading = next;
    return next;
  }

  /** Poll every `intervalMs` until close(). */
  start(): void {
    this.#timer ??= setInterval(() => {
      this.refresh().catch(() => undefined);
    }, this.#options.intervalMs ?? 1_000);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #look(): Promise<void> {
    if (this.#closed) return;
    const { log } = this.#options;
    try {
      const version = await readVersion(this.#options.pool);
      if (version === this.#snapshot.version) return this.#recovered();
      const next = await readSnapshot(this.#options, version);
      if (this.#closed) return;
      const before = this.#snapshot;
      this.#snapshot = next;
      this.#generation++;
      this.#recovered();
      const now = (this.#options.now ?? Date.now)();
      tellRevoked(revocationsBetween(before.seen, next.seen, now), this.#listeners, log);
    } catch (error) {
      if (!this.#failing)
        log.warn(
          { err: (error as Error).message },
          "the registry could not be read from PostgreSQL; keeping the copy held and trying again",
        );
      this.#failing = true;
      throw error;
    }
  }

  #recovered(): void {
    if (this.#failing) this.#options.log.info("the registry is read from PostgreSQL again");
    this.#failing = false;
  }
}

async function readVersion(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ version: string }>("SELECT version FROM registry_change");
  const version = rows[0]?.version;
  if (version === undefined) throw new Error("registry_change has no row (migration 9)");
  return version;
}

/** The whole registry, read after `version` was: a change after it moves the count on again. */
async function readSnapshot(options: RegistryWatchOptions, version: string): Promise<Snapshot> {
  const view = options.store.resolvedView();
  const [devices, sites, secrets] = await Promise.all([
    view.devices(),
    view.sites(),
    options.pool.query<{ id: string; enabled: boolean; secret_hash: string }>(
      "SELECT id, enabled, secret_hash FROM registry_device",
    ),
  ]);
  return {
    version,
    devices,
    sites,
    device: new Map(devices.map((d) => [d.id, d])),
    site: new Map(sites.map((s) => [s.id, s])),
    seen: new Map(
      secrets.rows.map((r) => [r.id, { enabled: r.enabled, secretHash: r.secret_hash }]),
    ),
  };
}
