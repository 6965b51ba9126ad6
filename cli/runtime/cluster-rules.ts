import type pg from "pg";
import type { Logger } from "pino";
import { type BackoffPolicy, backoffDelayMs } from "../../infra/backoff.js";
import type { Device, Site } from "../../contracts/index.js";
import { partitionOf, partitionOfSubject } from "../../cluster/partition.js";
import { readAlarmStates } from "../../rules/alarm-store-postgres.js";
import type { RulesDriver, RulesRegistry } from "../../rules/driver.js";

/*
 * A cluster node's rules in scope (issue #21, docs/cluster.md): the devices and sites of the
 * partitions this node owns, by the partition of their site, as the registry the rules driver
 * reads; and the driver rescoped (RulesDriver.rescope) whenever the lease keeper reports a
 * partition acquired or lost.
 *
 * The scope is the partitions whose alarm states the driver holds, not the leases of the moment:
 * a partition acquired enters it only once its states are read from PostgreSQL (a driver that
 * judged a site before would judge it from a fresh state and raise again what the dead owner
 * raised); a partition lost leaves it at once (RulesDriver.narrow: its subjects are no longer
 * judged; its alarm-state writes are fenced anyway). A rescope that fails (PostgreSQL out of
 * reach) is tried again after a backoff until it succeeds: a cluster whose leases stay put sends
 * no further event.
 */

const RETRY: BackoffPolicy = { baseMs: 250, capMs: 10_000, jitter: "equal" };

export interface RulesScopeDeps {
  /** A pool on the migrated schema (its alarm_states table). */
  readonly pool: pg.Pool;
  /** The partition count, the same on every node. */
  readonly partitions: number;
  /** The partitions this node holds now (the lease keeper's owned()). */
  readonly owned: () => ReadonlyMap<number, unknown>;
  /** The whole registry. */
  readonly registry: RulesRegistry;
  readonly log?: Logger;
}

export class RulesScope {
  readonly #deps: RulesScopeDeps;
  readonly #scoped = new Set<number>();
  /** Device id → site id, rebuilt when a device is not found. */
  #siteOfDevice = new Map<string, string>();
  #driver: Pick<RulesDriver, "rescope" | "narrow"> | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #rescopes = 0;
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  #scheduled = false;
  #narrowing = false;
  #stopped = false;

  /** The registry as the driver reads it: the devices and sites of the partitions in scope. */
  readonly registry: RulesRegistry = {
    devices: (): Device[] =>
      this.#deps.registry.devices().filter((d) => this.#scoped.has(this.#partition(d.siteId))),
    sites: (): Site[] =>
      this.#deps.registry.sites().filter((s) => this.#scoped.has(this.#partition(s.id))),
  };

  constructor(deps: RulesScopeDeps) {
    this.#deps = deps;
  }

  /** The partition whose lease covers a subject (`device:<id>`, `site:<id>`, `segment:<id>`). */
  partitionOfSubject = (subject: string): number =>
    partitionOfSubject(subject, this.#deps.partitions, (deviceId) => {
      let site = this.#siteOfDevice.get(deviceId);
      if (site === undefined) {
        this.#siteOfDevice = new Map(this.#deps.registry.devices().map((d) => [d.id, d.siteId]));
        site = this.#siteOfDevice.get(deviceId);
      }
      return site;
    });

  /** The partitions whose states the driver holds. */
  scoped(): ReadonlySet<number> {
    return this.#scoped;
  }

  /** Rescopes done so far. */
  get rescopes(): number {
    return this.#rescopes;
  }

  /** The driver to rescope; rescoped at once to the partitions held now. */
  attach(driver: Pick<RulesDriver, "rescope" | "narrow">): Promise<void> {
    this.#driver = driver;
    return this.changed();
  }

  /** The keeper acquired a partition: rescope after this turn (once for a round's burst). */
  acquired = (): void => {
    this.#schedule();
  };

  /** The keeper lost a partition: out of scope and out of the driver at once, then rescope. */
  lost = (partition: number): void => {
    if (this.#stopped) return;
    if (this.#scoped.delete(partition) && !this.#narrowing) {
      // Once for a round's losses (a failed round drops every lease in one loop), before any
      // reading or tick is handled.
      this.#narrowing = true;
      queueMicrotask(() => {
        this.#narrowing = false;
        if (!this.#stopped) this.#driver?.narrow();
      });
    }
    this.#schedule();
  };

  /** Stops: no rescope, retry or narrowing after this (the node is stopping). */
  stop(): void {
    this.#stopped = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  #schedule(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.changed();
    });
  }

  /**
   * Rescope to the partitions held now; resolves when the scope has caught up with them (a change
   * during a rescope is followed by another), or when a rescope failed (logged, and tried again
   * after a backoff).
   */
  changed(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    if (this.#retry !== undefined) {
      clearTimeout(this.#retry);
      this.#retry = undefined;
    }
    const run = async () => {
      do {
        this.#again = false;
        try {
          await this.#rescope();
          this.#failures = 0;
        } catch (err) {
          if (this.#stopped) return;
          const delay = backoffDelayMs(this.#failures++, RETRY);
          this.#deps.log?.error(
            { err: err instanceof Error ? err.message : String(err), retryInMs: delay },
            "rules: could not take partitions over; trying again",
          );
          if (this.#retry !== undefined) clearTimeout(this.#retry);
          this.#retry = setTimeout(() => {
            this.#retry = undefined;
            void this.changed();
          }, delay);
          this.#retry.unref();
          return;
        }
      } while (this.#again);
    };
    this.#running = run().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #rescope(): Promise<void> {
    const driver = this.#driver;
    if (driver === undefined) return;
    const owned = this.#deps.owned();
    for (const p of [...this.#scoped]) if (!owned.has(p)) this.#scoped.delete(p);
    const taken = [...owned.keys()].filter((p) => !this.#scoped.has(p));
    const states = taken.length === 0 ? [] : await readAlarmStates(this.#deps.pool, taken);
    // Held throughout the read, under the same lease: in scope. Lost meanwhile (even if taken
    // again since: another node may have written its states after the read): left out, and
    // read again at the next rescope.
    const still = this.#deps.owned();
    for (const p of taken) if (still.has(p) && still.get(p) === owned.get(p)) this.#scoped.add(p);
    for (const p of [...this.#scoped]) if (!still.has(p)) this.#scoped.delete(p);
    await driver.rescope(
      states.filter((s) => this.#scoped.has(this.partitionOfSubject(s.subject))),
    );
    this.#rescopes += 1;
    this.#deps.log?.info(
      { partitions: this.#scoped.size, taken: taken.length, states: states.length },
      "rules: partitions in scope changed",
    );
  }

  #partition(key: string): number {
    return partitionOf(key, this.#deps.partitions);
  }
}
