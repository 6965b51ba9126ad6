import { z } from "zod";
import { DeviceId, ServiceAccountName, SiteId } from "./ids.js";
import { SensorKind } from "./sensors.js";
import { CalendarDate, Timestamp } from "./time.js";

/** Acoustic environment function zone class, GB 3096-2008 §4 (0, 1, 2, 3, 4a, 4b). */
export const AcousticZoneClass = z.enum(["0", "1", "2", "3", "4a", "4b"], {
  error: "zone class must be one of 0, 1, 2, 3, 4a, 4b (GB 3096-2008 §4)",
});
export type AcousticZoneClass = z.infer<typeof AcousticZoneClass>;

/*
 * Text the registry holds must be text every store and every listing can hold: a district or grid
 * cell is written as an InfluxDB tag on every reading, and any value is printed one device a line
 * by `citywatch devices list`. So: no control characters (a newline breaks the listing and line
 * protocol), well-formed Unicode (a lone surrogate has no UTF-8), no leading or trailing spaces,
 * and for values that become tags no backslash before `,` ` ` `=` or at the end (line protocol
 * cannot carry it: ingest/store/line-protocol.ts). A value refused here was, before, accepted and
 * then dead-lettered as `store_rejected` with every reading of the device.
 */
const CONTROL = /[\p{Cc}\u2028\u2029]/u;
const LONE_SURROGATE = /\p{Surrogate}/u;
const UNWRITABLE_BACKSLASH = /\\(?:[, =]|$)/;

/** Free text of `min`–`max` characters that every store and listing can hold. */
export function registryText(min: number, max: number) {
  return z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !CONTROL.test(s), {
      error: "must not contain control characters (newline, tab, NUL, …)",
    })
    .refine((s) => !LONE_SURROGATE.test(s), {
      error: "must be well-formed Unicode (no lone surrogate)",
    })
    .refine((s) => s.trim() === s, { error: "must not start or end with whitespace" });
}

/** Text written as a time-series tag on every reading: registryText and no unwritable backslash. */
export function tagText(max: number) {
  return registryText(1, max).refine((s) => !UNWRITABLE_BACKSLASH.test(s), {
    error:
      'must not have a backslash before "," " " "=" or at its end (InfluxDB tags cannot hold it)',
  });
}

/** WGS-84 position. (Chinese map services use GCJ-02; convert before registering.) */
export const GeoPoint = z.strictObject({
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
});
export type GeoPoint = z.infer<typeof GeoPoint>;

/** Where a thing is in the city's administration: district, street (街道) and unit grid cell (GB/T 30428.1). */
export const AdministrativeArea = z.strictObject({
  district: tagText(64),
  street: tagText(64).optional(),
  gridCell: tagText(64),
});
export type AdministrativeArea = z.infer<typeof AdministrativeArea>;

/** The party an enforcement case is addressed to: the site's operator or contractor. */
export const RegulatedParty = z.strictObject({
  name: registryText(1, 200),
  /** Unified social credit code (统一社会信用代码), 18 characters, GB 32100-2015. */
  creditCode: z
    .string()
    .regex(/^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$/, {
      error: "credit code must be an 18-character unified social credit code (GB 32100-2015)",
    })
    .optional(),
  contact: z.strictObject({ name: registryText(1, 100), phone: registryText(3, 32) }).optional(),
});
export type RegulatedParty = z.infer<typeof RegulatedParty>;

/**
 * A time-bound permit the site holds, e.g. a night-works permit for construction between 22:00
 * and 06:00 (GB 12523-2011 and the local noise regulations). Rules list the permit types that
 * exempt a site (`permitExemption`); a permit counts from `validFrom` until `validTo`.
 */
export const Permit = z
  .strictObject({
    type: z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, {
      error: "a permit type must be 1-32 characters of a-z 0-9 _ starting with a letter",
    }),
    /** The authority's reference, printed in evidence. */
    reference: registryText(1, 100).optional(),
    validFrom: Timestamp,
    validTo: Timestamp,
  })
  .refine((p) => Date.parse(p.validFrom) < Date.parse(p.validTo), {
    error: "validTo must be after validFrom",
    path: ["validTo"],
  });
export type Permit = z.infer<typeof Permit>;

const siteBase = {
  id: SiteId,
  name: registryText(1, 200),
  area: AdministrativeArea,
  location: GeoPoint,
  /** Zone class of the surroundings, for area noise limits (GB 3096). */
  zoneClass: AcousticZoneClass.optional(),
  /** Permits the site holds (time-bound exemptions from the rules that list their type). */
  permits: z.array(Permit).max(100).optional(),
  /** Postal address of the site (evidence prints it for the site and, as its place, for the party). */
  address: registryText(1, 300).optional(),
};

/** Construction phases used by local dust standards (e.g. DB61/1078-2017 earthwork vs structure). */
export const ConstructionPhase = z.enum([
  "earthwork",
  "foundation",
  "structure",
  "decoration",
  "finished",
]);
export type ConstructionPhase = z.infer<typeof ConstructionPhase>;

/** Restaurant size by standard stoves, GB 18483-2001 Table 1. */
export const RestaurantSize = z.enum(["small", "medium", "large"]);
export type RestaurantSize = z.infer<typeof RestaurantSize>;

/** Compartments of a utility tunnel (GB 50838-2015). */
export const TunnelCompartment = z.enum(["gas", "power", "water", "heat", "telecom", "combined"]);
export type TunnelCompartment = z.infer<typeof TunnelCompartment>;

/**
 * A monitored place. Discriminated by `type`; each type carries what its rules need.
 */
export const Site = z.discriminatedUnion("type", [
  z.strictObject({
    ...siteBase,
    type: z.literal("construction_site"),
    regulatedParty: RegulatedParty,
    phase: ConstructionPhase,
    /** Region key of the dust rule table (e.g. "default", "hebei", "sichuan"). */
    dustRegion: registryText(1, 32).optional(),
  }),
  z.strictObject({
    ...siteBase,
    type: z.literal("restaurant"),
    regulatedParty: RegulatedParty,
    size: RestaurantSize,
  }),
  z.strictObject({
    ...siteBase,
    type: z.literal("commercial_venue"),
    regulatedParty: RegulatedParty,
  }),
  z.strictObject({ ...siteBase, type: z.literal("ambient") }),
  z.strictObject({
    ...siteBase,
    type: z.literal("river_station"),
    /** Station levels in metres against the station datum, for the blue/yellow/orange/red signals. */
    levels: z
      .strictObject({
        warning: z.number(),
        guaranteed: z.number(),
        historicalMax: z.number(),
      })
      .refine((l) => l.warning <= l.guaranteed && l.guaranteed <= l.historicalMax, {
        error: "levels must satisfy warning <= guaranteed <= historicalMax",
      })
      .optional(),
  }),
  z.strictObject({
    ...siteBase,
    type: z.literal("underpass"),
    road: registryText(1, 200).optional(),
  }),
  z.strictObject({
    ...siteBase,
    type: z.literal("drain"),
    road: registryText(1, 200).optional(),
  }),
  z.strictObject({
    ...siteBase,
    type: z.literal("tunnel_segment"),
    tunnel: registryText(1, 64),
    compartment: TunnelCompartment,
    /** Adjacent segments: accident ventilation at CH4 >= 20 %LEL covers them too (GB 50838-2015). */
    neighbours: z.array(SiteId).max(16),
  }),
]);
export type Site = z.infer<typeof Site>;
export type SiteType = Site["type"];

/**
 * A registered field device. The device's id is its MQTT username and client id; its secret is
 * held by the broker only as a salted hash, never in this record.
 */
export const Device = z.strictObject({
  id: DeviceId,
  kind: SensorKind,
  model: registryText(1, 100),
  serial: registryText(1, 100),
  /** Date of the last calibration or verification (检定/校准); evidence cites it. */
  calibratedOn: CalendarDate.optional(),
  /** Date the calibration expires; after it enforcement is suppressed and maintenance opened. */
  calibrationDueOn: CalendarDate.optional(),
  /**
   * Pattern / type approval (型式批准) or environmental product certification number of the
   * model; evidence cites it and warns where it is missing.
   */
  typeApproval: registryText(1, 100).optional(),
  /** Number of the current metrological verification or calibration certificate (检定/校准证书). */
  metrologyCertificate: registryText(1, 100).optional(),
  location: GeoPoint,
  area: AdministrativeArea,
  siteId: SiteId,
  /** Zone class at the device, when it differs from the site's. */
  zoneClass: AcousticZoneClass.optional(),
  /** Seconds between messages in normal operation; silence beyond a multiple of it is "offline". */
  expectedIntervalS: z.number().int().min(1).max(86_400).default(60),
  enabled: z.boolean().default(true),
  /**
   * On standby: registered but not in service yet (a demo device nobody plays, a simulated device
   * between runs). It may connect, and the rules neither judge nor watch it (no deadman) until
   * its first accepted CONNECT puts it in service, which clears the flag. `citywatch sim` puts a
   * scenario's devices back on standby when the run ends.
   */
  standby: z.boolean().optional(),
  /**
   * The registration this record is: 1 for the first registration of the id, one more for each
   * registration of the same id after a removal. Assigned by the registry (ignored in input);
   * commits, dedupe and readings queries are per generation, so an id registered again starts
   * clean and never shows the old device's data (issue #16 item 5).
   */
  generation: z.number().int().min(1).optional(),
  /** When this generation was registered (assigned by the registry, ignored in input). */
  registeredAt: Timestamp.optional(),
});
export type Device = z.infer<typeof Device>;
export type DeviceInput = z.input<typeof Device>;

/**
 * Roles of service accounts (not devices) on the broker:
 * - `ingest`: reads every device's uplink, writes commits, configuration and task events;
 * - `simulator`: publishes as any device and reads their downlink (fleet runner, fault injection);
 * - `monitor`: reads everything under `citywatch/v1/`, publishes nothing.
 */
export const ServiceRole = z.enum(["ingest", "simulator", "monitor"]);
export type ServiceRole = z.infer<typeof ServiceRole>;

export const ServiceAccount = z.strictObject({
  name: ServiceAccountName,
  role: ServiceRole,
  description: registryText(0, 200).optional(),
});
export type ServiceAccount = z.infer<typeof ServiceAccount>;

/** A registry file: sites and devices to import (`citywatch devices import`). */
export const RegistryFile = z
  .strictObject({
    sites: z.array(Site).default([]),
    devices: z.array(Device).default([]),
    serviceAccounts: z.array(ServiceAccount).default([]),
    /** Regulated parties (imported with the sites; `citywatch parties import` reads only these). */
    parties: z.array(z.lazy(() => PartyInput)).default([]),
  })
  .superRefine((file, ctx) => {
    const siteIds = new Set<string>();
    file.sites.forEach((site, i) => {
      if (siteIds.has(site.id)) {
        ctx.addIssue({
          code: "custom",
          path: ["sites", i, "id"],
          message: `duplicate site id ${site.id}`,
        });
      }
      siteIds.add(site.id);
    });
    file.sites.forEach((site, i) => {
      if (site.type !== "tunnel_segment") return;
      site.neighbours.forEach((n, j) => {
        if (!siteIds.has(n)) {
          ctx.addIssue({
            code: "custom",
            path: ["sites", i, "neighbours", j],
            message: `neighbour ${n} is not a site in this file`,
          });
        }
      });
    });
    // Devices and service accounts share one MQTT username space.
    const principals = new Set<string>();
    file.devices.forEach((device, i) => {
      if (principals.has(device.id)) {
        ctx.addIssue({
          code: "custom",
          path: ["devices", i, "id"],
          message: `duplicate id ${device.id}`,
        });
      }
      principals.add(device.id);
      if (!siteIds.has(device.siteId)) {
        ctx.addIssue({
          code: "custom",
          path: ["devices", i, "siteId"],
          message: `site ${device.siteId} is not a site in this file`,
        });
      }
    });
    file.serviceAccounts.forEach((account, i) => {
      if (principals.has(account.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["serviceAccounts", i, "name"],
          message: `duplicate id ${account.name} (devices and service accounts share one namespace)`,
        });
      }
      principals.add(account.name);
    });
  });
export type RegistryFile = z.infer<typeof RegistryFile>;

/** Who is connected to the broker: a device, or a service account with a role. */
export type Principal =
  | { readonly type: "device"; readonly deviceId: DeviceId; readonly kind: SensorKind }
  | { readonly type: "service"; readonly name: ServiceAccountName; readonly role: ServiceRole };

/** What the credential store says about an MQTT username and secret. */
export type AuthOutcome =
  | {
      readonly ok: true;
      readonly principal: Principal;
      /** The device was on standby and this CONNECT put it in service. */
      readonly leftStandby?: true;
    }
  | { readonly ok: false; readonly reason: "unknown_user" | "bad_secret" | "disabled" };

// ---------------------------------------------------------------------------------------------
// Regulated parties (issue #18 item 3)

/** A unified social credit code (统一社会信用代码), 18 characters, GB 32100-2015. */
export const CreditCode = z.string().regex(/^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$/, {
  error: "credit code must be an 18-character unified social credit code (GB 32100-2015)",
});
export type CreditCode = z.infer<typeof CreditCode>;

/** The key of a party the registry generated because it has no credit code: `nocode-` and 16 hex digits. */
export const GeneratedPartyKey = z.string().regex(/^nocode-[0-9a-f]{16}$/, {
  error: "a generated party key is nocode- and 16 hex digits",
});

/** A party's key: its credit code, or the key the registry generated for a party without one. */
export const PartyKey = z.union([CreditCode, GeneratedPartyKey], {
  error: "a party key is an 18-character unified social credit code or a generated nocode-… key",
});

/** A contact person of a regulated party. */
export const PartyContact = z.strictObject({
  name: registryText(1, 100),
  phone: registryText(3, 32),
  /** What they do for the party (site manager, environmental officer, …). */
  role: registryText(1, 100).optional(),
});
export type PartyContact = z.infer<typeof PartyContact>;

/**
 * A regulated party as registered (`parties:` of the registry file, `citywatch parties add`,
 * `POST /api/v1/parties`). Without `creditCode` the registry generates a stable key from the name
 * and warns: a case against a party without its code cannot be exported to the credit system by
 * code. `sites` lists the party's sites: the party record is then the site's party, ahead of the
 * party written inline in the site (registry/store.ts `resolvedSite`).
 */
export const PartyInput = z.strictObject({
  creditCode: CreditCode.optional(),
  name: registryText(1, 200),
  /** Legal representative (法定代表人). */
  legalRepresentative: registryText(1, 100).optional(),
  contacts: z.array(PartyContact).max(20).default([]),
  address: registryText(1, 300).optional(),
  sites: z.array(SiteId).max(1_000).default([]),
});
export type PartyInput = z.input<typeof PartyInput>;

/** A registered party: its input and its key (the credit code, or a generated one). */
export const Party = PartyInput.extend({
  key: PartyKey,
  updatedAt: Timestamp,
});
export type Party = z.infer<typeof Party>;

/** The `parties:` list of a registry file (`citywatch parties import`). */
export const PartiesFile = z
  .looseObject({ parties: z.array(PartyInput).max(100_000).default([]) })
  .superRefine((file, ctx) => {
    const codes = new Set<string>();
    file.parties.forEach((p, i) => {
      if (p.creditCode === undefined) return;
      if (codes.has(p.creditCode)) {
        ctx.addIssue({
          code: "custom",
          path: ["parties", i, "creditCode"],
          message: `duplicate credit code ${p.creditCode}`,
        });
      }
      codes.add(p.creditCode);
    });
  });
export type PartiesFile = z.infer<typeof PartiesFile>;
