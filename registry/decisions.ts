import { createHash } from "node:crypto";
import type { z } from "zod";
import type { Site } from "../contracts/index.js";
import {
  type AuthOutcome,
  problemsOf,
  Device,
  type DeviceInput,
  ServiceAccount,
} from "../contracts/index.js";
import type { PartyInput } from "../contracts/model/registry.js";
import { Party } from "../contracts/model/registry.js";
import { hashSecret } from "./secrets.js";

/*
 * The registry's records and rules, apart from where it keeps its rows: what both stores
 * (store.ts on SQLite, store-postgres.ts on PostgreSQL) read, refuse and decide the same way.
 */

/** A registry operation refused for a reason the caller can show (duplicate id, unknown site…). */
export class RegistryError extends Error {
  constructor(
    readonly code:
      "REGISTRY_DUPLICATE" | "REGISTRY_NOT_FOUND" | "REGISTRY_INVALID" | "REGISTRY_IN_USE",
    message: string,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

/** JSON with keys sorted, so that two records compare by content, not by key order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

/** What `removeSite` removed besides the site. */
export interface RemovedSite {
  readonly site: Site;
  /** Devices that belonged to the site (removed with `force`). */
  readonly devices: readonly string[];
  /** Tunnel segments that named the site a neighbour (no longer, with `force`). */
  readonly neighbourOf: readonly string[];
}

/**
 * A record read back from the file. Values the registry refuses since the text rules of
 * contracts/model/registry.ts (a control character, an unwritable backslash) may sit in rows
 * written before them: such a row is still read (it passed the rules of its day, and refusing to
 * read it would stop the broker, the ingest and the listings from starting), and is reported by
 * `invalidRecords()`. Anything else that does not parse is a damaged file and throws.
 */
export function readRecord<T>(schema: z.ZodType<T>, doc: string): T {
  const raw: unknown = JSON.parse(doc);
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  if (parsed.error.issues.every((i) => i.code === "custom" || i.code === "too_big"))
    return raw as T;
  throw parsed.error;
}

/** What a device row's doc holds: the record without its registration (generation, time). */
export function docOf(device: Device): Device {
  const { generation: _generation, registeredAt: _registeredAt, ...doc } = device;
  return doc;
}

/** A stored record a registration would now refuse, with why (see readRecord). */
export interface InvalidRecord {
  readonly type: "site" | "device";
  readonly id: string;
  readonly problems: readonly string[];
}

/** A device or service account just created, with its secret: shown once, never stored. */
export interface Issued<T> {
  readonly record: T;
  readonly secret: string;
}

/*
 * What the registry decides, apart from where it keeps its rows: the refusals and warnings, and
 * how records combine. Shared by RegistryStore here and PostgresRegistryStore (store-postgres.ts),
 * so that both refuse the same input with the same error.
 */

/** The refusals both stores give, one per reason. */
export const refusal = {
  siteExists: (id: string) =>
    new RegistryError(
      "REGISTRY_DUPLICATE",
      `site ${id} is already registered (--replace to change it)`,
    ),
  siteUnknown: (id: string) =>
    new RegistryError("REGISTRY_NOT_FOUND", `site ${id} is not registered`),
  deviceSiteUnknown: (siteId: string) =>
    new RegistryError("REGISTRY_NOT_FOUND", `site ${siteId} is not registered; add it first`),
  principalExists: (id: string) =>
    new RegistryError(
      "REGISTRY_DUPLICATE",
      `${id} is already registered, or clashes with a service account's client ids (name, name-*)`,
    ),
  deviceUnknown: (id: string) =>
    new RegistryError("REGISTRY_NOT_FOUND", `device ${id} is not registered`),
  principalUnknown: (id: string) =>
    new RegistryError("REGISTRY_NOT_FOUND", `${id} is not a registered device or service account`),
  deviceRedefined: (id: string) =>
    new RegistryError(
      "REGISTRY_DUPLICATE",
      `device ${id} is already registered with a different definition; remove it first or change the file`,
    ),
  accountRedefined: (name: string, role: string, wanted: string) =>
    new RegistryError(
      "REGISTRY_DUPLICATE",
      `service account ${name} is already registered with role ${role}, not ${wanted}`,
    ),
  partyExists: (key: string) =>
    new RegistryError(
      "REGISTRY_DUPLICATE",
      `party ${key} is already registered (citywatch parties add --replace, or PUT /api/v1/parties/${key}, changes it)`,
    ),
  siteOfAnotherParty: (siteId: string, owner: string) =>
    new RegistryError(
      "REGISTRY_DUPLICATE",
      `site ${siteId} is already a site of party ${owner}; remove it from that party first`,
    ),
};

/**
 * Refuse a site `addSite` may not register: an id already registered (unless `replace`), a
 * tunnel segment neighbouring itself or a site not registered. `registered` answers for an id.
 */
export function checkNewSite(
  site: Site,
  options: { replace?: boolean },
  registered: (id: string) => boolean,
): void {
  if (options.replace !== true && registered(site.id)) throw refusal.siteExists(site.id);
  if (site.type !== "tunnel_segment") return;
  for (const n of site.neighbours) {
    if (n === site.id)
      throw new RegistryError("REGISTRY_INVALID", `${site.id} cannot neighbour itself`);
    if (!registered(n))
      throw new RegistryError(
        "REGISTRY_NOT_FOUND",
        `neighbour ${n} is not a registered site; add it first`,
      );
  }
}

/**
 * What removing `site` takes along, given its devices and every registered site: the tunnel
 * segments naming it a neighbour, refused (REGISTRY_IN_USE) unless `force` when anything does.
 */
export function planSiteRemoval(
  site: Site,
  devices: readonly string[],
  sites: readonly Site[],
  force: boolean,
): { segments: Site[]; neighbourOf: string[] } {
  const segments = sites.filter(
    (s) => s.type === "tunnel_segment" && s.neighbours.includes(site.id),
  );
  const neighbourOf = segments.map((s) => s.id as string);
  if (!force && (devices.length > 0 || neighbourOf.length > 0)) {
    const reasons = [
      ...(devices.length > 0
        ? [
            `${devices.length} device${devices.length === 1 ? "" : "s"} belong${devices.length === 1 ? "s" : ""} to it (${devices.join(", ")})`,
          ]
        : []),
      ...(neighbourOf.length > 0
        ? [`tunnel segments name it a neighbour (${neighbourOf.join(", ")})`]
        : []),
    ];
    throw new RegistryError(
      "REGISTRY_IN_USE",
      `site ${site.id} is in use: ${reasons.join("; ")}. Remove or move them first, or --force to remove the site with its devices`,
    );
  }
  return { segments, neighbourOf };
}

/** A tunnel segment without `id` among its neighbours (another site: unchanged). */
export function withoutNeighbour(segment: Site, id: string): Site {
  return segment.type === "tunnel_segment"
    ? { ...segment, neighbours: segment.neighbours.filter((n) => n !== id) }
    : segment;
}

/** A new service account's row: name, role, the secret's hash, the record, when created. */
export function accountRow(account: ServiceAccount, secret: string) {
  return [
    account.name,
    account.role,
    hashSecret(secret),
    JSON.stringify(account),
    new Date().toISOString(),
  ] as const;
}

/** A device as read: its stored record with its registration (generation, time). */
export function registeredDevice(doc: string, generation: number, registeredAt: string): Device {
  return { ...readRecord(Device, doc), generation, registeredAt };
}

/**
 * Is `input` (a device of a registry file) the registered `existing` device? Every field but
 * `enabled` and `standby` (and the registration) must be the same.
 */
export function sameDevice(existing: Device, input: DeviceInput): boolean {
  return (
    canonical({ ...docOf(existing), enabled: undefined, standby: undefined }) ===
    canonical({ ...docOf(Device.parse(input)), enabled: undefined, standby: undefined })
  );
}

/** The stored records of `rows` a registration would now refuse, with why (readRecord). */
export function invalidRecordsOf(
  type: "site" | "device",
  schema: z.ZodType,
  rows: ReadonlyArray<{ id: string; doc: string }>,
): InvalidRecord[] {
  const out: InvalidRecord[] = [];
  for (const row of rows) {
    const parsed = schema.safeParse(JSON.parse(row.doc));
    if (!parsed.success)
      out.push({
        type,
        id: row.id,
        problems: problemsOf(parsed.error).map((p) => `${p.path}: ${p.message}`),
      });
  }
  return out;
}

/** What a device's successful CONNECT authenticates as. */
export function devicePrincipal(username: string, kind: string) {
  return {
    type: "device" as const,
    deviceId: Device.shape.id.parse(username),
    kind: Device.shape.kind.parse(kind),
  };
}

/** What a service account's successful CONNECT authenticates as. */
export function servicePrincipal(username: string, role: string): AuthOutcome {
  return {
    ok: true,
    principal: {
      type: "service",
      name: ServiceAccount.shape.name.parse(username),
      role: ServiceAccount.shape.role.parse(role),
    },
  };
}

/** A party's key: its credit code, or `nocode-` and 16 hex digits of the SHA-256 of its name. */
export function partyKeyOf(input: {
  readonly creditCode?: string | undefined;
  readonly name: string;
}): string {
  return (
    input.creditCode ??
    `nocode-${createHash("sha256").update(input.name, "utf8").digest("hex").slice(0, 16)}`
  );
}

/**
 * The party record `input` becomes under `key`, with the warnings of registering it, or the
 * refusal: the key registered already (`existing`, without `replace`), or a listed site that is
 * another party's (`ownerOf`). `siteOf` gives a registered site.
 */
export function planParty(
  input: z.infer<typeof PartyInput>,
  key: string,
  existing: Party | undefined,
  options: { replace?: boolean | undefined; now?: number | undefined },
  ownerOf: (siteId: string) => string | undefined,
  siteOf: (siteId: string) => Site | undefined,
): { party: Party; warnings: string[]; created: boolean } {
  const warnings: string[] = [];
  if (input.creditCode === undefined) {
    warnings.push(
      `party "${input.name}" has no unified social credit code: registered under the generated key ${key}; its credit record cannot be exported by code`,
    );
  }
  if (existing !== undefined && options.replace !== true) throw refusal.partyExists(key);
  const sites = [...new Set(input.sites)];
  for (const siteId of sites) {
    const owner = ownerOf(siteId);
    if (owner !== undefined && owner !== key) throw refusal.siteOfAnotherParty(siteId, owner);
    const site = siteOf(siteId);
    if (site === undefined) {
      warnings.push(`site ${siteId} of party ${key} is not registered (yet)`);
    } else if (!("regulatedParty" in site)) {
      warnings.push(
        `site ${siteId} of party ${key} is a ${site.type}, which has no regulated party: no case there is addressed to the party`,
      );
    } else if (
      site.regulatedParty.creditCode !== undefined &&
      site.regulatedParty.creditCode !== input.creditCode
    ) {
      warnings.push(
        `site ${siteId} names credit code ${site.regulatedParty.creditCode} inline; the record of party ${key} takes precedence`,
      );
    }
  }
  const party = Party.parse({
    ...input,
    sites,
    key,
    updatedAt: new Date(options.now ?? Date.now()).toISOString(),
  });
  return { party, warnings, created: existing === undefined };
}

/** The credit code a site carries inline (its `regulatedParty`), if any. */
export function inlineCreditCode(site: Site | undefined): string | undefined {
  return site !== undefined && "regulatedParty" in site
    ? site.regulatedParty.creditCode
    : undefined;
}

/**
 * `site` with its party resolved to `party` (resolvedSite): the record's name, credit code and
 * first contact win over what the site carries inline. Without a party, or for a site type
 * without a regulated party, the site as stored.
 */
export function withPartyRecord(site: Site, party: Party | undefined): Site {
  if (party === undefined || !("regulatedParty" in site)) return site;
  const contact = party.contacts[0];
  return {
    ...site,
    regulatedParty: {
      name: party.name,
      ...(party.creditCode === undefined
        ? site.regulatedParty.creditCode === undefined
          ? {}
          : { creditCode: site.regulatedParty.creditCode }
        : { creditCode: party.creditCode }),
      ...(contact === undefined
        ? site.regulatedParty.contact === undefined
          ? {}
          : { contact: site.regulatedParty.contact }
        : { contact: { name: contact.name, phone: contact.phone } }),
    },
  };
}

/**
 * The sites of `party` (sitesOfParty): those its record lists and, among `sites`, those whose
 * inline party has its credit code and that no other record lists (`ownerOf`). Sorted.
 */
export function sitesOfPartyFrom(
  party: Party,
  sites: readonly Site[],
  ownerOf: (siteId: string) => string | undefined,
): string[] {
  const ids = new Set(party.sites);
  if (party.creditCode !== undefined) {
    for (const site of sites) {
      if (inlineCreditCode(site) === party.creditCode) {
        const owner = ownerOf(site.id);
        if (owner === undefined || owner === party.key) ids.add(site.id);
      }
    }
  }
  return [...ids].sort();
}

/**
 * The device and site registry in SQLite: sites, devices, service accounts and their secret hashes.
 * Opened by the broker (authentication), the ingest (device lookups) and the `devices` CLI.
 * WAL mode, so the CLI can add a device while the broker runs.
 */
