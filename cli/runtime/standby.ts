import type { Logger } from "pino";
import type { AuthOutcome, Device } from "../../contracts/index.js";
import type { RegistryStore } from "../../registry/store.js";
import type { RulesRegistry } from "../../rules/driver.js";

/*
 * Devices on standby (`Device.standby`, contracts/model/registry.ts): registered, allowed to
 * connect, but not in service, so nothing expects them to report. The demo city is seeded on
 * standby, `citywatch sim` provisions a scenario's devices on standby and puts them back there
 * when the run ends. A device's first accepted CONNECT puts it in service (RegistryStore
 * .authenticate). The rules read the registry without the devices on standby: no rule judges or
 * watches them, so an idle demo device or a finished scenario's device opens no deadman.
 */

/** Whether the device is in service (not on standby). */
export const inService = (device: Device): boolean => device.standby !== true;

/** The registry as the rules read it: the devices on standby left out. */
export function rulesRegistry(registry: RulesRegistry): RulesRegistry {
  return {
    devices: () => registry.devices().filter(inService),
    sites: () => registry.sites(),
  };
}

/** The broker's authentication against the registry, saying when a device leaves standby. */
export function authenticateDevices(
  registry: Pick<RegistryStore, "authenticate">,
  log: Logger,
): (username: string, secret: string) => AuthOutcome {
  return (username, secret) => {
    const outcome = registry.authenticate(username, secret);
    if (outcome.ok && outcome.leftStandby === true) {
      log.info(
        { device: username },
        "device on standby connected: in service now, judged and watched by the rules",
      );
    }
    return outcome;
  };
}

/**
 * Put devices on standby (a scenario's devices when its run ends) and say so. Devices no longer
 * registered are skipped. Returns the ids put on standby.
 */
export function putOnStandby(
  registry: Pick<RegistryStore, "getDevice" | "putOnStandby">,
  ids: readonly string[],
  log: Logger,
  why: string,
): string[] {
  const done = ids.filter((id) => registry.getDevice(id) !== undefined);
  for (const id of done) registry.putOnStandby(id);
  if (done.length > 0) {
    log.info(
      { devices: done },
      `${why}: ${done.length} device${done.length === 1 ? "" : "s"} back on standby (not judged or watched by the rules until they connect again)`,
    );
  }
  return done;
}
