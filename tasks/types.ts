import type { Device, Site } from "../contracts/model/registry.js";

/** The registry as the task service reads it: devices and sites by id (the ingest's RegistryView is one). */
export interface RegistryLookup {
  device(id: string): Device | undefined;
  site(id: string): Site | undefined;
}
