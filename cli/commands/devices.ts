import type { Command } from "commander";
import { ConfigError, type DeviceInput, problemsOf, Device } from "../../contracts/index.js";
import { type DatabaseFlags, withDatabaseOptions } from "../runtime/database.js";
import {
  readRegistryFile,
  refusingDatabaseErrors,
  withSharedRegistry,
} from "../runtime/registry-file.js";

/**
 * A stored value on one line: control characters (possible only in rows written before the
 * registry's text rules) shown as \uXXXX escapes, so one device stays one line of `devices list`.
 */
const oneLine = (value: string): string =>
  value.replace(/\p{Cc}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

interface GlobalFlags extends DatabaseFlags {
  config?: string;
  dataDir?: string;
}

export interface AddFlags extends GlobalFlags {
  id: string;
  kind: string;
  site: string;
  model: string;
  serial: string;
  lat: string;
  lon: string;
  district: string;
  street?: string;
  gridCell: string;
  zone?: string;
  calibratedOn?: string;
  calibrationDue?: string;
  typeApproval?: string;
  metrologyCertificate?: string;
  interval?: string;
  json?: boolean;
}

function number(value: string): number | string {
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) ? n : value;
}

/** The device record `devices add` registers, from its flags (validated by the caller). */
export function deviceInputFromFlags(flags: AddFlags): Record<string, unknown> {
  return {
    id: flags.id,
    kind: flags.kind,
    siteId: flags.site,
    model: flags.model,
    serial: flags.serial,
    location: { lat: number(flags.lat), lon: number(flags.lon) },
    area: {
      district: flags.district,
      gridCell: flags.gridCell,
      ...(flags.street !== undefined ? { street: flags.street } : {}),
    },
    ...(flags.zone !== undefined ? { zoneClass: flags.zone } : {}),
    ...(flags.calibratedOn !== undefined ? { calibratedOn: flags.calibratedOn } : {}),
    ...(flags.calibrationDue !== undefined ? { calibrationDueOn: flags.calibrationDue } : {}),
    ...(flags.typeApproval !== undefined ? { typeApproval: flags.typeApproval } : {}),
    ...(flags.metrologyCertificate !== undefined
      ? { metrologyCertificate: flags.metrologyCertificate }
      : {}),
    expectedIntervalS: number(flags.interval ?? "60"),
  };
}

/** `citywatch devices …`: manage the device registry and credentials. */
export function devicesCommand(program: Command): void {
  const devices = withDatabaseOptions(
    program
      .command("devices")
      .description(
        "manage registered devices, sites and service accounts (the data directory's registry, or the cluster's with --database-url)",
      )
      .option("-c, --config <file>", "configuration file (YAML)")
      .option("--data-dir <dir>", "data directory holding registry.db"),
  );
  const globals = (): GlobalFlags => devices.opts<GlobalFlags>();
  /** An action on the registry the flags name; a database that cannot be used exits 1. */
  const act = <A extends unknown[]>(action: (...args: A) => Promise<void>) =>
    refusingDatabaseErrors("devices", action);

  devices
    .command("add")
    .description("register a device and print its secret (shown once)")
    .requiredOption("--id <id>", "device id: its MQTT username and client id")
    .requiredOption("--kind <kind>", "noise | dust | cooking_fume | water_level | utility_tunnel")
    .requiredOption("--site <siteId>", "registered site the device belongs to")
    .requiredOption("--model <model>", "instrument model")
    .requiredOption("--serial <serial>", "instrument serial number")
    .requiredOption("--lat <lat>", "latitude, WGS-84")
    .requiredOption("--lon <lon>", "longitude, WGS-84")
    .requiredOption("--district <district>", "administrative district")
    .requiredOption("--grid-cell <cell>", "unit grid cell (GB/T 30428.1)")
    .option("--street <street>", "street (subdistrict)")
    .option("--zone <class>", "acoustic zone class at the device: 0 1 2 3 4a 4b")
    .option("--calibrated-on <date>", "last calibration, YYYY-MM-DD")
    .option("--calibration-due <date>", "calibration expiry, YYYY-MM-DD")
    .option(
      "--type-approval <number>",
      "pattern / type approval (型式批准) or product certification number, printed in evidence",
    )
    .option(
      "--metrology-certificate <number>",
      "metrological verification or calibration certificate number (检定/校准证书)",
    )
    .option("--interval <seconds>", "expected seconds between messages", "60")
    .option("--json", "print the device and secret as JSON")
    .action(
      act(async (flags: AddFlags) => {
        const input = deviceInputFromFlags(flags);
        const parsed = Device.safeParse(input);
        if (!parsed.success) throw new ConfigError("devices add", problemsOf(parsed.error));
        const issued = await withSharedRegistry(globals(), (r) =>
          r.addDevice(parsed.data as DeviceInput),
        );
        if (flags.json === true) {
          process.stdout.write(
            `${JSON.stringify({ device: issued.record, secret: issued.secret }, null, 2)}\n`,
          );
        } else {
          process.stdout.write(
            `Registered ${issued.record.id} (${issued.record.kind}) at site ${issued.record.siteId}.\n` +
              `Secret (shown once; the registry keeps only a salted hash):\n  ${issued.secret}\n`,
          );
        }
      }),
    );

  devices
    .command("list")
    .description("list registered devices")
    .option("--json", "print JSON")
    .action(
      act(async (flags: { json?: boolean }) => {
        const list = await withSharedRegistry(globals(), (r) => r.listDevices());
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        for (const d of list) {
          process.stdout.write(
            `${d.id.padEnd(24)} ${d.kind.padEnd(15)} ${d.siteId.padEnd(24)} ${oneLine(d.area.gridCell).padEnd(12)} ${d.enabled ? "enabled" : "disabled"}${d.standby === true ? ", standby" : ""}\n`,
          );
        }
        process.stdout.write(`${list.length} device${list.length === 1 ? "" : "s"}\n`);
      }),
    );

  devices
    .command("rotate-secret <id>")
    .description(
      "issue a new secret for a device or service account (printed once; the old one stops working)",
    )
    .action(
      act(async (id: string) => {
        const secret = await withSharedRegistry(globals(), (r) => r.rotateSecret(id));
        process.stdout.write(`New secret for ${id} (shown once):\n  ${secret}\n`);
      }),
    );

  devices
    .command("disable <id>")
    .description("refuse the device's connections from now on")
    .action(
      act(async (id: string) => {
        await withSharedRegistry(globals(), (r) => r.setDeviceEnabled(id, false));
        process.stdout.write(`${id} disabled\n`);
      }),
    );

  devices
    .command("enable <id>")
    .description("accept the device's connections again")
    .action(
      act(async (id: string) => {
        await withSharedRegistry(globals(), (r) => r.setDeviceEnabled(id, true));
        process.stdout.write(`${id} enabled\n`);
      }),
    );

  devices
    .command("remove <id>")
    .description("delete a device from the registry")
    .action(
      act(async (id: string) => {
        await withSharedRegistry(globals(), (r) => r.removeDevice(id));
        process.stdout.write(`${id} removed\n`);
      }),
    );

  devices
    .command("import <file>")
    .description(
      "import sites, devices and service accounts from a YAML/JSON registry file; prints the new secrets once (sites are added or updated; a device or service account already registered with the same definition is kept)",
    )
    .option("--json", "print the issued secrets as JSON")
    .action(
      act(async (file: string, flags: { json?: boolean }) => {
        const content = readRegistryFile(file);
        const issued = await withSharedRegistry(globals(), (r) => r.importFile(content));
        const rows = [
          ...issued.devices.map((d) => ({
            id: d.record.id,
            kind: d.record.kind,
            secret: d.secret,
          })),
          ...issued.serviceAccounts.map((a) => ({
            id: a.record.name,
            kind: `service:${a.record.role}`,
            secret: a.secret,
          })),
        ];
        if (flags.json === true) {
          process.stdout.write(
            `${JSON.stringify({ sites: content.sites.length, issued: rows, kept: issued.kept }, null, 2)}\n`,
          );
          return;
        }
        process.stdout.write(
          `Imported ${content.sites.length} sites, ${issued.devices.length} devices, ${issued.serviceAccounts.length} service accounts.\n`,
        );
        if (issued.kept.length > 0) {
          process.stdout.write(
            `Already registered with the same definition, kept with their secrets: ${issued.kept.join(", ")}\n`,
          );
        }
        if (rows.length > 0) process.stdout.write("Secrets (shown once):\n");
        for (const row of rows)
          process.stdout.write(`  ${row.id.padEnd(24)} ${row.kind.padEnd(18)} ${row.secret}\n`);
      }),
    );

  devices
    .command("add-service")
    .description(
      "create a service account (ingest, simulator or monitor) and print its secret once",
    )
    .requiredOption(
      "--name <name>",
      "account name: its MQTT username; client ids must equal it or start with '<name>-'",
    )
    .requiredOption("--role <role>", "ingest | simulator | monitor")
    .option("--description <text>", "what it is for")
    .action(
      act(async (flags: { name: string; role: string; description?: string }) => {
        const issued = await withSharedRegistry(globals(), (r) =>
          r.addServiceAccount({
            name: flags.name,
            role: flags.role,
            ...(flags.description !== undefined ? { description: flags.description } : {}),
          }),
        );
        process.stdout.write(
          `Service account ${issued.record.name} (${issued.record.role}). Secret (shown once):\n  ${issued.secret}\n`,
        );
      }),
    );

  devices
    .command("sites")
    .description("list registered sites (same as: citywatch sites list)")
    .option("--json", "print JSON")
    .action(
      act(async (flags: { json?: boolean }) => {
        const sites = await withSharedRegistry(globals(), (r) => r.listSites());
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(sites, null, 2)}\n`);
          return;
        }
        for (const s of sites)
          process.stdout.write(
            `${s.id.padEnd(26)} ${s.type.padEnd(18)} ${s.area.gridCell.padEnd(12)} ${s.name}\n`,
          );
      }),
    );
}
