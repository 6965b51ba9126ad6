import { readFileSync } from "node:fs";
import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  apiFailure,
  ConfigError,
  Device,
  DeviceCredentials,
  type DeviceInput,
  DevicePatch,
  DeviceState,
  deviceTopic,
  errorResponses,
  MapSettings,
  problemsOf,
  type Site,
  SitesResponse,
} from "../../contracts/index.js";
import type { CitywatchConfig } from "../../contracts/config/citywatch.js";
import type { Issued } from "../../registry/store.js";

/*
 * The registry over HTTP for the console (docs/api.md section 17): the sites (any role), and an
 * admin's device changes, the same the CLI makes (`citywatch devices add | rotate-secret |
 * disable | enable`):
 *   GET   /api/v1/sites                   registered sites with their place
 *   POST  /api/v1/devices                 register a device: its secret, in this answer only
 *   POST  /api/v1/devices/{id}/secret     a new secret (the old one stops at once)
 *   PATCH /api/v1/devices/{id}            { enabled }: disable or enable
 *   GET   /api/v1/map                     the console map's tile layer and GeoJSON base
 * The writes go through the process's registry connection; the revocation watch
 * (revocations.ts) sees them as it sees the CLI's, so a disabled or rotated device's session
 * closes at once.
 */

type Answer<T> = T | Promise<T>;

/**
 * The registry as these routes use it: the embedded RegistryStore (answering at once), or a
 * cluster node's (writes to PostgreSQL, reads from the node's copy; serve-cluster.ts).
 */
export interface DeviceRegistry {
  addDevice(input: DeviceInput): Answer<Issued<Device>>;
  rotateSecret(id: string): Answer<string>;
  setDeviceEnabled(id: string, enabled: boolean): Answer<void>;
  getDevice(id: string): Answer<Device | undefined>;
  listSites(): Answer<Site[]>;
  resolvedSite(id: string): Answer<Site | undefined>;
}

export interface RegistryApiOptions {
  readonly registry: DeviceRegistry;
  /** The broker's MQTT port, told to whoever registers a device. */
  readonly mqttPort: number;
  /** `console.map` of the configuration. */
  readonly map: CitywatchConfig["console"]["map"];
  /** Any caller with a token or session. */
  readonly authenticate: (request: FastifyRequest) => Promise<void>;
  /** Admins only. */
  readonly admin: (request: FastifyRequest) => Promise<void>;
}

/** The demo city's districts and grid cells, the map's base when no other is configured. */
export const DEMO_AREAS_FILE = new URL("../../simulators/demo-city/areas.geojson", import.meta.url)
  .pathname;

/** Read the map's GeoJSON base; a missing or malformed file is a configuration error at start. */
export function readAreas(file: string): z.infer<typeof MapSettings>["areas"] {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(file, [
      { path: "console.map.areas", message: (error as Error).message.split("\n")[0] ?? "" },
    ]);
  }
  const parsed = MapSettings.shape.areas.safeParse(value);
  if (!parsed.success) throw new ConfigError(file, problemsOf(parsed.error));
  return parsed.data;
}

/**
 * The origins the map's tiles come from, for the console's img-src: the template's origin with
 * each subdomain put in for {s}.
 */
export function tileOrigins(map: CitywatchConfig["console"]["map"]): string[] {
  if (map.tileUrl === undefined) return [];
  const letters = map.tileUrl.includes("{s}") ? [...map.tileSubdomains] : [""];
  const origins = new Set<string>();
  for (const s of letters) {
    try {
      origins.add(new URL(map.tileUrl.replaceAll("{s}", s)).origin);
    } catch {
      // Not a URL with this subdomain: left out (the config schema checked the template).
    }
  }
  return [...origins];
}

const IdParams = z.object({ id: z.string().describe("device id") });
const security = [{ bearer: [] }, { session: [] }];

/** A registry refusal (registry/store.ts RegistryError) as an API error. */
function registryProblem(error: unknown): never {
  if (error instanceof Error && error.name === "RegistryError" && "code" in error) {
    throw apiFailure(
      error.code === "REGISTRY_DUPLICATE"
        ? "conflict"
        : error.code === "REGISTRY_NOT_FOUND"
          ? "not_found"
          : "bad_request",
      error.message,
    );
  }
  throw error;
}

export const registryApi: FastifyPluginAsyncZod<RegistryApiOptions> = (app, options) => {
  const { registry } = options;
  const areas = readAreas(options.map.areas ?? DEMO_AREAS_FILE);
  const credentials = (deviceId: string, secret: string) => ({
    deviceId,
    secret,
    mqtt: { port: options.mqttPort, dataTopic: deviceTopic(deviceId, "data") },
  });

  app.get(
    "/api/v1/sites",
    {
      onRequest: options.authenticate,
      schema: {
        tags: ["readings"],
        summary: "Registered sites with their place",
        security,
        response: { 200: SitesResponse, ...errorResponses({ unauthorized: "no valid token" }) },
      },
    },
    async () => {
      const listed = await registry.listSites();
      const resolved = await Promise.all(listed.map(async (l) => registry.resolvedSite(l.id)));
      return {
        sites: listed.map((l, i) => {
          const s = resolved[i] ?? l;
          const party = "regulatedParty" in s ? s.regulatedParty : undefined;
          return {
            id: s.id,
            name: s.name,
            type: s.type,
            area: s.area,
            location: s.location,
            ...(party === undefined
              ? {}
              : {
                  party: {
                    name: party.name,
                    ...(party.creditCode === undefined ? {} : { creditCode: party.creditCode }),
                    recordKey: party.creditCode ?? `site:${s.id}`,
                  },
                }),
          };
        }),
      };
    },
  );

  app.get(
    "/api/v1/map",
    {
      onRequest: options.authenticate,
      schema: {
        tags: ["readings"],
        summary: "The console map's tile layer (console.map) and its GeoJSON base",
        security,
        response: { 200: MapSettings, ...errorResponses({ unauthorized: "no valid token" }) },
      },
    },
    () => ({
      tiles:
        options.map.tileUrl === undefined
          ? null
          : {
              url: options.map.tileUrl,
              attribution: options.map.tileAttribution,
              subdomains: options.map.tileSubdomains,
              maxZoom: options.map.tileMaxZoom,
            },
      areas,
    }),
  );

  app.post(
    "/api/v1/devices",
    {
      onRequest: options.admin,
      schema: {
        tags: ["readings"],
        summary: "Register a device (admin); its secret is in this answer only",
        security,
        body: z.looseObject({}).describe("the device record (docs/registry.md)"),
        response: {
          201: DeviceCredentials,
          ...errorResponses({
            bad_request: "the record is not a valid device",
            unauthorized: "no valid token",
            forbidden: "not an admin",
            not_found: "the site is not registered",
            conflict: "the id is already registered",
          }),
        },
      },
    },
    async (request, reply) => {
      const parsed = Device.safeParse(request.body);
      if (!parsed.success)
        throw apiFailure("bad_request", "not a valid device", problemsOf(parsed.error));
      let issued;
      try {
        issued = await registry.addDevice(parsed.data);
      } catch (error) {
        registryProblem(error);
      }
      request.log.info({ deviceId: issued.record.id }, "device registered over the API");
      return reply.code(201).send(credentials(issued.record.id, issued.secret));
    },
  );

  app.post(
    "/api/v1/devices/:id/secret",
    {
      onRequest: options.admin,
      schema: {
        tags: ["readings"],
        summary: "Issue a new secret for a device (admin); the old one stops working at once",
        security,
        params: IdParams,
        response: {
          200: DeviceCredentials,
          ...errorResponses({
            unauthorized: "no valid token",
            forbidden: "not an admin",
            not_found: "no such device",
          }),
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      if ((await registry.getDevice(id)) === undefined)
        throw apiFailure("not_found", `device ${id} is not registered`);
      try {
        return credentials(id, await registry.rotateSecret(id));
      } catch (error) {
        return registryProblem(error);
      }
    },
  );

  app.patch(
    "/api/v1/devices/:id",
    {
      onRequest: options.admin,
      schema: {
        tags: ["readings"],
        summary: "Enable or disable a device (admin); a disabled device's session closes at once",
        security,
        params: IdParams,
        body: DevicePatch,
        response: {
          200: DeviceState.pick({ id: true, enabled: true }),
          ...errorResponses({
            bad_request: "the body is not { enabled: boolean }",
            unauthorized: "no valid token",
            forbidden: "not an admin",
            not_found: "no such device",
          }),
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      try {
        await registry.setDeviceEnabled(id, request.body.enabled);
      } catch (error) {
        registryProblem(error);
      }
      return { id, enabled: request.body.enabled };
    },
  );
  return Promise.resolve();
};
