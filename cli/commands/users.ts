import { randomBytes } from "node:crypto";
import type { Command } from "commander";
import { ApiRole, type User, type UserScope } from "../../contracts/index.js";
import { PasswordPolicyError } from "../../tasks/auth/password.js";
import type { AsyncTokenStore } from "../../tasks/auth/store-port.js";
import { UserError } from "../../tasks/auth/users.js";
import { type DatabaseFlags, withDatabaseOptions, withTokenStore } from "../runtime/database.js";

interface GlobalFlags extends DatabaseFlags {
  config?: string;
  dataDir?: string;
}

interface UserFlags {
  name?: string;
  badge?: string;
  role?: string[];
  district?: string[];
  street?: string[];
  grid?: string[];
  cityWide?: boolean;
  team?: string;
}

/** Run an action on the accounts the flags name (the shared database or tokens.db); problems exit 1. */
function withUsers(
  flags: GlobalFlags,
  action: (tokens: AsyncTokenStore) => Promise<void>,
): Promise<void> {
  return withTokenStore(
    "users",
    flags,
    (error) => error instanceof UserError || error instanceof PasswordPolicyError,
    action,
  );
}

const collect = (value: string, previous: string[] | undefined): string[] => [
  ...(previous ?? []),
  value,
];

/** The whole of stdin, first line, for --password-stdin. */
async function passwordFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return (Buffer.concat(chunks).toString("utf8").split(/\r?\n/, 1)[0] ?? "").trimEnd();
}

function scopeOf(flags: UserFlags): UserScope | undefined {
  if (
    flags.cityWide === undefined &&
    flags.district === undefined &&
    flags.street === undefined &&
    flags.grid === undefined
  ) {
    return undefined;
  }
  return {
    cityWide: flags.cityWide === true,
    districts: flags.district ?? [],
    streets: flags.street ?? [],
    gridCells: flags.grid ?? [],
  };
}

function describe(u: User): string {
  const scope = u.scope.cityWide
    ? "city-wide"
    : [
        ...u.scope.districts.map((d) => `district ${d}`),
        ...u.scope.streets.map((s) => `street ${s}`),
        ...u.scope.gridCells.map((g) => `grid ${g}`),
      ].join(", ");
  return `${u.id.padEnd(16)} ${u.name.padEnd(20)} ${u.roles.join("+").padEnd(24)} ${scope}${u.team === null ? "" : `  team ${u.team}`}${u.badge === null ? "" : `  badge ${u.badge}`}${u.disabled ? "  DISABLED" : ""}`;
}

function withScopeOptions(command: Command): Command {
  return command
    .option("--badge <number>", "staff or enforcement badge number (执法证号)")
    .option("--role <role>", `a role (repeat for several): ${ApiRole.options.join(" | ")}`, collect)
    .option("--district <name>", "acts in this district (repeat for several)", collect)
    .option("--street <name>", "acts in this street (街道) (repeat for several)", collect)
    .option("--grid <cell>", "acts in this grid cell (repeat for several)", collect)
    .option("--city-wide", "acts everywhere (admins, the command centre)")
    .option("--team <team>", "the team the user works in");
}

/** `citywatch users …`: people's accounts for the console and the API (tokens.db in the data directory). */
export function usersCommand(program: Command): void {
  const users = withDatabaseOptions(
    program
      .command("users")
      .description(
        "manage user accounts: name, badge, roles, scope (districts, streets, grid cells) and team; passwords hashed with scrypt",
      )
      .option("-c, --config <file>", "configuration file (YAML)")
      .option("--data-dir <dir>", "data directory holding tokens.db"),
  );
  const globals = (): GlobalFlags => users.opts<GlobalFlags>();

  withScopeOptions(
    users
      .command("add <id>")
      .description(
        "add a user; the password comes from --password-stdin, or one is generated and printed once",
      )
      .requiredOption("--name <name>", "the person's name as documents print it"),
  )
    .option("--password-stdin", "read the password from the first line of stdin")
    .option("--json", "print the user as JSON")
    .action(async (id: string, flags: UserFlags & { passwordStdin?: boolean; json?: boolean }) => {
      const generated =
        flags.passwordStdin === true ? undefined : randomBytes(15).toString("base64url");
      const password = generated ?? (await passwordFromStdin());
      await withUsers(globals(), async (store) => {
        const user = await store.users.add(
          {
            id,
            name: flags.name ?? id,
            roles: (flags.role ?? []) as ApiRole[],
            scope: scopeOf(flags) ?? { cityWide: false, districts: [], streets: [], gridCells: [] },
            ...(flags.badge === undefined ? {} : { badge: flags.badge }),
            ...(flags.team === undefined ? {} : { team: flags.team }),
          },
          password,
        );
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(user, null, 2)}\n`);
        } else {
          process.stdout.write(`added ${describe(user)}\n`);
        }
        if (generated !== undefined) {
          process.stdout.write(
            `Password for ${user.id}; shown ONCE, hand it over now:\n  ${generated}\n`,
          );
        }
      });
    });

  users
    .command("list")
    .description("list users (never their passwords)")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      await withUsers(globals(), async (store) => {
        const list = await store.users.list();
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        for (const u of list) process.stdout.write(`${describe(u)}\n`);
        process.stdout.write(`${list.length} user${list.length === 1 ? "" : "s"}\n`);
      });
    });

  withScopeOptions(
    users
      .command("set <id>")
      .description("change a user's name, badge, roles, scope or team (given options replace)")
      .option("--name <name>", "the person's name"),
  ).action(async (id: string, flags: UserFlags) => {
    await withUsers(globals(), async (store) => {
      const user = await store.users.update(id, {
        name: flags.name,
        badge: flags.badge,
        roles: flags.role as ApiRole[] | undefined,
        scope: scopeOf(flags),
        team: flags.team,
      });
      process.stdout.write(`changed ${describe(user)}\n`);
    });
  });

  users
    .command("passwd <id>")
    .description("set a user's password from the first line of stdin (their sessions end)")
    .action(async (id: string) => {
      const password = await passwordFromStdin();
      await withUsers(globals(), async (store) => {
        await store.users.setPassword(id, password);
        process.stdout.write(`password of ${id} set; their sessions ended\n`);
      });
    });

  for (const [name, disabled] of [
    ["disable", true],
    ["enable", false],
  ] as const) {
    users
      .command(`${name} <id>`)
      .description(
        disabled
          ? "disable a user at once: their sessions end and their tokens are refused"
          : "enable a disabled user",
      )
      .action(async (id: string) => {
        await withUsers(globals(), async (store) => {
          const user = await store.users.setDisabled(id, disabled);
          process.stdout.write(`${user.id} ${disabled ? "disabled" : "enabled"}\n`);
        });
      });
  }
}
