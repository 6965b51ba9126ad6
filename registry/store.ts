import type Database from "better-sqlite3";
import {
  type AuthOutcome,
  Device,
  type DeviceInput,
  type RegistryFile,
  ServiceAccount,
  Site,
} from "../contracts/index.js";
import type { z } from "zod";
import { type Held, holdWrite, openSqlite } from "../infra/sqlite-file.js";
import { generateSecret, hashSecret, verifySecret } from "./secrets.js";
import { Party, PartyInput } from "../contracts/model/registry.js";

export * from "./decisions.js";
import {
  accountRow,
  checkNewSite,
  devicePrincipal,
  docOf,
  inlineCreditCode,
  type InvalidRecord,
  invalidRecordsOf,
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

/**
 * Schema steps, counted in `user_version` as infra/sqlite-file.ts counts them. The registry has
 * recorded its version this way since its first schema, so files written before it used the
 * shared opener open unchanged (user_version 1 = the first step).
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE site (
     id TEXT PRIMARY KEY,
     type TEXT NOT NULL,
     doc TEXT NOT NULL
   );
   CREATE TABLE device (
     id TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     site_id TEXT NOT NULL REFERENCES site(id),
     enabled INTEGER NOT NULL,
     secret_hash TEXT NOT NULL,
     doc TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE INDEX device_site ON device(site_id);
   CREATE TABLE service_account (
     name TEXT PRIMARY KEY,
     role TEXT NOT NULL,
     secret_hash TEXT NOT NULL,
     doc TEXT NOT NULL,
     created_at TEXT NOT NULL
   );`,
  // Issue #16 item 5: a device's identity is its registration. Each registration of an id gets
  // the next generation, kept here after the device is removed so that the id registered again
  // never takes an old generation. Devices registered before this step are generation 1.
  // Idempotent: IF NOT EXISTS and OR IGNORE, so a file another process migrated first (or a
  // copy restored from before the step) opens unchanged.
  `CREATE TABLE IF NOT EXISTS device_generation (
     id TEXT PRIMARY KEY,
     generation INTEGER NOT NULL,
     registered_at TEXT NOT NULL
   );
   INSERT OR IGNORE INTO device_generation (id, generation, registered_at)
     SELECT id, 1, created_at FROM device;`,
  // Issue #18 item 3: regulated parties, keyed by credit code (or a generated key), with the
  // sites each party's record names (party_site: one party per site).
  `CREATE TABLE IF NOT EXISTS party (
     key TEXT PRIMARY KEY,
     credit_code TEXT UNIQUE,
     name TEXT NOT NULL,
     doc TEXT NOT NULL
   );
   CREATE TABLE IF NOT EXISTS party_site (
     site_id TEXT PRIMARY KEY,
     party_key TEXT NOT NULL REFERENCES party(key) ON DELETE CASCADE
   );
   CREATE INDEX IF NOT EXISTS party_site_party ON party_site(party_key);`,
];

export class RegistryStore {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    // Write transactions below start with BEGIN IMMEDIATE: several processes (the running system,
    // `citywatch devices`, `citywatch sim --provision`) may write at once, and a deferred
    // transaction that reads first cannot wait for the lock (SQLITE_BUSY_SNAPSHOT).
    // synchronous=FULL: a device registered (its secret shown once) survives a power cut.
    this.db = openSqlite(file, { synchronous: "FULL", foreignKeys: true, migrations: MIGRATIONS });
  }

  close(): void {
    this.db.close();
  }

  /**
   * Statements prepared once per SQL text: preparing cost each call a few µs, and the ingest's
   * device lookups (a cache miss per message for a device reporting less often than the cache's
   * 5 s) and every MQTT authentication prepared theirs anew (3.5-4.8 % of the CPU of
   * `npm run bench -- fleet`). No statement here changes mode (pluck, raw), so one serves all.
   */
  readonly #statements = new Map<string, Database.Statement>();
  #stmt(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /**
   * Would `id` clash with an existing MQTT identity? A service account may use client ids `name`
   * and `name-*`, so a device id inside that space could take over the service's session (and
   * the reverse); devices and service accounts also share one username space.
   */
  private principalExists(id: string): boolean {
    const prefixOf = "substr(?, 1, length(name) + 1) = name || '-'";
    return (
      this.#stmt(
        `SELECT 1 FROM device WHERE id = ? OR substr(id, 1, length(?) + 1) = ? || '-'
           UNION SELECT 1 FROM service_account WHERE name = ? OR ${prefixOf}`,
      ).get(id, id, id, id, id) !== undefined
    );
  }

  /** Add or replace a site (no checks beyond the schema: imports and tests). */
  putSite(input: unknown): Site {
    const site = Site.parse(input);
    this.#stmt(
      "INSERT INTO site (id, type, doc) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET type = excluded.type, doc = excluded.doc",
    ).run(site.id, site.type, JSON.stringify(site));
    return site;
  }

  /**
   * Register a site (`citywatch sites add`). The id must be new unless `replace` (the site's
   * devices stay); a tunnel segment's neighbours must be registered sites.
   */
  addSite(input: unknown, options: { replace?: boolean } = {}): Site {
    const site = Site.parse(input);
    return this.db
      .transaction(() => {
        checkNewSite(site, options, (id) => this.getSite(id) !== undefined);
        return this.putSite(site);
      })
      .immediate();
  }

  /** The devices that belong to a site. */
  devicesAt(siteId: string): Device[] {
    const rows = this.#stmt("SELECT doc FROM device WHERE site_id = ? ORDER BY id").all(siteId) as {
      doc: string;
    }[];
    return rows.map((r) => readRecord(Device, r.doc));
  }

  /**
   * Remove a site. Refused while devices belong to it or tunnel segments name it a neighbour;
   * with `force` its devices are removed too (their secrets stop working at once) and it is
   * taken out of those neighbour lists. One transaction: all of it or nothing.
   */
  removeSite(id: string, options: { force?: boolean } = {}): RemovedSite {
    return this.db
      .transaction(() => {
        const site = this.getSite(id);
        if (site === undefined) throw refusal.siteUnknown(id);
        const devices = this.devicesAt(id).map((d) => d.id as string);
        const { segments, neighbourOf } = planSiteRemoval(
          site,
          devices,
          this.listSites(),
          options.force === true,
        );
        this.#stmt("DELETE FROM device WHERE site_id = ?").run(id);
        for (const segment of segments) this.putSite(withoutNeighbour(segment, id));
        this.#stmt("DELETE FROM site WHERE id = ?").run(id);
        return { site, devices, neighbourOf };
      })
      .immediate();
  }

  getSite(id: string): Site | undefined {
    const row = this.#stmt("SELECT doc FROM site WHERE id = ?").get(id) as
      { doc: string } | undefined;
    return row === undefined ? undefined : readRecord(Site, row.doc);
  }

  listSites(): Site[] {
    const rows = this.#stmt("SELECT doc FROM site ORDER BY id").all() as { doc: string }[];
    return rows.map((r) => readRecord(Site, r.doc));
  }

  /** Register a device and issue its secret. The device's site must exist; the id must be new. */
  addDevice(input: DeviceInput): Issued<Device> {
    const device = Device.parse(input);
    return this.db
      .transaction(() => {
        if (this.principalExists(device.id)) throw refusal.principalExists(device.id);
        if (this.getSite(device.siteId) === undefined)
          throw refusal.deviceSiteUnknown(device.siteId);
        const secret = generateSecret();
        const now = new Date().toISOString();
        const doc = docOf(device);
        this.#stmt(
          "INSERT INTO device (id, kind, site_id, enabled, secret_hash, doc, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ).run(
          device.id,
          device.kind,
          device.siteId,
          device.enabled ? 1 : 0,
          hashSecret(secret),
          JSON.stringify(doc),
          now,
        );
        // A new registration is a new identity: the next generation of this id.
        const { generation } = this.#stmt(
          `INSERT INTO device_generation (id, generation, registered_at) VALUES (?, 1, ?)
               ON CONFLICT(id) DO UPDATE SET generation = generation + 1, registered_at = excluded.registered_at
             RETURNING generation`,
        ).get(device.id, now) as { generation: number };
        return { record: { ...doc, generation, registeredAt: now }, secret };
      })
      .immediate();
  }

  /** A device with its registration: generation and when (registry/store.ts MIGRATIONS[1]). */
  static readonly #SELECT_DEVICE = `SELECT d.doc AS doc, coalesce(g.generation, 1) AS generation,
       coalesce(g.registered_at, d.created_at) AS registered_at
     FROM device d LEFT JOIN device_generation g ON g.id = d.id`;

  #device(row: { doc: string; generation: number; registered_at: string }): Device {
    return registeredDevice(row.doc, row.generation, row.registered_at);
  }

  getDevice(id: string): Device | undefined {
    const row = this.#stmt(`${RegistryStore.#SELECT_DEVICE} WHERE d.id = ?`).get(id) as
      { doc: string; generation: number; registered_at: string } | undefined;
    return row === undefined ? undefined : this.#device(row);
  }

  listDevices(): Device[] {
    const rows = this.#stmt(`${RegistryStore.#SELECT_DEVICE} ORDER BY d.id`).all() as Array<{
      doc: string;
      generation: number;
      registered_at: string;
    }>;
    return rows.map((r) => this.#device(r));
  }

  /**
   * The registry read-only, as the ingest, the rules and the API read it (ingest/app.ts
   * RegistryView): lookups by id and the full lists, each answered from the database.
   */
  view(): {
    device(id: string): Device | undefined;
    site(id: string): Site | undefined;
    devices(): Device[];
    sites(): Site[];
  } {
    return {
      device: (id) => this.getDevice(id),
      site: (id) => this.getSite(id),
      devices: () => this.listDevices(),
      sites: () => this.listSites(),
    };
  }

  /**
   * Stored sites and devices a registration would now refuse (values written before the text
   * rules). Logged at start; their readings are dead-lettered (`store_rejected`) until the record
   * is registered again with values the stores can hold.
   */
  invalidRecords(): InvalidRecord[] {
    return [
      ...invalidRecordsOf(
        "site",
        Site,
        this.#stmt("SELECT id, doc FROM site ORDER BY id").all() as never,
      ),
      ...invalidRecordsOf(
        "device",
        Device,
        this.#stmt("SELECT id, doc FROM device ORDER BY id").all() as never,
      ),
    ];
  }

  countDevices(): number {
    return (this.#stmt("SELECT count(*) AS n FROM device").get() as { n: number }).n;
  }

  /** Enable or disable a device; a disabled device's CONNECT is refused as not authorized. */
  setDeviceEnabled(id: string, enabled: boolean): void {
    // Read and write in one write transaction: another process (the CLI beside a running node,
    // whose CONNECTs take devices off standby) must not write the record between them.
    this.db
      .transaction(() => {
        const device = this.getDevice(id);
        if (device === undefined) throw refusal.deviceUnknown(id);
        this.#stmt("UPDATE device SET enabled = ?, doc = ? WHERE id = ?").run(
          enabled ? 1 : 0,
          JSON.stringify(docOf({ ...device, enabled })),
          id,
        );
      })
      .immediate();
  }

  /**
   * Put a device on standby (`Device.standby`): the rules stop judging and watching it, and its
   * next accepted CONNECT puts it in service again. `citywatch sim` does this to a scenario's
   * devices when the run ends, so their silence afterwards opens no deadman.
   */
  putOnStandby(id: string): void {
    this.db
      .transaction(() => {
        const device = this.getDevice(id);
        if (device === undefined) throw refusal.deviceUnknown(id);
        this.#stmt("UPDATE device SET doc = ? WHERE id = ?").run(
          JSON.stringify(docOf({ ...device, standby: true })),
          id,
        );
      })
      .immediate();
  }

  removeDevice(id: string): void {
    const result = this.#stmt("DELETE FROM device WHERE id = ?").run(id);
    if (result.changes === 0) throw refusal.deviceUnknown(id);
  }

  /** Clear a device's standby flag; false when it was not on standby (or is not registered). */
  private putInService(id: string): boolean {
    return (
      this.#stmt(
        "UPDATE device SET doc = json_remove(doc, '$.standby') WHERE id = ? AND json_extract(doc, '$.standby') = 1",
      ).run(id).changes > 0
    );
  }

  /** Issue a new secret for a device or service account; the old one stops working at its next CONNECT. */
  rotateSecret(id: string): string {
    const secret = generateSecret();
    const hash = hashSecret(secret);
    const changed = this.db
      .transaction(
        () =>
          this.#stmt("UPDATE device SET secret_hash = ? WHERE id = ?").run(hash, id).changes +
          this.#stmt("UPDATE service_account SET secret_hash = ? WHERE name = ?").run(hash, id)
            .changes,
      )
      .immediate();
    if (changed === 0) throw refusal.principalUnknown(id);
    return secret;
  }

  /** Create a service account and issue its secret. */
  addServiceAccount(input: unknown): Issued<ServiceAccount> {
    const account = ServiceAccount.parse(input);
    return this.db
      .transaction(() => {
        if (this.principalExists(account.name)) throw refusal.principalExists(account.name);
        const secret = generateSecret();
        this.#stmt(
          "INSERT INTO service_account (name, role, secret_hash, doc, created_at) VALUES (?, ?, ?, ?, ?)",
        ).run(...accountRow(account, secret));
        return { record: account, secret };
      })
      .immediate();
  }

  listServiceAccounts(): ServiceAccount[] {
    const rows = this.#stmt("SELECT doc FROM service_account ORDER BY name").all() as {
      doc: string;
    }[];
    return rows.map((r) => ServiceAccount.parse(JSON.parse(r.doc)));
  }

  /**
   * Import a validated registry file in one transaction: sites are upserted; devices and service
   * accounts must be new, and each gets a secret, returned once. One already registered with the
   * same definition (a device: every field but `enabled` and `standby`; a service account: its role) is kept
   * as it is, its secret unchanged, and listed in `kept`; one registered differently is refused.
   */
  importFile(file: RegistryFile): {
    devices: Issued<Device>[];
    serviceAccounts: Issued<ServiceAccount>[];
    kept: string[];
  } {
    return this.db
      .transaction(() => {
        for (const site of file.sites) this.putSite(site);
        // Parties after their sites (a party lists the sites it runs).
        if (file.parties.length > 0) this.importParties(file.parties);
        const kept: string[] = [];
        const devices: Issued<Device>[] = [];
        for (const input of file.devices) {
          const existing = this.getDevice(input.id);
          if (existing === undefined) devices.push(this.addDevice(input));
          else if (sameDevice(existing, input)) kept.push(input.id);
          else throw refusal.deviceRedefined(input.id);
        }
        const serviceAccounts: Issued<ServiceAccount>[] = [];
        const accounts = new Map(this.listServiceAccounts().map((a) => [a.name as string, a]));
        for (const input of file.serviceAccounts) {
          const existing = accounts.get(input.name);
          if (existing?.role === input.role) kept.push(input.name);
          else if (existing !== undefined)
            throw refusal.accountRedefined(input.name, existing.role, input.role);
          else serviceAccounts.push(this.addServiceAccount(input));
        }
        return { devices, serviceAccounts, kept };
      })
      .immediate();
  }

  /**
   * Begin a write transaction that spans an asynchronous start (`citywatch start` seeding the
   * demo city): what is written through this store until `commit()` is seen by this store's own
   * reads (authentication, the ingest's lookups) but by no other process, and `rollback()`,
   * close() or a crash undoes it. Other writers wait (busy timeout) while it is held.
   */
  hold(): Held {
    return holdWrite(this.db);
  }

  /**
   * Authenticate an MQTT username and secret. A device on standby that authenticates is put in
   * service (its `standby` flag cleared, `leftStandby` in the outcome): from then on the rules
   * judge and watch it.
   */
  authenticate(username: string, secret: string): AuthOutcome {
    const device = this.#stmt(
      "SELECT kind, enabled, secret_hash, json_extract(doc, '$.standby') AS standby FROM device WHERE id = ?",
    ).get(username) as
      { kind: string; enabled: number; secret_hash: string; standby: number | null } | undefined;
    if (device !== undefined) {
      if (!verifySecret(secret, device.secret_hash)) return { ok: false, reason: "bad_secret" };
      if (device.enabled === 0) return { ok: false, reason: "disabled" };
      const principal = devicePrincipal(username, device.kind);
      if (device.standby === 1 && this.putInService(username))
        return { ok: true, principal, leftStandby: true };
      return { ok: true, principal };
    }
    const account = this.#stmt("SELECT role, secret_hash FROM service_account WHERE name = ?").get(
      username,
    ) as { role: string; secret_hash: string } | undefined;
    if (account !== undefined) {
      if (!verifySecret(secret, account.secret_hash)) return { ok: false, reason: "bad_secret" };
      return servicePrincipal(username, account.role);
    }
    return { ok: false, reason: "unknown_user" };
  }

  // -------------------------------------------------------------------------------------------
  // Regulated parties (issue #18 item 3)

  /**
   * Register a party, or replace it (`replace`: the same key). The key is the credit code; a
   * party without one gets `nocode-` and the first 16 hex digits of the SHA-256 of its name (the
   * same name, the same key) and a warning. A site the record lists that another party's record
   * lists is refused; a site not registered (yet), or one whose inline party carries another
   * credit code, is a warning: the record takes precedence (resolvedSite).
   */
  putParty(
    input: unknown,
    options: { replace?: boolean; now?: number } = {},
  ): { party: Party; warnings: string[]; created: boolean } {
    const parsed = PartyInput.parse(input);
    return this.db.transaction(() => this.writeParty(parsed, options)).immediate();
  }

  /** Register or replace every party of a registry file's `parties:` list in one transaction. */
  importParties(
    inputs: readonly unknown[],
    options: { now?: number } = {},
  ): { created: Party[]; replaced: Party[]; warnings: string[] } {
    const parsed = inputs.map((i) => PartyInput.parse(i));
    return this.db
      .transaction(() => {
        const created: Party[] = [];
        const replaced: Party[] = [];
        const warnings: string[] = [];
        for (const input of parsed) {
          const result = this.writeParty(input, { replace: true, now: options.now });
          (result.created ? created : replaced).push(result.party);
          warnings.push(...result.warnings);
        }
        return { created, replaced, warnings };
      })
      .immediate();
  }

  getParty(key: string): Party | undefined {
    const row = this.#stmt("SELECT doc FROM party WHERE key = ?").get(key) as
      { doc: string } | undefined;
    return row === undefined ? undefined : readRecord(Party, row.doc);
  }

  listParties(): Party[] {
    const rows = this.#stmt("SELECT doc FROM party ORDER BY name, key").all() as {
      doc: string;
    }[];
    return rows.map((r) => readRecord(Party, r.doc));
  }

  /**
   * The party record of a site: the record that lists the site, else the record keyed by the
   * credit code of the site's inline party; undefined when neither exists.
   */
  partyOfSite(siteId: string): Party | undefined {
    const listed = this.#stmt(
      "SELECT party.doc FROM party_site JOIN party ON party.key = party_site.party_key WHERE site_id = ?",
    ).get(siteId) as { doc: string } | undefined;
    if (listed !== undefined) return readRecord(Party, listed.doc);
    const code = inlineCreditCode(this.getSite(siteId));
    return code === undefined ? undefined : this.getParty(code);
  }

  /**
   * A site with its party resolved: when a party record is the site's (partyOfSite), the site's
   * `regulatedParty` is the record's name, credit code and first contact (the record wins over
   * what the site carries inline); otherwise the site as stored. Sites of a type without a
   * regulated party are returned as stored.
   */
  resolvedSite(id: string): Site | undefined {
    const site = this.getSite(id);
    if (site === undefined || !("regulatedParty" in site)) return site;
    return withPartyRecord(site, this.partyOfSite(id));
  }

  /** The sites of a party: those its record lists and those whose inline party has its credit code. */
  sitesOfParty(key: string): string[] {
    const party = this.getParty(key);
    if (party === undefined) return [];
    return sitesOfPartyFrom(party, this.listSites(), (siteId) => this.#ownerOf(siteId));
  }

  /**
   * The registry read-only as view() gives it, with every site's party resolved from the party
   * records (resolvedSite): the task service, evidence and routing then address cases to the
   * party record's name and credit code.
   */
  resolvedView(): ReturnType<RegistryStore["view"]> {
    return {
      ...this.view(),
      site: (id) => this.resolvedSite(id),
      sites: () => this.listSites().map((site) => this.resolvedSite(site.id) ?? site),
    };
  }

  /** A party's key: its credit code, or `nocode-` and 16 hex digits of the SHA-256 of its name. */
  partyKey(input: { readonly creditCode?: string | undefined; readonly name: string }): string {
    return partyKeyOf(input);
  }

  /** The party whose record lists a site, if any. */
  #ownerOf(siteId: string): string | undefined {
    const row = this.#stmt("SELECT party_key FROM party_site WHERE site_id = ?").get(siteId) as
      { party_key: string } | undefined;
    return row?.party_key;
  }

  private writeParty(
    input: z.infer<typeof PartyInput>,
    options: { replace?: boolean | undefined; now?: number | undefined },
  ): { party: Party; warnings: string[]; created: boolean } {
    const key = this.partyKey(input);
    const planned = planParty(
      input,
      key,
      this.getParty(key),
      options,
      (siteId) => this.#ownerOf(siteId),
      (siteId) => this.getSite(siteId),
    );
    const { party } = planned;
    this.#stmt(
      `INSERT INTO party (key, credit_code, name, doc) VALUES (?, ?, ?, ?)
         ON CONFLICT(key) DO UPDATE SET credit_code = excluded.credit_code, name = excluded.name, doc = excluded.doc`,
    ).run(key, party.creditCode ?? null, party.name, JSON.stringify(party));
    this.#stmt("DELETE FROM party_site WHERE party_key = ?").run(key);
    const link = this.#stmt("INSERT INTO party_site (site_id, party_key) VALUES (?, ?)");
    for (const siteId of party.sites) link.run(siteId, key);
    return planned;
  }
}
