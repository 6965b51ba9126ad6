import { join } from "node:path";
import type { Command } from "commander";
import { ApiRole, problemsOf } from "../../contracts/index.js";
import { TokenError, TokenStore } from "../../tasks/auth/tokens.js";
import { loadCitywatchConfig } from "../runtime/config.js";

interface GlobalFlags {
  config?: string;
  dataDir?: string;
}

/** Run an action on the token store of the configured data directory; token problems exit 1 with their message. */
function withTokens(flags: GlobalFlags, action: (tokens: TokenStore) => void): void {
  const config = loadCitywatchConfig(flags);
  const tokens = new TokenStore(join(config.dataDir, "tokens.db"));
  try {
    action(tokens);
  } catch (error) {
    if (!(error instanceof TokenError)) throw error;
    process.stderr.write(`citywatch tokens: ${error.message}\n`);
    process.exitCode = 1;
  } finally {
    tokens.close();
  }
}

/** `citywatch tokens …`: API tokens of the task API (stored hashed in tokens.db in the data directory). */
export function tokensCommand(program: Command): void {
  const tokens = program
    .command("tokens")
    .description(
      `manage API tokens with roles (${ApiRole.options.join(", ")}): every role reads readings and tasks; roles differ in the tasks they act on`,
    )
    .option("-c, --config <file>", "configuration file (YAML)")
    .option("--data-dir <dir>", "data directory holding tokens.db");
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
    .action((flags: { role: string; name: string; user?: string; json?: boolean }) => {
      const role = ApiRole.safeParse(flags.role);
      if (!role.success) {
        process.stderr.write(
          `citywatch tokens: --role: ${problemsOf(role.error)[0]?.message ?? "invalid"}\n`,
        );
        process.exitCode = 1;
        return;
      }
      withTokens(globals(), (store) => {
        const { record, token } = store.add(flags.name, role.data, flags.user);
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
    .action((flags: { json?: boolean }) => {
      withTokens(globals(), (store) => {
        const list = store.list();
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
    .action((idOrName: string) => {
      withTokens(globals(), (store) => {
        const record = store.revoke(idOrName);
        process.stdout.write(`${record.name} (${record.id}) revoked\n`);
      });
    });
}
