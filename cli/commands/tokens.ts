import type { Command } from "commander";
import { ApiRole, problemsOf } from "../../contracts/index.js";
import type { AsyncTokenStore } from "../../tasks/auth/store-port.js";
import { TokenError } from "../../tasks/auth/tokens.js";
import { type DatabaseFlags, withDatabaseOptions, withTokenStore } from "../runtime/database.js";

interface GlobalFlags extends DatabaseFlags {
  config?: string;
  dataDir?: string;
}

/** Run an action on the accounts the flags name (the shared database or tokens.db); problems exit 1. */
function withTokens(
  flags: GlobalFlags,
  action: (tokens: AsyncTokenStore) => Promise<void>,
): Promise<void> {
  return withTokenStore("tokens", flags, (error) => error instanceof TokenError, action);
}

/** `citywatch tokens …`: API tokens of the task API (stored hashed in tokens.db in the data directory). */
export function tokensCommand(program: Command): void {
  const tokens = withDatabaseOptions(
    program
      .command("tokens")
      .description(
        `manage API tokens with roles (${ApiRole.options.join(", ")}): every role reads readings and tasks; roles differ in the tasks they act on`,
      )
      .option("-c, --config <file>", "configuration file (YAML)")
      .option("--data-dir <dir>", "data directory holding tokens.db"),
  );
  const globals = (): GlobalFlags => tokens.opts<GlobalFlags>();

  tokens
    .command("add")
    .description("create a token and print it (shown once; only its hash is kept)")
    .requiredOption("--role <role>", ApiRole.options.join(" | "))
    .requiredOption("--name <name>", "who or what uses the token; the audit trail names it")
    .option(
      "--user <id>",
      "the user the token acts for (their scope; the role must be one of theirs; disabled with them)",
    )
    .option("--json", "print the token and its record as JSON")
    .action(async (flags: { role: string; name: string; user?: string; json?: boolean }) => {
      const role = ApiRole.safeParse(flags.role);
      if (!role.success) {
        process.stderr.write(
          `citywatch tokens: --role: ${problemsOf(role.error)[0]?.message ?? "invalid"}\n`,
        );
        process.exitCode = 1;
        return;
      }
      await withTokens(globals(), async (store) => {
        const { record, token } = await store.add(flags.name, role.data, flags.user);
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify({ ...record, token }, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          `Token for ${record.name} (role ${record.role}, id ${record.id}); shown ONCE, store it now:\n  ${token}\n` +
            `Use it as: Authorization: Bearer ${token}\n`,
        );
      });
    });

  tokens
    .command("list")
    .description("list tokens (never the secrets)")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      await withTokens(globals(), async (store) => {
        const list = await store.list();
        if (flags.json === true) {
          process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          return;
        }
        for (const t of list) {
          process.stdout.write(
            `${t.id.padEnd(14)} ${t.name.padEnd(24)} ${t.role.padEnd(12)} created ${t.createdAt}${t.userId === undefined ? "" : `  user ${t.userId}`}${t.revokedAt === undefined ? "" : `  revoked ${t.revokedAt}`}\n`,
          );
        }
        process.stdout.write(`${list.length} token${list.length === 1 ? "" : "s"}\n`);
      });
    });

  tokens
    .command("revoke <idOrName>")
    .description(
      "revoke the active token with this id or name (at once: its next request is refused and its open live streams are closed)",
    )
    .action(async (idOrName: string) => {
      await withTokens(globals(), async (store) => {
        const record = await store.revoke(idOrName);
        process.stdout.write(`${record.name} (${record.id}) revoked\n`);
      });
    });
}
