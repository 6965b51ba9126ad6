import {
  type AuthOutcome,
  Device,
  type DeviceInput,
  type RegistryFile,
  ServiceAccount,
  Site,
} from "../contracts/index.js";
import { Party, PartyInput } from "../contracts/model/registry.js";
import { PostgresStore } from "../infra/postgres/store-base.js";
import { generateSecret, hashSecret, verifySecret } from "./secrets.js";
import type { AsyncRegistryStore, AsyncRegistryView } from "./store-port.js";
import {
  accountRow,
  checkNewSite,
  devicePrincipal,
  docOf,
  inlineCreditCode,
  invalidRecordsOf,
  type InvalidRecord,
  type Issued,
  partyKeyOf,
  planParty,
  planSiteRemoval,
  readRecord,
  refusal,
  registeredDevice,
  type RemovedSite,
  sameDevice,
  servicePrincipal,
  sitesOfPartyFrom,
  withoutNeighbour,
  withPartyRecord,
} from "./decisions.js";

/*
 * The registry in PostgreSQL (issue #21), shared by the nodes: the tables of the embedded
 * registry.db (registry/store.ts, whose doc comments say what each method means), prefixed
 * registry_ (migration 6, infra/postgres/schema.ts). The same suite runs against both
 * (tests/integration/registry/registry-store.test.ts). Validation, refusals, warnings, secret
 * hashing and how records combine are registry/store.ts's own functions.
 *
 * What differs from SQLite, and why:
 * - Writes that check before they write (an id still free, a site registered, a party's sites)
 *   take a transaction-level advisory lock of the schema's registry first: one such writer at a
 *   time, as BEGIN IMMEDIATE gives in SQLite, so that two nodes cannot both find an id free (a
 *   device `ingest-1` and a service account `ingest` clash without any key saying so). Reads
 *   and authentication take no lock.
 * - A device put in service by its CONNECT (standby cleared) is read FOR UPDATE in a
 *   transaction, so that of two CONNECTs at once one is told it left standby, and an update of
 *   the device meanwhile (disabled, say) is not lost.
 * - Records are text as written (not jsonb, which would reorder their keys); standby is read
 *   and cleared in the record here rather than with SQLite's json functions.
 */

interface DeviceRow {
  doc: string;
  generation: number;
  registered_at: string;
}

const SELECT_DEVICE = `SELECT d.doc AS doc, coalesce(g.generation, 1) AS generation,
       coalesce(g.registered_at, d.created_at) AS registered_at
     FROM registry_device d LEFT JOIN registry_device_generation g ON g.id = d.id`;

const deviceOf = (row: DeviceRow): Device =>
  registeredDevice(row.doc, row.generation, row.registered_at);

const sitesOf = (rows: ReadonlyArray<{ doc: string }>): Site[] =>
  rows.map((r) => readRecord(Site, r.doc));

const partiesOf = (rows: ReadonlyArray<{ doc: string }>): Party[] =>
  rows.map((r) => readRecord(Party, r.doc));

export class PostgresRegistryStore
  extends PostgresStore<PostgresRegistryStore>
  implements AsyncRegistryStore
{
  protected another(): PostgresRegistryStore {
    return new PostgresRegistryStore(this.pool);
  }

  transaction<T>(work: (tx: AsyncRegistryStore) => Promise<T>): Promise<T> {
    return this.within(work);
  }

  /**
   * A write that takes the registry's write lock first (see the top of this file), whole or not
   * at all: its own transaction, or inside a caller's a savepoint, undone when it fails (as
   * better-sqlite3 nests the embedded store's transactions), the caller's transaction going on.
   */
  #write<T>(work: (tx: PostgresRegistryStore) => Promise<T>): Promise<T> {
    const locked = async (tx: PostgresRegistryStore) => {
      await tx.query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.registry'))");
      return work(tx);
    };
    if (!this.joined) return this.within(locked);
    return this.#savepoint(() => locked(this));
  }

  async #savepoint<T>(work: () => Promise<T>): Promise<T> {
    await this.query("SAVEPOINT registry_write");
    try {
      const value = await work();
      await this.query("RELEASE SAVEPOINT registry_write");
      return value;
    } catch (error) {
      await this.query("ROLLBACK TO SAVEPOINT registry_write");
      await this.query("RELEASE SAVEPOINT registry_write");
      throw error;
    }
  }

  /** The pool is the caller's: it ends it. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Would `id` clash with an existing MQTT identity? (RegistryStore.principalExists) */
  async #principalExists(id: string): Promise<boolean> {
    const row = await this.row(
      `SELECT 1 FROM registry_device WHERE id = $1 OR substr(id, 1, length($1) + 1) = $1 || '-'
       UNION SELECT 1 FROM registry_service_account
         WHERE name = $1 OR substr($1, 1, length(name) + 1) = name || '-'`,
      [id],
    );
    return row !== undefined;
  }

  async putSite(input: unknown): Promise<Site> {
    const site = Site.parse(input);
    await this.query(
      `INSERT INTO registry_site (id, type, doc) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET type = excluded.type, doc = excluded.doc`,
      [site.id, site.type, JSON.stringify(site)],
    );
    return site;
  }

  async addSite(input: unknown, options: { replace?: boolean } = {}): Promise<Site> {
    const site = Site.parse(input);
    return this.#write(async (tx) => {
      const wanted = [site.id, ...(site.type === "tunnel_segment" ? site.neighbours : [])];
      const rows = await tx.rows<{ id: string }>(
        "SELECT id FROM registry_site WHERE id = ANY($1::text[])",
        [wanted],
      );
      const registered = new Set(rows.map((r) => r.id));
      checkNewSite(site, options, (id) => registered.has(id));
      return tx.putSite(site);
    });
  }

  async devicesAt(siteId: string): Promise<Device[]> {
    const rows = await this.rows<{ doc: string }>(
      "SELECT doc FROM registry_device WHERE site_id = $1 ORDER BY id",
      [siteId],
    );
    return rows.map((r) => readRecord(Device, r.doc));
  }

  removeSite(id: string, options: { force?: boolean } = {}): Promise<RemovedSite> {
    return this.#write(async (tx) => {
      const site = await tx.getSite(id);
      if (site === undefined) throw refusal.siteUnknown(id);
      const devices = (await tx.devicesAt(id)).map((d) => d.id as string);
      const { segments, neighbourOf } = planSiteRemoval(
        site,
        devices,
        await tx.listSites(),
        options.force === true,
      );
      await tx.query("DELETE FROM registry_device WHERE site_id = $1", [id]);
      for (const segment of segments) await tx.putSite(withoutNeighbour(segment, id));
      await tx.query("DELETE FROM registry_site WHERE id = $1", [id]);
      return { site, devices, neighbourOf };
    });
  }

  async getSite(id: string): Promise<Site | undefined> {
    return sitesOf(await this.rows("SELECT doc FROM registry_site WHERE id = $1", [id]))[0];
  }

  async listSites(): Promise<Site[]> {
    return sitesOf(await this.rows("SELECT doc FROM registry_site ORDER BY id"));
  }

  async addDevice(input: DeviceInput): Promise<Issued<Device>> {
    const device = Device.parse(input);
    return this.#write(async (tx) => {
      if (await tx.#principalExists(device.id)) throw refusal.principalExists(device.id);
      if ((await tx.getSite(device.siteId)) === undefined)
        throw refusal.deviceSiteUnknown(device.siteId);
      const secret = generateSecret();
      const now = new Date().toISOString();
      const doc = docOf(device);
      await tx.query(
        `INSERT INTO registry_device (id, kind, site_id, enabled, secret_hash, doc, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [
          device.id,
          device.kind,
          device.siteId,
          device.enabled,
          hashSecret(secret),
          JSON.stringify(doc),
          now,
        ],
      );
      // A new registration is a new identity: the next generation of this id.
      const row = await tx.row<{ generation: number }>(
        `INSERT INTO registry_device_generation (id, generation, registered_at) VALUES ($1, 1, $2)
         ON CONFLICT (id) DO UPDATE SET generation = registry_device_generation.generation + 1,
           registered_at = excluded.registered_at
         RETURNING generation`,
        [device.id, now],
      );
      return { record: { ...doc, generation: row?.generation ?? 1, registeredAt: now }, secret };
    });
  }

  async getDevice(id: string): Promise<Device | undefined> {
    const row = await this.row<DeviceRow>(`${SELECT_DEVICE} WHERE d.id = $1`, [id]);
    return row === undefined ? undefined : deviceOf(row);
  }

  async listDevices(): Promise<Device[]> {
    return (await this.rows<DeviceRow>(`${SELECT_DEVICE} ORDER BY d.id`)).map(deviceOf);
  }

  view(): AsyncRegistryView {
    return {
      device: (id) => this.getDevice(id),
      site: (id) => this.getSite(id),
      devices: () => this.listDevices(),
      sites: () => this.listSites(),
    };
  }

  async invalidRecords(): Promise<InvalidRecord[]> {
    const sites = await this.rows<{ id: string; doc: string }>(
      "SELECT id, doc FROM registry_site ORDER BY id",
    );
    const devices = await this.rows<{ id: string; doc: string }>(
      "SELECT id, doc FROM registry_device ORDER BY id",
    );
    return [
      ...invalidRecordsOf("site", Site, sites),
      ...invalidRecordsOf("device", Device, devices),
    ];
  }

  async countDevices(): Promise<number> {
    const row = await this.row<{ n: string }>("SELECT count(*) AS n FROM registry_device");
    return Number(row?.n ?? 0);
  }

  /** Change a device's record (and columns) under a row lock: no concurrent change is lost. */
  #changeDevice(id: string, change: (device: Device) => Device): Promise<void> {
    return this.within(async (tx) => {
      const row = await tx.row<DeviceRow>(`${SELECT_DEVICE} WHERE d.id = $1 FOR UPDATE OF d`, [id]);
      if (row === undefined) throw refusal.deviceUnknown(id);
      const device = change(deviceOf(row));
      await tx.query("UPDATE registry_device SET enabled = $2, doc = $3 WHERE id = $1", [
        id,
        device.enabled,
        JSON.stringify(docOf(device)),
      ]);
    });
  }

  setDeviceEnabled(id: string, enabled: boolean): Promise<void> {
    return this.#changeDevice(id, (device) => ({ ...device, enabled }));
  }

  putOnStandby(id: string): Promise<void> {
    return this.#changeDevice(id, (device) => ({ ...device, standby: true }));
  }

  async removeDevice(id: string): Promise<void> {
    if ((await this.count("DELETE FROM registry_device WHERE id = $1", [id])) === 0)
      throw refusal.deviceUnknown(id);
  }

  /** Clear a device's standby flag; false when it was not on standby (or is not registered). */
  #putInService(id: string): Promise<boolean> {
    return this.within(async (tx) => {
      const row = await tx.row<{ doc: string }>(
        "SELECT doc FROM registry_device WHERE id = $1 FOR UPDATE",
        [id],
      );
      if (row === undefined) return false;
      const { standby, ...doc } = JSON.parse(row.doc) as Record<string, unknown>;
      if (standby !== true) return false;
      await tx.query("UPDATE registry_device SET doc = $2 WHERE id = $1", [
        id,
        JSON.stringify(doc),
      ]);
      return true;
    });
  }

  async rotateSecret(id: string): Promise<string> {
    const secret = generateSecret();
    const row = await this.row<{ n: string }>(
      `WITH d AS (UPDATE registry_device SET secret_hash = $1 WHERE id = $2 RETURNING 1),
            s AS (UPDATE registry_service_account SET secret_hash = $1 WHERE name = $2 RETURNING 1)
       SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM s) AS n`,
      [hashSecret(secret), id],
    );
    if (Number(row?.n ?? 0) === 0) throw refusal.principalUnknown(id);
    return secret;
  }

  async addServiceAccount(input: unknown): Promise<Issued<ServiceAccount>> {
    const account = ServiceAccount.parse(input);
    return this.#write(async (tx) => {
      if (await tx.#principalExists(account.name)) throw refusal.principalExists(account.name);
      const secret = generateSecret();
      await tx.query(
        `INSERT INTO registry_service_account (name, role, secret_hash, doc, created_at)
         VALUES ($1, $2, $3, $4, $5)`,
        [...accountRow(account, secret)],
      );
      return { record: account, secret };
    });
  }

  async listServiceAccounts(): Promise<ServiceAccount[]> {
    const rows = await this.rows<{ doc: string }>(
      "SELECT doc FROM registry_service_account ORDER BY name",
    );
    return rows.map((r) => ServiceAccount.parse(JSON.parse(r.doc)));
  }

  importFile(file: RegistryFile): Promise<{
    devices: Issued<Device>[];
    serviceAccounts: Issued<ServiceAccount>[];
    kept: string[];
  }> {
    return this.#write(async (tx) => {
      for (const site of file.sites) await tx.putSite(site);
      // Parties after their sites (a party lists the sites it runs).
      if (file.parties.length > 0) await tx.importParties(file.parties);
      const kept: string[] = [];
      const devices: Issued<Device>[] = [];
      for (const input of file.devices) {
        const existing = await tx.getDevice(input.id);
        if (existing === undefined) devices.push(await tx.addDevice(input));
        else if (sameDevice(existing, input)) kept.push(input.id);
        else throw refusal.deviceRedefined(input.id);
      }
      const serviceAccounts: Issued<ServiceAccount>[] = [];
      const accounts = new Map((await tx.listServiceAccounts()).map((a) => [a.name as string, a]));
      for (const input of file.serviceAccounts) {
        const existing = accounts.get(input.name);
        if (existing?.role === input.role) kept.push(input.name);
        else if (existing !== undefined)
          throw refusal.accountRedefined(input.name, existing.role, input.role);
        else serviceAccounts.push(await tx.addServiceAccount(input));
      }
      return { devices, serviceAccounts, kept };
    });
  }

  async authenticate(username: string, secret: string): Promise<AuthOutcome> {
    const device = await this.row<{
      kind: string;
      enabled: boolean;
      secret_hash: string;
      standby: boolean | null;
    }>(
      `SELECT kind, enabled, secret_hash, (doc::jsonb -> 'standby') = 'true'::jsonb AS standby
       FROM registry_device WHERE id = $1`,
      [username],
    );
    if (device !== undefined) {
      if (!verifySecret(secret, device.secret_hash)) return { ok: false, reason: "bad_secret" };
      if (!device.enabled) return { ok: false, reason: "disabled" };
      const principal = devicePrincipal(username, device.kind);
      if (device.standby === true && (await this.#putInService(username)))
        return { ok: true, principal, leftStandby: true };
      return { ok: true, principal };
    }
    const account = await this.row<{ role: string; secret_hash: string }>(
      "SELECT role, secret_hash FROM registry_service_account WHERE name = $1",
      [username],
    );
    if (account !== undefined) {
      if (!verifySecret(secret, account.secret_hash)) return { ok: false, reason: "bad_secret" };
      return servicePrincipal(username, account.role);
    }
    return { ok: false, reason: "unknown_user" };
  }

  // -------------------------------------------------------------------------------------------
  // Regulated parties (issue #18 item 3)

  async putParty(
    input: unknown,
    options: { replace?: boolean; now?: number } = {},
  ): Promise<{ party: Party; warnings: string[]; created: boolean }> {
    const parsed = PartyInput.parse(input);
    return this.#write((tx) => tx.#writeParty(parsed, options));
  }

  async importParties(
    inputs: readonly unknown[],
    options: { now?: number } = {},
  ): Promise<{ created: Party[]; replaced: Party[]; warnings: string[] }> {
    const parsed = inputs.map((i) => PartyInput.parse(i));
    return this.#write(async (tx) => {
      const created: Party[] = [];
      const replaced: Party[] = [];
      const warnings: string[] = [];
      for (const input of parsed) {
        const result = await tx.#writeParty(input, { replace: true, now: options.now });
        (result.created ? created : replaced).push(result.party);
        warnings.push(...result.warnings);
      }
      return { created, replaced, warnings };
    });
  }

  async getParty(key: string): Promise<Party | undefined> {
    return partiesOf(await this.rows("SELECT doc FROM registry_party WHERE key = $1", [key]))[0];
  }

  async listParties(): Promise<Party[]> {
    return partiesOf(await this.rows("SELECT doc FROM registry_party ORDER BY name, key"));
  }

  async partyOfSite(siteId: string): Promise<Party | undefined> {
    const listed = await this.row<{ doc: string }>(
      `SELECT p.doc FROM registry_party_site ps JOIN registry_party p ON p.key = ps.party_key
       WHERE ps.site_id = $1`,
      [siteId],
    );
    if (listed !== undefined) return readRecord(Party, listed.doc);
    const code = inlineCreditCode(await this.getSite(siteId));
    return code === undefined ? undefined : this.getParty(code);
  }

  async resolvedSite(id: string): Promise<Site | undefined> {
    const site = await this.getSite(id);
    if (site === undefined || !("regulatedParty" in site)) return site;
    return withPartyRecord(site, await this.partyOfSite(id));
  }

  async sitesOfParty(key: string): Promise<string[]> {
    const party = await this.getParty(key);
    if (party === undefined) return [];
    const owners = await this.#owners();
    return sitesOfPartyFrom(party, await this.listSites(), (siteId) => owners.get(siteId));
  }

  resolvedView(): AsyncRegistryView {
    return {
      ...this.view(),
      site: (id) => this.resolvedSite(id),
      sites: () => this.#resolvedSites(),
    };
  }

  /** Every site with its party resolved (resolvedSite), from three reads in one transaction. */
  #resolvedSites(): Promise<Site[]> {
    return this.within(async (tx) => {
      const sites = await tx.listSites();
      const owners = await tx.#owners();
      const parties = new Map((await tx.listParties()).map((p) => [p.key, p]));
      return sites.map((site) => {
        const key = owners.get(site.id) ?? inlineCreditCode(site);
        return withPartyRecord(site, key === undefined ? undefined : parties.get(key));
      });
    });
  }

  partyKey(input: { readonly creditCode?: string | undefined; readonly name: string }): string {
    return partyKeyOf(input);
  }

  /** The party whose record lists each site, by site. */
  async #owners(siteIds?: readonly string[]): Promise<Map<string, string>> {
    const rows = await this.rows<{ site_id: string; party_key: string }>(
      `SELECT site_id, party_key FROM registry_party_site
       WHERE $1::text[] IS NULL OR site_id = ANY($1::text[])`,
      [siteIds ?? null],
    );
    return new Map(rows.map((r) => [r.site_id, r.party_key]));
  }

  async #writeParty(
    input: ReturnType<typeof PartyInput.parse>,
    options: { replace?: boolean | undefined; now?: number | undefined },
  ): Promise<{ party: Party; warnings: string[]; created: boolean }> {
    const key = this.partyKey(input);
    const siteIds = [...new Set(input.sites)];
    const owners = await this.#owners(siteIds);
    const sites = new Map(
      sitesOf(
        await this.rows("SELECT doc FROM registry_site WHERE id = ANY($1::text[])", [siteIds]),
      ).map((s) => [s.id as string, s]),
    );
    const planned = planParty(
      input,
      key,
      await this.getParty(key),
      options,
      (siteId) => owners.get(siteId),
      (siteId) => sites.get(siteId),
    );
    const { party } = planned;
    await this.query(
      `INSERT INTO registry_party (key, credit_code, name, doc) VALUES ($1, $2, $3, $4)
       ON CONFLICT (key) DO UPDATE SET credit_code = excluded.credit_code, name = excluded.name,
         doc = excluded.doc`,
      [key, party.creditCode ?? null, party.name, JSON.stringify(party)],
    );
    await this.query("DELETE FROM registry_party_site WHERE party_key = $1", [key]);
    await this.query(
      `INSERT INTO registry_party_site (site_id, party_key)
       SELECT unnest($1::text[]), $2`,
      [party.sites, key],
    );
    return planned;
  }
}
