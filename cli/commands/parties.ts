import type { Command } from "commander";
import {
  ConfigError,
  type Party,
  PartyInput,
  type Problem,
  problemsOf,
} from "../../contracts/index.js";
import { type DatabaseFlags, withDatabaseOptions } from "../runtime/database.js";
import {
  readPartiesFile,
  refusingDatabaseErrors,
  withSharedRegistry,
} from "../runtime/registry-file.js";

/*
 * `citywatch parties …`: the regulated-party registry (issue #18 item 3). A party is keyed by its
 * unified social credit code; one without a code gets a stable generated key (from its name) and
 * a warning. `--site` names the party's sites: its record is then their party, ahead of the
 * party written inline in the site.
 */

interface GlobalFlags extends DatabaseFlags {
  config?: string;
  dataDir?: string;
}

interface AddFlags {
  name: string;
  creditCode?: string;
  legalRep?: string;
  contact?: string[];
  address?: string;
  site?: string[];
  replace?: boolean;
  json?: boolean;
}

const FLAG_OF: Record<string, string> = {
  name: "--name",
  creditCode: "--credit-code",
  legalRepresentative: "--legal-rep",
  contacts: "--contact",
  address: "--address",
  sites: "--site",
};

const repeatable = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** `name,phone[,role]` as a contact; a problem when it is not. */
function contactOf(text: string, i: number, problems: Problem[]) {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length < 2 || parts.length > 3) {
    problems.push({
      path: `contacts.${i} (--contact)`,
      message: `"${text}" is not name,phone[,role]`,
    });
    return undefined;
  }
  const [name, phone, role] = parts;
  return { name, phone, ...(role === undefined || role === "" ? {} : { role }) };
}

function partyFromFlags(flags: AddFlags): { input: PartyInput } | { problems: Problem[] } {
  const problems: Problem[] = [];
  const contacts = (flags.contact ?? []).map((c, i) => contactOf(c, i, problems));
  const input = {
    name: flags.name,
    ...(flags.creditCode === undefined ? {} : { creditCode: flags.creditCode }),
    ...(flags.legalRep === undefined ? {} : { legalRepresentative: flags.legalRep }),
    contacts: contacts.filter((c) => c !== undefined),
    ...(flags.address === undefined ? {} : { address: flags.address }),
    sites: flags.site ?? [],
  };
  const parsed = PartyInput.safeParse(input);
  if (!parsed.success) {
    for (const p of problemsOf(parsed.error)) {
      const flag = FLAG_OF[p.path.split(".")[0] ?? ""];
      problems.push({
        path: flag === undefined ? p.path : `${p.path} (${flag})`,
        message: p.message,
      });
    }
  }
  if (problems.length > 0 || !parsed.success) return { problems };
  return { input: parsed.data };
}

function describe(party: Party, sites: readonly string[]): string {
  return [
    `${party.key}  ${party.name}`,
    `  credit code:          ${party.creditCode ?? "(none: generated key)"}`,
    `  legal representative: ${party.legalRepresentative ?? "-"}`,
    `  address:              ${party.address ?? "-"}`,
    ...party.contacts.map(
      (c) =>
        `  contact:              ${c.name}, ${c.phone}${c.role === undefined ? "" : ` (${c.role})`}`,
    ),
    `  sites:                ${sites.length === 0 ? "-" : sites.join(", ")}`,
    `  updated:              ${party.updatedAt}`,
  ].join("\n");
}

function warn(warnings: readonly string[]): void {
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
}

/** `citywatch parties …`: add, list, show, import regulated parties. */
export function partiesCommand(program: Command): void {
  const parties = withDatabaseOptions(
    program
      .command("parties")
      .description(
        "manage regulated parties (keyed by unified social credit code) in the data directory's registry, or the cluster's with --database-url",
      )
      .option("-c, --config <file>", "configuration file (YAML)")
      .option("--data-dir <dir>", "data directory holding registry.db"),
  );
  const globals = (): GlobalFlags => parties.opts<GlobalFlags>();
  /** An action on the registry the flags name; a database that cannot be used exits 1. */
  const act = <A extends unknown[]>(action: (...args: A) => Promise<void>) =>
    refusingDatabaseErrors("parties", action);

  parties
    .command("add")
    .description(
      "register a party; every problem with the flags is listed at once. Without --credit-code it gets a generated key and a warning",
    )
    .requiredOption("--name <name>", "the party's registered name")
    .option("--credit-code <code>", "unified social credit code (18 characters, GB 32100-2015)")
    .option("--legal-rep <name>", "legal representative (法定代表人)")
    .option("--contact <name,phone[,role]>", "a contact person; repeatable", repeatable)
    .option("--address <text>", "registered address")
    .option(
      "--site <siteId>",
      "a site of the party (its record becomes the site's party); repeatable",
      repeatable,
    )
    .option("--replace", "replace the party's record if it is registered")
    .option("--json", "print the party as JSON")
    .action(
      act(async (flags: AddFlags) => {
        const result = partyFromFlags(flags);
        if ("problems" in result) throw new ConfigError("parties add", result.problems);
        const { party, warnings, sites } = await withSharedRegistry(globals(), (r) =>
          r.transaction(async (tx) => {
            const written = await tx.putParty(result.input, { replace: flags.replace === true });
            return { ...written, sites: await tx.sitesOfParty(written.party.key) };
          }),
        );
        warn(warnings);
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify({ party, sites, warnings }, null, 2)}\n`);
        } else {
          process.stdout.write(`Registered party ${party.key}: ${party.name}\n`);
        }
      }),
    );

  parties
    .command("list")
    .description("list registered parties")
    .option("--json", "print JSON (the full records)")
    .action(
      act(async (flags: { json?: boolean }) => {
        const listed = await withSharedRegistry(globals(), (r) => r.listParties());
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(listed, null, 2)}\n`);
          return;
        }
        process.stdout.write(`${"KEY".padEnd(24)} ${"SITES".padStart(5)}  NAME\n`);
        for (const p of listed) {
          process.stdout.write(
            `${p.key.padEnd(24)} ${String(p.sites.length).padStart(5)}  ${p.name}\n`,
          );
        }
        process.stdout.write(`${listed.length} part${listed.length === 1 ? "y" : "ies"}\n`);
      }),
    );

  parties
    .command("show <key>")
    .description("show one party (by credit code or generated key) and its sites")
    .option("--json", "print JSON")
    .action(
      act(async (key: string, flags: { json?: boolean }) => {
        const found = await withSharedRegistry(globals(), (r) =>
          r.transaction(async (tx) => {
            const party = await tx.getParty(key);
            return party === undefined ? undefined : { party, sites: await tx.sitesOfParty(key) };
          }),
        );
        if (found === undefined) {
          throw new ConfigError("parties show", [
            { path: "key", message: `no party ${key} (citywatch parties list)` },
          ]);
        }
        if (flags.json === true) process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
        else process.stdout.write(`${describe(found.party, found.sites)}\n`);
      }),
    );

  parties
    .command("import <file>")
    .description(
      "register or replace every party of a registry file's top-level parties: list (YAML or JSON), in one transaction",
    )
    .option("--json", "print JSON")
    .action(
      act(async (file: string, flags: { json?: boolean }) => {
        const parsed = readPartiesFile(file);
        const result = await withSharedRegistry(globals(), (r) => r.importParties(parsed.parties));
        warn(result.warnings);
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          `Imported ${parsed.parties.length} part${parsed.parties.length === 1 ? "y" : "ies"} from ${file}: ${result.created.length} new, ${result.replaced.length} replaced\n`,
        );
      }),
    );
}
