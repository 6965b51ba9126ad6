import { z } from "zod";

/**
 * Identifier of a device, a site or a service account: 1–64 characters from
 * `A–Z a–z 0–9 _ . -`, starting with a letter or digit. The same string is the device's MQTT
 * username, its MQTT client id and a topic level, so it must never contain `/`, `+`, `#`,
 * whitespace or control characters [MQTT-4.7.1].
 */
export const Identifier = z
  .string({ error: "must be a string" })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, {
    error: "must be 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit",
  });

/** Identifier of a field device (one monitor, one MQTT identity). */
export const DeviceId = Identifier.brand<"DeviceId">();
export type DeviceId = z.infer<typeof DeviceId>;

/** Identifier of a site (construction site, restaurant, underpass, river station, tunnel segment…). */
export const SiteId = Identifier.brand<"SiteId">();
export type SiteId = z.infer<typeof SiteId>;

/** Name of a service account (the ingest, the simulators, a read-only monitor). */
export const ServiceAccountName = Identifier.brand<"ServiceAccountName">();
export type ServiceAccountName = z.infer<typeof ServiceAccountName>;
