import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenStore } from "../../../tasks/auth/tokens.js";
import { startCli } from "../../support/cli-process.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";

/** Run `citywatch tokens …` as the README does and wait for it to exit. */
async function tokens(
  dataDir: string,
  ...args: string[]
): Promise<{ code: number | null; output: string }> {
  const cli = startCli(["tokens", "--data-dir", dataDir, ...args]);
  const code = await new Promise<number | null>((resolve) => {
    if (cli.child.exitCode !== null) resolve(cli.child.exitCode);
    else cli.child.once("exit", (c) => resolve(c));
  });
  return { code, output: cli.output() };
}

describe("citywatch tokens", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir("cw-tokens-cli-");
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("adds a token printed once, lists without secrets, revokes; bad roles and names are refused", async () => {
    const added = await tokens(dir, "add", "--role", "enforcement", "--name", "pudong-brigade");
    expect(added.code).toBe(0);
    const token = /cwt_[A-Za-z0-9_-]{43}/.exec(added.output)?.[0];
    expect(token).toBeDefined();
    const store = new TokenStore(join(dir, "tokens.db"));
    expect(store.authenticate(token!)).toMatchObject({
      name: "pudong-brigade",
      role: "enforcement",
    });

    const listed = await tokens(dir, "list");
    expect(listed.output).toMatch(/pudong-brigade\s+enforcement/);
    expect(listed.output).not.toContain(token!);

    const badRole = await tokens(dir, "add", "--role", "mayor", "--name", "x");
    expect(badRole.code).toBe(1);
    expect(badRole.output).toContain(
      "role must be admin, command_centre, operator, emergency, enforcement, legal_reviewer or viewer",
    );
    const duplicate = await tokens(dir, "add", "--role", "viewer", "--name", "pudong-brigade");
    expect(duplicate.code).toBe(1);
    expect(duplicate.output).toContain("an active token named pudong-brigade exists");

    expect((await tokens(dir, "revoke", "pudong-brigade")).code).toBe(0);
    expect(store.authenticate(token!)).toBeUndefined();
    expect((await tokens(dir, "revoke", "pudong-brigade")).code).toBe(1);
    store.close();
  }, 60_000);
});
