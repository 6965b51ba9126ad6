import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  ComplaintRequest,
  ComplaintResponse,
  ManualTaskRequest,
  type TaskSource,
} from "../../contracts/model/complaints.js";
import { apiFailure, errorResponses } from "../../contracts/model/errors.js";
import type { Device, Site } from "../../contracts/model/registry.js";
import type { SensorKind } from "../../contracts/model/sensors.js";
import { TaskDetailResponse } from "../../contracts/model/tasks.js";
import type { BearerAuth } from "../auth/bearer.js";
import { userOf } from "../auth/bearer.js";
import { describeScope, inScope } from "../auth/scope.js";
import type { TaskApiDeps } from "../app.js";
import {
  complaintRuleId,
  corroboration,
  freshTimestamp,
  kindOfCategory,
  limitFor,
  nearbyDevices,
  nearestSite,
  type ReadingLike,
  sensorOfCategory,
  validSignature,
} from "../complaints.js";
import { partyOf } from "../graduated.js";
import { security } from "./options.js";
import { checkActs } from "./tasks.js";

/*
 * Inbound work (docs/tasks.md, Complaints and manual filing):
 * - POST /api/v1/complaints: a hotline platform posts a complaint. It needs a bearer token whose
 *   name is the platform's (or an admin / command-centre token) AND the platform's HMAC signature
 *   over the exact body bytes (X-Citywatch-Platform, X-Citywatch-Timestamp within the allowed
 *   skew, X-Citywatch-Signature: sha256=hex(HMAC(secret, timestamp + "." + body)), compared in
 *   constant time). The raw body is kept by this plugin's own JSON parser (its encapsulated
 *   context only). Idempotent by (platform, complaint id): a repeat answers 200 with the same task.
 * - POST /api/v1/tasks: an officer files a task by hand at a site in their scope.
 * Readings are read here (async) before the synchronous service call.
 */

/** The time-series store as these routes read it. */
export interface ReadingsSource {
  readings(query: {
    deviceId: string;
    kind: SensorKind;
    fromMs: number;
    toMs: number;
    limit: number;
  }): Promise<ReadonlyArray<ReadingLike & { readonly seq?: number }>>;
}

export interface ComplaintPluginOptions {
  readonly deps: TaskApiDeps;
  readonly auth: BearerAuth;
  readonly store: ReadingsSource;
  readonly registry: { devices(): Device[]; sites(): Site[] };
}

/** Readings a manual filing attaches at most (all ranges together). */
export const MAX_ATTACHED_READINGS = 2_000;
/** Devices a complaint's corroboration reads at most (the nearest). */
const MAX_DEVICES = 5;
/** Readings read per device for a complaint at most. */
const MAX_READINGS_PER_DEVICE = 2_000;

const PlatformHeaders = z.object({
  "x-citywatch-platform": z.string().min(1).max(64).optional(),
  "x-citywatch-timestamp": z.string().max(20).optional(),
  "x-citywatch-signature": z.string().max(200).optional(),
});

/** The request's exact body as received (this plugin's parser keeps it). */
const rawBodies = new WeakMap<FastifyRequest, { text: string; error?: string }>();

const header = (request: FastifyRequest, name: string): string | undefined => {
  const v = request.headers[name];
  return typeof v === "string" ? v : undefined;
};

export const complaintApi: FastifyPluginAsyncZod<ComplaintPluginOptions> = (app, options) => {
  const { deps, auth } = options;

  // This context's JSON parser keeps the exact bytes (the signature is over them). A body that is
  // not JSON is reported after the signature check (an unsigned post learns nothing more).
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    const text = typeof body === "string" ? body : body.toString("utf8");
    try {
      const parsed: unknown = JSON.parse(text);
      rawBodies.set(request, { text });
      done(null, parsed);
    } catch (error) {
      rawBodies.set(request, { text, error: (error as Error).message });
      done(null, {});
    }
  });

  const notJson = (request: FastifyRequest) => {
    const raw = rawBodies.get(request);
    if (raw?.error !== undefined) {
      throw apiFailure("bad_request", `the body is not valid JSON: ${raw.error}`);
    }
  };

  /** The platform's token and signature; the platform's configuration. */
  const checkPlatform = (request: FastifyRequest) => {
    const caller = auth.callerOf(request);
    const headers = PlatformHeaders.safeParse(request.headers);
    const name = headers.success ? header(request, "x-citywatch-platform") : undefined;
    if (name === undefined) {
      throw apiFailure("unauthorized", "a complaint needs the X-Citywatch-Platform header");
    }
    const platform = deps.service.complaintPlatform(name);
    if (platform === undefined) {
      throw apiFailure("unauthorized", `no complaint platform ${name} is configured`);
    }
    if (caller.via !== "token") {
      throw apiFailure("forbidden", "complaints are posted with a platform's bearer token");
    }
    const privileged = caller.roles.includes("admin") || caller.roles.includes("command_centre");
    if (userOf(caller.name) !== platform.name && !privileged) {
      throw apiFailure(
        "forbidden",
        `token ${caller.name} is not ${platform.name}'s (a platform's token bears its name)`,
      );
    }
    const timestamp = header(request, "x-citywatch-timestamp") ?? "";
    const settings = deps.service.complaintSettings();
    if (!freshTimestamp(timestamp, deps.now(), settings.maxSkewMs)) {
      throw apiFailure(
        "unauthorized",
        `X-Citywatch-Timestamp must be unix seconds within ${settings.maxSkewMs / 1000} s of now`,
      );
    }
    const signature = header(request, "x-citywatch-signature") ?? "";
    const raw = rawBodies.get(request)?.text ?? "";
    if (!validSignature(platform.secret, timestamp, raw, signature)) {
      throw apiFailure(
        "unauthorized",
        'bad X-Citywatch-Signature: expected sha256=hex(HMAC-SHA256(secret, timestamp + "." + body))',
      );
    }
    notJson(request);
    return platform;
  };

  app.addHook("onRequest", auth.authenticate);

  app.post(
    "/api/v1/complaints",
    {
      schema: {
        tags: ["tasks"],
        summary: "A hotline platform (12345 / 12319) posts a citizen's complaint (signed)",
        security,
        body: ComplaintRequest,
        response: {
          200: ComplaintResponse.describe("a repeat of a complaint taken in before: its task"),
          201: ComplaintResponse.describe("the complaint was filed as a task"),
          ...errorResponses({
            bad_request: "the body is not a complaint; every problem named",
            unauthorized:
              "no valid bearer token, unknown platform, stale timestamp or bad signature",
            forbidden: "the token is not the platform's (nor admin / command centre)",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
      preValidation: (request, _reply, done) => {
        try {
          checkPlatform(request);
          done();
        } catch (error) {
          done(error as Error);
        }
      },
    },
    async (request, reply) => {
      const platform = checkPlatform(request);
      const body = request.body;
      const before = await deps.store.complaintTask(platform.name, body.complaintId);
      if (before !== undefined) return reply.code(200).send({ taskId: before, created: false });
      const settings = deps.service.complaintSettings();
      const sites = options.registry.sites();
      const near = nearestSite(sites, body.location);
      const site = near?.site;
      const atMs = Date.parse(body.receivedAt);
      const fromMs = atMs - settings.windowMs;
      const toMs = atMs + settings.windowMs;
      const sensor = sensorOfCategory(body.category);
      const point =
        body.location.lat !== undefined && body.location.lon !== undefined
          ? { lat: body.location.lat, lon: body.location.lon }
          : undefined;
      const found =
        sensor === undefined || point === undefined
          ? []
          : nearbyDevices(options.registry.devices(), sensor.kind, point, settings.radiusM).slice(
              0,
              MAX_DEVICES,
            );
      let readFailure: string | undefined;
      const devices = await Promise.all(
        found.map(async ({ device, distanceM }) => {
          let readings: readonly ReadingLike[] = [];
          try {
            readings = await options.store.readings({
              deviceId: device.id,
              kind: device.kind,
              fromMs,
              toMs,
              limit: MAX_READINGS_PER_DEVICE,
            });
          } catch (error) {
            readFailure = (error as Error).message;
          }
          return { deviceId: device.id, siteId: device.siteId, distanceM, readings };
        }),
      );
      // The open case at the same party (its newest), else at the same site (not a complaint),
      // when the complaint is at that site (within the radius, or matched by its address).
      const atSite =
        site !== undefined && (near?.distanceM ?? 0) <= settings.radiusM ? site : undefined;
      const party = partyOf(atSite);
      const linked =
        (party === undefined ? undefined : await deps.store.openIncident(party.key)) ??
        (atSite === undefined
          ? undefined
          : (await deps.store.openTasksAtSite(atSite.id)).find(
              (t) => t.source?.type !== "complaint",
            ));
      const limit = limitFor({
        category: body.category,
        site: atSite,
        receivedAt: body.receivedAt,
        linked,
      });
      const record = corroboration({
        category: body.category,
        fromMs,
        toMs,
        radiusM: settings.radiusM,
        devices,
        limit,
        located: point !== undefined,
      });
      const statement =
        readFailure === undefined
          ? record.statement
          : `${record.statement} (some readings could not be read: ${readFailure})`;
      const source: Extract<TaskSource, { type: "complaint" }> = {
        type: "complaint",
        platform: platform.name,
        complaintId: body.complaintId,
        receivedAt: body.receivedAt,
        category: body.category,
        text: body.text,
        location: { ...body.location },
        ...(near === undefined || near.distanceM === undefined
          ? near === undefined
            ? {}
            : { nearestSite: { id: near.site.id, distanceM: 0 } }
          : { nearestSite: { id: near.site.id, distanceM: near.distanceM } }),
        ...(linked === undefined ? {} : { linkedTaskId: linked.id }),
        corroboration: { ...record, statement },
      };
      const result = await deps.service.fileComplaint({
        platform: platform.name,
        complaintId: body.complaintId,
        receivedAt: body.receivedAt,
        kind: kindOfCategory(body.category),
        category: body.category,
        ruleId: complaintRuleId(body.category, platform.name, body.complaintId),
        siteId: site?.id,
        source,
        contact: body.contact,
        actor: auth.callerOf(request).actor,
      });
      return reply
        .code(result.created ? 201 : 200)
        .send({ taskId: result.task.id, created: result.created });
    },
  );

  app.post(
    "/api/v1/tasks",
    {
      schema: {
        tags: ["tasks"],
        summary: "An officer files a task by hand at a site, with optional attached readings",
        security,
        body: ManualTaskRequest,
        response: {
          201: TaskDetailResponse,
          ...errorResponses({
            bad_request:
              "the body is not a filing (every problem named), or the ranges hold more than 2000 readings",
            unauthorized: "no valid bearer token or session",
            forbidden:
              "the site is outside the caller's scope, or the role does not act on the kind",
            not_found: "unknown site or device",
            conflict: "the site already has an open task of this rule or observation",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
      preValidation: (request, _reply, done) => {
        try {
          notJson(request);
          done();
        } catch (error) {
          done(error as Error);
        }
      },
    },
    async (request, reply) => {
      const caller = auth.callerOf(request);
      const body = request.body;
      const kind = body.kind ?? "enforcement";
      checkActs(caller, { kind }, "file");
      const site = options.registry.sites().find((s) => s.id === body.siteId);
      if (site === undefined) throw apiFailure("not_found", `no site ${body.siteId}`);
      const routing = {
        department: "",
        team: "",
        district: site.area.district,
        ...(site.area.street === undefined ? {} : { street: site.area.street }),
        gridCell: site.area.gridCell,
        rule: null,
      };
      if (!inScope(caller.scope, { routing })) {
        throw apiFailure(
          "forbidden",
          `site ${site.id} is outside your scope (${describeScope(caller.scope)}); it lies in ${site.area.district} / ${site.area.gridCell}`,
        );
      }
      const devices = options.registry.devices();
      const attached: Array<{
        deviceId: string;
        from: string;
        to: string;
        readings: Array<{ ts: string; quality: string; values: Record<string, number | boolean> }>;
      }> = [];
      let total = 0;
      for (const range of body.readings ?? []) {
        const device = devices.find((d) => d.id === range.deviceId);
        if (device === undefined) throw apiFailure("not_found", `no device ${range.deviceId}`);
        const left = MAX_ATTACHED_READINGS - total;
        const readings = await options.store.readings({
          deviceId: device.id,
          kind: device.kind,
          fromMs: Date.parse(range.from),
          toMs: Date.parse(range.to),
          limit: left + 1,
        });
        if (readings.length > left) {
          throw apiFailure(
            "bad_request",
            `the ranges hold more than ${MAX_ATTACHED_READINGS} readings; attach shorter ranges`,
            [{ path: "readings", message: `at most ${MAX_ATTACHED_READINGS} readings in all` }],
          );
        }
        total += readings.length;
        attached.push({
          deviceId: device.id,
          from: new Date(Date.parse(range.from)).toISOString(),
          to: new Date(Date.parse(range.to)).toISOString(),
          readings: readings.map((r) => ({
            ts: new Date(r.timeMs).toISOString(),
            quality: r.quality,
            values: { ...r.values },
          })),
        });
      }
      const rule =
        body.rule ??
        (body.observation === undefined
          ? undefined
          : {
              id: `manual.${body.observation}`,
              clause: { standard: "officer's observation", section: body.observation },
            });
      if (rule === undefined) throw apiFailure("bad_request", "name a rule or an observation");
      const result = await deps.service.fileManual(
        {
          kind,
          siteId: site.id,
          rule,
          observation: body.observation,
          note: body.note,
          readings: attached,
        },
        { name: caller.actor, id: caller.userId ?? `token:${caller.name}`, roles: caller.roles },
      );
      if (!result.ok) throw apiFailure(result.error, result.message);
      return reply
        .code(201)
        .send({ task: result.task, audit: await deps.service.audit(result.task.id) });
    },
  );
  return Promise.resolve();
};
