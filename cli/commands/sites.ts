import type { Command } from "commander";
import { ConfigError, type Problem, problemsOf, Site } from "../../contracts/index.js";
import { type DatabaseFlags, withDatabaseOptions } from "../runtime/database.js";
import { refusingDatabaseErrors, withSharedRegistry } from "../runtime/registry-file.js";

interface GlobalFlags extends DatabaseFlags {
  config?: string;
  dataDir?: string;
}

interface AddFlags {
  id: string;
  type: string;
  name: string;
  district: string;
  street?: string;
  gridCell: string;
  lat: string;
  lon: string;
  zone?: string;
  address?: string;
  permit?: string[];
  party?: string;
  creditCode?: string;
  contactName?: string;
  contactPhone?: string;
  phase?: string;
  dustRegion?: string;
  size?: string;
  road?: string;
  tunnel?: string;
  compartment?: string;
  neighbour?: string[];
  levels?: string;
  replace?: boolean;
  json?: boolean;
}

/** The site types that take each type-specific flag (the schema in contracts/model/registry.ts). */
const ONLY_FOR: Record<string, { flag: string; types: readonly string[] }> = {
  party: { flag: "--party", types: ["construction_site", "restaurant", "commercial_venue"] },
  creditCode: {
    flag: "--credit-code",
    types: ["construction_site", "restaurant", "commercial_venue"],
  },
  contactName: {
    flag: "--contact-name",
    types: ["construction_site", "restaurant", "commercial_venue"],
  },
  contactPhone: {
    flag: "--contact-phone",
    types: ["construction_site", "restaurant", "commercial_venue"],
  },
  phase: { flag: "--phase", types: ["construction_site"] },
  dustRegion: { flag: "--dust-region", types: ["construction_site"] },
  size: { flag: "--size", types: ["restaurant"] },
  road: { flag: "--road", types: ["underpass", "drain"] },
  tunnel: { flag: "--tunnel", types: ["tunnel_segment"] },
  compartment: { flag: "--compartment", types: ["tunnel_segment"] },
  neighbour: { flag: "--neighbour", types: ["tunnel_segment"] },
  levels: { flag: "--levels", types: ["river_station"] },
};

/** The flag that sets each schema path, so that a problem names what to type. */
const FLAG_OF: Record<string, string> = {
  id: "--id",
  type: "--type",
  name: "--name",
  "area.district": "--district",
  "area.street": "--street",
  "area.gridCell": "--grid-cell",
  "location.lat": "--lat",
  "location.lon": "--lon",
  zoneClass: "--zone",
  address: "--address",
  regulatedParty: "--party",
  "regulatedParty.name": "--party",
  "regulatedParty.creditCode": "--credit-code",
  "regulatedParty.contact.name": "--contact-name",
  "regulatedParty.contact.phone": "--contact-phone",
  phase: "--phase",
  dustRegion: "--dust-region",
  size: "--size",
  road: "--road",
  tunnel: "--tunnel",
  compartment: "--compartment",
  neighbours: "--neighbour",
  levels: "--levels",
};

function number(value: string): number | string {
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) ? n : value;
}

/** `type,validFrom,validTo[,reference]` as a permit. */
function permitOf(text: string): Record<string, string> {
  const [type = "", validFrom = "", validTo = "", ...reference] = text.split(",");
  return {
    type: type.trim(),
    validFrom: validFrom.trim(),
    validTo: validTo.trim(),
    ...(reference.length > 0 ? { reference: reference.join(",").trim() } : {}),
  };
}

/** The site the flags describe, or every problem with it (schema and flags). */
export function siteFromFlags(flags: AddFlags): { site: Site } | { problems: Problem[] } {
  const problems: Problem[] = [];
  for (const [key, { flag, types }] of Object.entries(ONLY_FOR)) {
    if ((flags as unknown as Record<string, unknown>)[key] === undefined) continue;
    if (!types.includes(flags.type)) {
      problems.push({ path: flag, message: `only for ${types.join(", ")} sites` });
    }
  }
  const takesParty = ONLY_FOR.party?.types.includes(flags.type) === true;
  const contact =
    flags.contactName !== undefined || flags.contactPhone !== undefined
      ? { name: flags.contactName, phone: flags.contactPhone }
      : undefined;
  const levels = flags.levels?.split(",").map((v) => number(v.trim()));
  const input: Record<string, unknown> = {
    id: flags.id,
    type: flags.type,
    name: flags.name,
    area: {
      district: flags.district,
      gridCell: flags.gridCell,
      ...(flags.street !== undefined ? { street: flags.street } : {}),
    },
    location: { lat: number(flags.lat), lon: number(flags.lon) },
    ...(flags.zone !== undefined ? { zoneClass: flags.zone } : {}),
    ...(flags.address !== undefined ? { address: flags.address } : {}),
    ...(flags.permit !== undefined ? { permits: flags.permit.map(permitOf) } : {}),
    ...(takesParty
      ? {
          regulatedParty: {
            name: flags.party,
            ...(flags.creditCode !== undefined ? { creditCode: flags.creditCode } : {}),
            ...(contact !== undefined ? { contact } : {}),
          },
        }
      : {}),
    ...(flags.type === "construction_site"
      ? {
          phase: flags.phase,
          ...(flags.dustRegion !== undefined ? { dustRegion: flags.dustRegion } : {}),
        }
      : {}),
    ...(flags.type === "restaurant" ? { size: flags.size } : {}),
    ...(flags.road !== undefined && ["underpass", "drain"].includes(flags.type)
      ? { road: flags.road }
      : {}),
    ...(flags.type === "tunnel_segment"
      ? { tunnel: flags.tunnel, compartment: flags.compartment, neighbours: flags.neighbour ?? [] }
      : {}),
    ...(levels !== undefined && flags.type === "river_station"
      ? {
          levels:
            levels.length === 3
              ? { warning: levels[0], guaranteed: levels[1], historicalMax: levels[2] }
              : "three numbers",
        }
      : {}),
  };
  const parsed = Site.safeParse(input);
  if (!parsed.success) {
    for (const p of problemsOf(parsed.error)) {
      const path = p.path.replace(/\.\d+(?=\.|$)/g, "");
      const flag = FLAG_OF[path] ?? (path.startsWith("permits") ? "--permit" : undefined);
      problems.push({
        path: flag === undefined ? p.path : `${p.path} (${flag})`,
        message: p.message,
      });
    }
  }
  if (problems.length > 0 || !parsed.success) return { problems };
  return { site: parsed.data };
}

function row(site: Site, devices: number): string {
  return `${site.id.padEnd(26)} ${site.type.padEnd(18)} ${site.area.district.padEnd(12)} ${site.area.gridCell.padEnd(12)} ${String(site.zoneClass ?? "-").padEnd(4)} ${String(devices).padStart(7)}  ${site.name}`;
}

/** `citywatch sites …`: the monitored places devices belong to (add, list, remove). */
export function sitesCommand(program: Command): void {
  const sites = withDatabaseOptions(
    program
      .command("sites")
      .description(
        "manage the monitored sites devices belong to (the data directory's registry, or the cluster's with --database-url)",
      )
      .option("-c, --config <file>", "configuration file (YAML)")
      .option("--data-dir <dir>", "data directory holding registry.db"),
  );
  const globals = (): GlobalFlags => sites.opts<GlobalFlags>();
  /** An action on the registry the flags name; a database that cannot be used exits 1. */
  const act = <A extends unknown[]>(action: (...args: A) => Promise<void>) =>
    refusingDatabaseErrors("sites", action);

  sites
    .command("add")
    .description(
      "register a site; every problem with the flags is listed at once. Types and what they need: " +
        "construction_site (--party, --phase), restaurant (--party, --size), commercial_venue (--party), " +
        "ambient, river_station (--levels), underpass and drain (--road), tunnel_segment (--tunnel, --compartment, --neighbour)",
    )
    .requiredOption("--id <id>", "site id")
    .requiredOption(
      "--type <type>",
      "construction_site | restaurant | commercial_venue | ambient | river_station | underpass | drain | tunnel_segment",
    )
    .requiredOption("--name <name>", "name shown in tasks and evidence")
    .requiredOption("--district <district>", "administrative district")
    .requiredOption("--grid-cell <cell>", "unit grid cell (GB/T 30428.1)")
    .requiredOption("--lat <lat>", "latitude, WGS-84")
    .requiredOption("--lon <lon>", "longitude, WGS-84")
    .option("--street <street>", "street (subdistrict)")
    .option("--zone <class>", "acoustic zone class of the surroundings: 0 1 2 3 4a 4b (GB 3096)")
    .option(
      "--permit <type,from,to[,reference]>",
      "a permit, e.g. night_works,2026-01-01T00:00:00+08:00,2026-06-30T00:00:00+08:00,NW-017; repeatable",
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option(
      "--address <text>",
      "postal address of the site (printed in evidence for site and party)",
    )
    .option("--party <name>", "regulated party (operator or contractor) the cases are addressed to")
    .option("--credit-code <code>", "the party's unified social credit code (18 characters)")
    .option("--contact-name <name>", "the party's contact person")
    .option("--contact-phone <phone>", "the contact's phone")
    .option(
      "--phase <phase>",
      "construction phase: earthwork foundation structure decoration finished",
    )
    .option("--dust-region <key>", "region key of the dust rule table (e.g. sichuan)")
    .option("--size <size>", "restaurant size: small medium large (GB 18483)")
    .option("--road <road>", "road of an underpass or drain")
    .option("--tunnel <name>", "utility tunnel the segment belongs to")
    .option("--compartment <c>", "tunnel compartment: gas power water heat telecom combined")
    .option(
      "--neighbour <siteId>",
      "adjacent tunnel segment (a registered site); repeatable",
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option("--levels <warning,guaranteed,max>", "river station levels in metres, e.g. 3.5,4.2,5.1")
    .option("--replace", "replace the site if its id is registered (its devices stay)")
    .option("--json", "print the site as JSON")
    .action(
      act(async (flags: AddFlags) => {
        const result = siteFromFlags(flags);
        if ("problems" in result) throw new ConfigError("sites add", result.problems);
        const site = await withSharedRegistry(globals(), (r) =>
          r.addSite(result.site, { replace: flags.replace === true }),
        );
        if (flags.json === true) process.stdout.write(`${JSON.stringify(site, null, 2)}\n`);
        else process.stdout.write(`Registered site ${site.id} (${site.type}): ${site.name}\n`);
      }),
    );

  sites
    .command("list")
    .description("list registered sites with their number of devices")
    .option("--json", "print JSON (the full site records)")
    .action(
      act(async (flags: { json?: boolean }) => {
        const listed = await withSharedRegistry(globals(), (r) =>
          r.transaction(async (tx) => {
            const counts = new Map<string, number>();
            for (const d of await tx.listDevices())
              counts.set(d.siteId, (counts.get(d.siteId) ?? 0) + 1);
            return (await tx.listSites()).map((site) => ({
              site,
              devices: counts.get(site.id) ?? 0,
            }));
          }),
        );
        if (flags.json === true) {
          process.stdout.write(
            `${JSON.stringify(
              listed.map((l) => l.site),
              null,
              2,
            )}\n`,
          );
          return;
        }
        process.stdout.write(
          `${"ID".padEnd(26)} ${"TYPE".padEnd(18)} ${"DISTRICT".padEnd(12)} ${"GRID CELL".padEnd(12)} ${"ZONE"} ${"DEVICES".padStart(7)}  NAME\n`,
        );
        for (const l of listed) process.stdout.write(`${row(l.site, l.devices)}\n`);
        process.stdout.write(`${listed.length} site${listed.length === 1 ? "" : "s"}\n`);
      }),
    );

  sites
    .command("remove <id>")
    .description(
      "delete a site; refused while devices belong to it or tunnel segments name it a neighbour, unless --force",
    )
    .option(
      "--force",
      "also remove the site's devices (their secrets stop working at once) and drop it from neighbour lists",
    )
    .action(
      act(async (id: string, flags: { force?: boolean }) => {
        const removed = await withSharedRegistry(globals(), (r) =>
          r.removeSite(id, { force: flags.force === true }),
        );
        process.stdout.write(`site ${id} removed\n`);
        if (removed.devices.length > 0)
          process.stdout.write(`  with its devices: ${removed.devices.join(", ")}\n`);
        if (removed.neighbourOf.length > 0)
          process.stdout.write(`  no longer a neighbour of: ${removed.neighbourOf.join(", ")}\n`);
      }),
    );
}
