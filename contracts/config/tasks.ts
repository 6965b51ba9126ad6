import { z } from "zod";
import { parseDuration, RuleId } from "../model/rules.js";
import { TaskKind } from "../model/topics.js";
import { PositiveInt } from "./fields.js";

/**
 * Configuration of the task service (`ingest.tasks`): routing, SLA, graduated response,
 * notification delivery and API tokens. docs/tasks.md describes each behaviour.
 */

/**
 * A duration: milliseconds as a number (or a string of digits), or a duration string with units
 * d, h, m, s, ms (`"72h"`, `"1h30m"`), the notation rule files use.
 */
export const DurationMs = z.preprocess(
  (value) => {
    if (typeof value !== "string") return value;
    if (/^\d+$/.test(value)) return Number(value);
    return parseDuration(value) ?? value;
  },
  z
    .number({ error: 'must be milliseconds or a duration like "72h", "30m", "1d"' })
    .int({ error: "must be a whole number of milliseconds" })
    .min(1, { error: "must be positive" }),
);

/** Site types as in the registry (kept as strings here; the registry validates sites). */
const SiteTypeText = z.string().min(1).max(32);

/**
 * One line of the responsibility list: the department (and optionally its team) for the tasks
 * it matches. Every list given must match; an absent list matches everything. The first line
 * that matches wins, so put specific lines before general ones.
 */
export const Responsibility = z.strictObject({
  department: z.string().min(1).max(120),
  /** The team; absent: the grid team of the site's grid cell (see `gridTeams`). */
  team: z.string().min(1).max(120).optional(),
  match: z
    .strictObject({
      kinds: z.array(TaskKind).min(1).optional(),
      /** Rule id prefixes, e.g. `noise.construction.` or `tunnel.`. */
      rulePrefixes: z.array(z.string().min(1).max(64)).min(1).optional(),
      /** Rule domains: the first segment of the rule id (`noise`, `dust`, `water`, `tunnel`). */
      domains: z.array(z.string().min(1).max(32)).min(1).optional(),
      /** Districts (`area.district` of the site). */
      districts: z.array(z.string().min(1).max(64)).min(1).optional(),
      siteTypes: z.array(SiteTypeText).min(1).optional(),
    })
    .prefault({}),
});
export type Responsibility = z.infer<typeof Responsibility>;

/** Limits of one case type: filed but not handled, handled but not closed. */
export const SlaLimits = z.strictObject({
  handleWithinMs: DurationMs,
  closeWithinMs: DurationMs,
  /**
   * `working`: the limits count office hours of the working calendar (`tasks.calendar`), so
   * nights, weekends and statutory holidays do not count; `calendar`: every hour counts.
   * Absent: `calendar` for emergencies, `working` for every other kind.
   */
  clock: z.enum(["calendar", "working"], { error: "clock is calendar or working" }).optional(),
  /** The step the handle timer starts at: filing, dispatch to a team, or acknowledgement. */
  from: z
    .enum(["filed", "dispatched", "acknowledged"], {
      error: "from is filed, dispatched or acknowledged",
    })
    .default("filed"),
});
export type SlaLimits = z.infer<typeof SlaLimits>;

/** A webhook receiver: every task event is POSTed to it through the durable outbox. */
export const WebhookConfig = z.strictObject({
  /** Names the receiver in the outbox, logs and metrics. */
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, {
    error: "a webhook name must be 1-32 characters of a-z 0-9 _ - (e.g. city-platform)",
  }),
  url: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }),
  /** HMAC-SHA256 key of the signature header; at least 16 characters. */
  secret: z.string().min(16, { error: "a webhook secret must be at least 16 characters" }),
  /** Only events of tasks of these kinds; absent: all. */
  kinds: z.array(TaskKind).min(1).optional(),
});
export type WebhookConfig = z.infer<typeof WebhookConfig>;

export const TasksConfig = z.strictObject({
  /** Department of a task no responsibility line matches. */
  defaultDepartment: z.string().min(1).max(120).default("urban-management-command-centre"),
  /**
   * Department of an environmental-quality alert no responsibility line matches: the body that
   * investigates area exceedances (the grid team of the cell works it on the ground).
   */
  environmentalDepartment: z.string().min(1).max(120).default("ecology-environment-bureau"),
  responsibilities: z.array(Responsibility).default([]),
  /**
   * Team → its lead (a user id or a name): a task past an SLA limit is escalated to the lead of
   * the team it is routed to. Absent for a team: "the lead of <team>".
   */
  teamLeads: z.record(z.string().min(1).max(120), z.string().min(1).max(120)).default({}),
  /** Grid cell → the grid team that works it (grid management, GB/T 30428.1). */
  gridTeams: z.record(z.string().min(1).max(64), z.string().min(1).max(120)).default({}),
  /**
   * SLA per case type: per task kind, and per rule (`byRule`: the longest matching rule-id
   * prefix wins, e.g. `noise.construction.`). Defaults are product defaults, not from a
   * standard (CJ/T 315-2009 leaves the limits to each city): set your own. Enforcement and
   * maintenance count working hours (3 and 7 working days of 8 h to handle, 5 and 10 to close);
   * emergencies count every hour.
   */
  sla: z
    .strictObject({
      enforcement: SlaLimits.prefault({
        handleWithinMs: 24 * 3_600_000,
        closeWithinMs: 40 * 3_600_000,
      }),
      emergency: SlaLimits.prefault({ handleWithinMs: 2 * 3_600_000, closeWithinMs: 86_400_000 }),
      maintenance: SlaLimits.prefault({
        handleWithinMs: 56 * 3_600_000,
        closeWithinMs: 80 * 3_600_000,
      }),
      environmental: SlaLimits.prefault({
        handleWithinMs: 24 * 3_600_000,
        closeWithinMs: 40 * 3_600_000,
      }),
      byRule: z.record(z.string().min(1).max(64), SlaLimits).default({}),
    })
    .prefault({}),
  /**
   * The working calendar of `working` SLA clocks: office hours, statutory holidays and make-up
   * working days (YAML, tasks/calendar/working-time.ts). Absent: the shipped example for 2026
   * (tasks/calendar/cn-2026.yaml); dates it does not list count as ordinary days.
   */
  calendar: z.strictObject({ file: z.string().min(1).optional() }).prefault({}),
  /** Graduated response of enforcement cases (education first, then penalty). */
  graduated: z
    .strictObject({
      /** A regulated party's violation is a repeat when it had another case within this period. */
      periodMs: DurationMs.default(365 * 86_400_000),
      /** Rectification deadline of a warning notice, from filing. */
      rectifyWithinMs: DurationMs.default(3 * 86_400_000),
      /** A re-check that finds no data is tried again after this long… */
      recheckRetryMs: DurationMs.default(3_600_000),
      /** …this many times, then the case needs an inspection on site. */
      recheckAttempts: PositiveInt.default(3),
      /** Per-rule rectification deadlines that differ from `rectifyWithinMs`. */
      rectifyWithinByRule: z.record(RuleId, DurationMs).default({}),
    })
    .prefault({}),
  /** How often SLA timers and re-checks are evaluated. */
  tickMs: DurationMs.default(30_000),
  webhooks: z.array(WebhookConfig).default([]),
  outbox: z
    .strictObject({
      /**
       * Undelivered notifications held at most, per target. At the bound the oldest pending one
       * of that target is moved to the dead outbox (kept, counted) so the newest task states
       * get through: every notification carries the whole task, so a newer one supersedes it.
       */
      maxPending: PositiveInt.default(10_000),
      /** Attempts per notification before it is moved to the dead outbox. */
      maxAttempts: PositiveInt.default(50),
      /** Exponential backoff with full jitter: min(max, base · 2^attempt) · random. */
      backoffBaseMs: DurationMs.default(1_000),
      backoffMaxMs: DurationMs.default(300_000),
      /** Timeout of one webhook request. */
      timeoutMs: DurationMs.default(10_000),
    })
    .prefault({}),
  /** Live stream (server-sent events). */
  stream: z
    .strictObject({
      /** Events buffered per client at most; a client that falls this far behind is dropped. */
      clientBuffer: PositiveInt.default(1_000),
      /** Clients connected at most; further clients get 503. */
      maxClients: PositiveInt.default(100),
      /**
       * Of `maxClients`, kept for admin tokens: other roles get 503 at `maxClients - adminReserve`.
       * Absent: a tenth of `maxClients`.
       */
      adminReserve: z.number().int().min(0).optional(),
      /** Streams one token may hold open; the next gets 429. */
      maxPerToken: PositiveInt.default(5),
      /** Streams one user may hold open over all their tokens (a token's user: its name before `@`). */
      maxPerUser: PositiveInt.default(10),
      /** A comment line is sent this often so proxies keep the connection open. */
      heartbeatMs: DurationMs.default(15_000),
    })
    .prefault({}),
  /**
   * API tokens: how long a lookup is cached (a revocation clears the cache at once: the token file
   * is watched every `watchMs`, and checked before each request and each stream event).
   */
  tokens: z
    .strictObject({
      cacheMs: z.number().int().min(0).default(5_000),
      watchMs: PositiveInt.default(250),
    })
    .prefault({}),
  /**
   * Flap damping per task (docs/tasks.md): events published and evidence packages sealed per task
   * in a sliding hour at most; changes beyond are recorded (audit trail, task row) and coalesced
   * into the next event the bound allows, counted in the task's `damping`.
   */
  damping: z
    .strictObject({
      maxEventsPerHour: PositiveInt.default(30),
      maxEvidencePerHour: PositiveInt.default(6),
    })
    .prefault({}),
  /** Browser sessions of users (docs/tasks.md, People, roles and scopes). */
  sessions: z
    .strictObject({
      /** A session unused this long ends. */
      idleMs: DurationMs.default(8 * 3_600_000),
      /** A session ends this long after sign-in (a shift), used or not. */
      maxMs: DurationMs.default(12 * 3_600_000),
      /** Failed sign-ins allowed per user name, and per client address, in `windowMs`; then 429. */
      failuresPerUser: PositiveInt.default(5),
      failuresPerAddress: PositiveInt.default(20),
      windowMs: DurationMs.default(15 * 60_000),
      /** Mark the cookie Secure (HTTPS only). Absent: when `evidence.publicUrl` is https. */
      secureCookie: z.boolean().optional(),
    })
    .prefault({}),
  /** Evidence packages: signing, the printable document and its signed links (docs/tasks.md). */
  evidence: z
    .strictObject({
      /**
       * The Ed25519 keyring (private keys: owner-only file). Absent: `{dataDir}/evidence-keys.json`,
       * created with a first key on first start. Rotation adds a key and keeps the old public keys
       * valid for the packages they signed.
       */
      keyFile: z.string().min(1).optional(),
      /** Lifetime of a signed link to a printable package (webhooks, the task API). */
      linkTtlMs: DurationMs.default(24 * 3_600_000),
      /** Language of the printable document when the request names none. */
      language: z
        .enum(["zh-CN", "en"], { error: "evidence language is zh-CN or en" })
        .default("zh-CN"),
      /**
       * The base URL recipients reach this API at (e.g. `https://citywatch.example.gov.cn`), for
       * the signed links in webhooks and on the document. Absent: `http://{http.host}:{http.port}`.
       */
      publicUrl: z
        .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
        .optional(),
    })
    .prefault({}),
  /**
   * Complaint intake from hotline platforms (12345 / 12319; docs/tasks.md, Complaints): each
   * platform by name, with the HMAC secret its posts are signed with and where outcomes go back.
   */
  /** Field photos and documents uploaded to tasks (docs/api.md, Attachments). */
  attachments: z
    .strictObject({
      /** The largest file accepted (413 above it). */
      maxBytes: z
        .number()
        .int()
        .min(1_024)
        .max(100 * 1_048_576, { error: "attachments.maxBytes is at most 100 MiB" })
        .default(10 * 1_048_576),
      /**
       * Files one task holds at most (409 above it): the attachments of a task are a bounded
       * list, as every list citywatch keeps.
       */
      maxPerTask: z
        .number()
        .int()
        .min(1)
        .max(1_000, { error: "attachments.maxPerTask is at most 1000" })
        .default(50),
    })
    .prefault({}),
  complaints: z
    .strictObject({
      platforms: z
        .array(
          z.strictObject({
            /** The platform's name: `X-Citywatch-Platform`, and its bearer token's name. */
            name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, {
              error: "a platform name must be 1-32 characters of a-z 0-9 _ - (e.g. hotline-12345)",
            }),
            /** HMAC-SHA256 key of the posts' signature and of the outcome callback's. */
            secret: z
              .string()
              .min(16, { error: "a platform secret must be at least 16 characters" }),
            /** Where the outcome of a closed complaint task is POSTed; absent: not reported back. */
            callbackUrl: z
              .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
              .optional(),
          }),
        )
        .refine((ps) => new Set(ps.map((p) => p.name)).size === ps.length, {
          error: "complaint platform names must be unique",
        })
        .default([]),
      /** Readings corroborate a complaint from devices this close to it (metres)... */
      radiusM: z.number().positive().max(10_000).default(500),
      /** ...and this long before and after its time. */
      windowMs: DurationMs.default(30 * 60_000),
      /** A post whose timestamp is further than this from the clock is refused (replay). */
      maxSkewMs: DurationMs.default(5 * 60_000),
      /**
       * The complainant's contact (personal information) is erased this long after the
       * complaint's task closed: kept only as long as handling it needs (PIPL Art. 19). The
       * complaint record and its task stay.
       */
      contactRetentionMs: DurationMs.default(180 * 86_400_000),
    })
    .prefault({}),
});
export type TasksConfig = z.infer<typeof TasksConfig>;
