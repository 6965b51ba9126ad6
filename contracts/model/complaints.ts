import { z } from "zod";
import { Clause } from "./rule-fields.js";

/*
 * Inbound work (docs/tasks.md, Complaints and manual filing): citizens' complaints posted by the
 * hotline platforms (12345 / 12319) and cases filed by hand by an officer. Each becomes a task
 * whose `source` says where it came from. The complainant's contact stays in the complaint
 * record of the task store: it is never part of the task (events, webhooks, other platforms).
 */

const instant = (what: string) =>
  z.iso.datetime({
    offset: true,
    error: `${what} must be an ISO 8601 date-time with a zone (2026-12-06T21:30:00+08:00)`,
  });

/** What a complaint is about (the platform's classification, mapped to these). */
export const ComplaintCategory = z.enum(["noise", "dust", "cooking_fume", "water", "other"], {
  error: "category must be noise, dust, cooking_fume, water or other",
});
export type ComplaintCategory = z.infer<typeof ComplaintCategory>;

/** Where the complaint is: a point and/or an address, with the district / street if known. */
export const ComplaintLocation = z
  .strictObject({
    lat: z.number().min(-90).max(90).optional(),
    lon: z.number().min(-180).max(180).optional(),
    address: z.string().trim().min(1).max(300).optional(),
    district: z.string().trim().min(1).max(64).optional(),
    street: z.string().trim().min(1).max(64).optional(),
  })
  .refine((l) => (l.lat === undefined) === (l.lon === undefined), {
    error: "lat and lon come together",
    path: ["lat"],
  })
  .refine((l) => l.lat !== undefined || l.address !== undefined, {
    error: "a location needs lat/lon or an address",
    path: ["address"],
  });
export type ComplaintLocation = z.infer<typeof ComplaintLocation>;

/** Body of `POST /api/v1/complaints`, as a hotline platform posts it (signed, see docs/security.md). */
export const ComplaintRequest = z.strictObject({
  /** The platform's own id of the complaint (工单号): a repeat with the same id is the same complaint. */
  complaintId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, {
    error: "complaintId must be 1-64 characters of A-Z a-z 0-9 . _ : -",
  }),
  receivedAt: instant("receivedAt"),
  category: ComplaintCategory,
  text: z
    .string()
    .trim()
    .min(1, { error: "text must not be empty" })
    .max(4_000, { error: "text must be at most 4000 characters" }),
  location: ComplaintLocation,
  /** The complainant's contact: kept with the complaint, never on the task or sent on. */
  contact: z
    .strictObject({
      name: z.string().trim().min(1).max(100).optional(),
      phone: z.string().trim().min(1).max(40).optional(),
      email: z.string().trim().min(1).max(200).optional(),
    })
    .optional(),
});
export type ComplaintRequest = z.infer<typeof ComplaintRequest>;

/** A reading summary of one device (noise: energy-mean LAeq and max LAmax). */
export const CorroborationDevice = z.object({
  deviceId: z.string(),
  siteId: z.string(),
  distanceM: z.number(),
  readings: z.number().int(),
  /** The quantity compared (LAeq, pm10, oilFume, stage…). */
  quantity: z.string(),
  /** Energy mean (dB quantities) or plain mean of the quantity; null without readings. */
  mean: z.number().nullable(),
  max: z.number().nullable(),
  /** Noise: the maximum LAmax in the window. */
  maxLAmax: z.number().nullable().optional(),
});

/** Readings of the nearest devices around the complaint's time and place, and what they show. */
export const Corroboration = z.object({
  from: z.string(),
  to: z.string(),
  radiusM: z.number(),
  devices: z.array(CorroborationDevice),
  /** The limit compared with, and where it comes from; null: nothing to compare with. */
  limit: z.object({ value: z.number(), quantity: z.string(), source: z.string() }).nullable(),
  /** true: a device's mean is above the limit; false: none is; null: not judged (no readings or no limit). */
  exceedance: z.boolean().nullable(),
  statement: z.string(),
});
export type Corroboration = z.infer<typeof Corroboration>;

/** Readings attached to a manually filed task (evidence-like records; bounded). */
export const AttachedReadings = z.object({
  deviceId: z.string(),
  from: z.string(),
  to: z.string(),
  readings: z.array(
    z.object({
      ts: z.string(),
      quality: z.string(),
      values: z.record(z.string(), z.union([z.number(), z.boolean()])),
    }),
  ),
});

/** Where a task came from when not from the rules: a hotline complaint or an officer's filing. */
export const TaskSource = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("complaint"),
    platform: z.string(),
    complaintId: z.string(),
    receivedAt: z.string(),
    category: ComplaintCategory,
    text: z.string(),
    /** Where the complaint is (no contact: that stays with the complaint record). */
    location: z.object({
      lat: z.number().optional(),
      lon: z.number().optional(),
      address: z.string().optional(),
      district: z.string().optional(),
      street: z.string().optional(),
    }),
    /** The nearest site and its distance; absent: no site with a location. */
    nearestSite: z.object({ id: z.string(), distanceM: z.number() }).optional(),
    /** An open case at the same site or party this complaint was linked to. */
    linkedTaskId: z.string().optional(),
    corroboration: Corroboration,
  }),
  z.object({
    type: z.literal("manual"),
    /** Who filed it (the audit trail's name of the caller). */
    by: z.string(),
    observation: z.string().optional(),
    note: z.string(),
    readings: z.array(AttachedReadings).optional(),
  }),
]);
export type TaskSource = z.infer<typeof TaskSource>;

/** Answer of `POST /api/v1/complaints`: the task, and whether this post created it. */
export const ComplaintResponse = z.object({
  taskId: z.string(),
  created: z.boolean(),
});

/** Body of `POST /api/v1/tasks`: an officer files a case by hand. */
export const ManualTaskRequest = z
  .strictObject({
    siteId: z.string().min(1).max(64),
    /** A rule of the rule pack / configuration, as its id and clause. */
    rule: z.strictObject({ id: z.string().min(1).max(128), clause: Clause }).optional(),
    /** Or a free observation type (e.g. `unlicensed_night_works`). */
    observation: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_]{0,63}$/, {
        error: "observation must be 1-64 characters of a-z 0-9 _",
      })
      .optional(),
    kind: z.enum(["enforcement", "maintenance", "environmental", "emergency"]).optional(),
    note: z.string().trim().min(1, { error: "a filing needs a note" }).max(4_000),
    readings: z
      .array(
        z.strictObject({
          deviceId: z.string().min(1).max(64),
          from: instant("from"),
          to: instant("to"),
        }),
      )
      .max(10)
      .optional(),
  })
  .refine((r) => (r.rule === undefined) !== (r.observation === undefined), {
    error: "name either a rule or an observation (exactly one)",
    path: ["rule"],
  })
  .refine((r) => (r.readings ?? []).every((x) => Date.parse(x.to) > Date.parse(x.from)), {
    error: "each readings range needs its to after its from",
    path: ["readings"],
  });
export type ManualTaskRequest = z.infer<typeof ManualTaskRequest>;
