import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import {
  type AuthOutcome,
  Device,
  type DeviceInput,
  type RegistryFile,
  ServiceAccount,
  Site,
} from "../contracts/index.js";
import { generateSecret, hashSecret, verifySecret } from "./secrets.js";

/** A registry operation refused for a reason the caller can show (duplicate id, unknown site…). */
export class RegistryError extends Error {
  constructor(
    readonly code: "REGISTRY_DUPLICATE" | "REGISTRY_NOT_FOUND" | "REGISTRY_INVALID",
    message: string,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

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
];

/** A device or service account just created, with its secret: shown once, never stored. */
export interface Issued<T> {
  readonly record: T;
  readonly secret: string;
}

/**
 * The device and site registry in SQLite: sites, devices, service accounts and their secret hashes.
 * Opened by the broker (authentication), the ingest (device lookups) and the `devices` CLI.
 * WAL mode, so the CLI can add a device while the broker runs.
 */
export class RegistryStore {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    // Write transactions below start with BEGIN IMMEDIATE: several processes (the running system,
    // `citywatch devices`, `citywatch sim --provision`) may write at once, and a deferred
    // transaction that reads first cannot wait for the lock (SQLITE_BUSY_SNAPSHOT).
    this.migrate();
  }

  private migrate(): void {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v] ?? "");
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): void {
    this.db.close();
  }

  /**
   * Would `id` clash with an existing MQTT identity? A service account may use client ids `name`
   * and `name-*`, so a device id inside that space could take over the service's session (and
   * the reverse); devices and service accounts also share one username space.
   */
  private principalExists(id: string): boolean {
    const prefixOf = "substr(?, 1, length(name) + 1) = name || '-'";
    return (
      this.db
        .prepare(
          `SELECT 1 FROM device WHERE id = ? OR substr(id, 1, length(?) + 1) = ? || '-'
           UNION SELECT 1 FROM service_account WHERE name = ? OR ${prefixOf}`,
        )
        .get(id, id, id, id, id) !== undefined
    );
  }

  /** Add or replace a site. */
  putSite(input: unknown): Site {
    const site = Site.parse(input);
    this.db
      .prepare(
        "INSERT INTO site (id, type, doc) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET type = excluded.type, doc = excluded.doc",
      )
      .run(site.id, site.type, JSON.stringify(site));
    return site;
  }

  getSite(id: string): Site | undefined {
    const row = this.db.prepare("SELECT doc FROM site WHERE id = ?").get(id) as
      { doc: string } | undefined;
    return row === undefined ? undefined : Site.parse(JSON.parse(row.doc));
  }

  listSites(): Site[] {
    const rows = this.db.prepare("SELECT doc FROM site ORDER BY id").all() as { doc: string }[];
    return rows.map((r) => Site.parse(JSON.parse(r.doc)));
  }

  /** Register a device and issue its secret. The device's site must exist; the id must be new. */
  addDevice(input: DeviceInput): Issued<Device> {
    const device = Device.parse(input);
    return this.db
      .transaction(() => {
        if (this.principalExists(device.id)) {
          throw new RegistryError(
            "REGISTRY_DUPLICATE",
            `${device.id} is already registered, or clashes with a service account's client ids (name, name-*)`,
          );
        }
        if (this.getSite(device.siteId) === undefined) {
          throw new RegistryError(
            "REGISTRY_NOT_FOUND",
            `site ${device.siteId} is not registered; add it first`,
          );
        }
        const secret = generateSecret();
        this.db
          .prepare(
            "INSERT INTO device (id, kind, site_id, enabled, secret_hash, doc, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
          )
          .run(
            device.id,
            device.kind,
            device.siteId,
            device.enabled ? 1 : 0,
            hashSecret(secret),
            JSON.stringify(device),
            new Date().toISOString(),
          );
        return { record: device, secret };
      })
      .immediate();
  }

  getDevice(id: string): Device | undefined {
    const row = this.db.prepare("SELECT doc FROM device WHERE id = ?").get(id) as
      { doc: string } | undefined;
    return row === undefined ? undefined : Device.parse(JSON.parse(row.doc));
  }

  listDevices(): Device[] {
    const rows = this.db.prepare("SELECT doc FROM device ORDER BY id").all() as { doc: string }[];
    return rows.map((r) => Device.parse(JSON.parse(r.doc)));
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

  countDevices(): number {
    return (this.db.prepare("SELECT count(*) AS n FROM device").get() as { n: number }).n;
  }

  /** Enable or disable a device; a disabled device's CONNECT is refused as not authorized. */
  setDeviceEnabled(id: string, enabled: boolean): void {
    const device = this.getDevice(id);
    if (device === undefined)
      throw new RegistryError("REGISTRY_NOT_FOUND", `device ${id} is not registered`);
    this.db
      .prepare("UPDATE device SET enabled = ?, doc = ? WHERE id = ?")
      .run(enabled ? 1 : 0, JSON.stringify({ ...device, enabled }), id);
  }

  removeDevice(id: string): void {
    const result = this.db.prepare("DELETE FROM device WHERE id = ?").run(id);
    if (result.changes === 0)
      throw new RegistryError("REGISTRY_NOT_FOUND", `device ${id} is not registered`);
  }

  /** Issue a new secret for a device or service account; the old one stops working at its next CONNECT. */
  rotateSecret(id: string): string {
    const secret = generateSecret();
    const hash = hashSecret(secret);
    const changed =
      this.db.prepare("UPDATE device SET secret_hash = ? WHERE id = ?").run(hash, id).changes +
      this.db.prepare("UPDATE service_account SET secret_hash = ? WHERE name = ?").run(hash, id)
        .changes;
    if (changed === 0)
      throw new RegistryError(
        "REGISTRY_NOT_FOUND",
        `${id} is not a registered device or service account`,
      );
    return secret;
  }

  /** Create a service account and issue its secret. */
  addServiceAccount(input: unknown): Issued<ServiceAccount> {
    const account = ServiceAccount.parse(input);
    return this.db
      .transaction(() => {
        if (this.principalExists(account.name)) {
          throw new RegistryError(
            "REGISTRY_DUPLICATE",
            `${account.name} is already registered, or clashes with a service account's client ids (name, name-*)`,
          );
        }
        const secret = generateSecret();
        this.db
          .prepare(
            "INSERT INTO service_account (name, role, secret_hash, doc, created_at) VALUES (?, ?, ?, ?, ?)",
          )
          .run(
            account.name,
            account.role,
            hashSecret(secret),
            JSON.stringify(account),
            new Date().toISOString(),
          );
        return { record: account, secret };
      })
      .immediate();
  }

  listServiceAccounts(): ServiceAccount[] {
    const rows = this.db.prepare("SELECT doc FROM service_account ORDER BY name").all() as {
      doc: string;
    }[];
    return rows.map((r) => ServiceAccount.parse(JSON.parse(r.doc)));
  }

  /**
   * Import a validated registry file in one transaction: sites are upserted; devices and service
   * accounts must be new, and each gets a secret, returned once.
   */
  importFile(file: RegistryFile): {
    devices: Issued<Device>[];
    serviceAccounts: Issued<ServiceAccount>[];
  } {
    return this.db
      .transaction(() => {
        for (const site of file.sites) this.putSite(site);
        return {
          devices: file.devices.map((d) => this.addDevice(d)),
          serviceAccounts: file.serviceAccounts.map((a) => this.addServiceAccount(a)),
        };
      })
      .immediate();
  }

  /** Authenticate an MQTT username and secret. */
  authenticate(username: string, secret: string): AuthOutcome {
    const device = this.db
      .prepare("SELECT kind, enabled, secret_hash FROM device WHERE id = ?")
      .get(username) as { kind: string; enabled: number; secret_hash: string } | undefined;
    if (device !== undefined) {
      if (!verifySecret(secret, device.secret_hash)) return { ok: false, reason: "bad_secret" };
      if (device.enabled === 0) return { ok: false, reason: "disabled" };
      const parsed = Device.shape.kind.parse(device.kind);
      return {
        ok: true,
        principal: { type: "device", deviceId: Device.shape.id.parse(username), kind: parsed },
      };
    }
    const account = this.db
      .prepare("SELECT role, secret_hash FROM service_account WHERE name = ?")
      .get(username) as { role: string; secret_hash: string } | undefined;
    if (account !== undefined) {
      if (!verifySecret(secret, account.secret_hash)) return { ok: false, reason: "bad_secret" };
      return {
        ok: true,
        principal: {
          type: "service",
          name: ServiceAccount.shape.name.parse(username),
          role: ServiceAccount.shape.role.parse(account.role),
        },
      };
    }
    return { ok: false, reason: "unknown_user" };
  }
}
