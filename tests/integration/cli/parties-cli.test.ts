import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { Party } from "../../../contracts/index.js";
import { RegistryStore } from "../../../registry/store.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";

/*
 * `citywatch parties add | list | show | import` as an operator runs them (through tsx, a real
 * registry file in a temp data directory): a registry YAML's top-level parties: list imported,
 * a party without a credit code keyed and warned about, every problem with the flags named, a
 * duplicate refused, and the site's party resolved from the party record.
 */

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const ACME = "91310000MA1FL0AB1X";
const BETA = "91510100MA6CW7XK3P";

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("citywatch parties", () => {
  let dir: string;
  let g: string[];
  beforeAll(async () => {
    dir = await makeTempDir("cw-parties-cli-");
    g = ["--data-dir", join(dir, "data")];
    const site = cli([
      "sites",
      ...g,
      "add",
      "--id",
      "cs-1",
      "--type",
      "construction_site",
      "--name",
      "East Tower",
      "--party",
      "Inline Name Co.",
      "--credit-code",
      BETA,
      "--phase",
      "structure",
      "--district",
      "jinjiang",
      "--grid-cell",
      "jj-01",
      "--lat",
      "30.6",
      "--lon",
      "104.1",
    ]);
    expect(site.stderr).toBe("");
    expect(site.status).toBe(0);
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("imports the parties: list of a registry file, with warnings for a party without a code and a site named inline otherwise", () => {
    const file = join(dir, "registry.yaml");
    writeFileSync(
      file,
      `# a registry file: its sites and devices are for citywatch devices import
sites: []
parties:
  - creditCode: ${ACME}
    name: "Acme, \\"Build\\" Co."
    legalRepresentative: Zhang San
    address: 1 Riverside Road, Jinjiang
    contacts:
      - { name: Li Si, phone: "13800000000", role: site manager }
    sites: [cs-1]
  - name: Noodle Stall
    contacts:
      - { name: Wang Wu, phone: "13900000000" }
`,
    );
    const imported = cli(["parties", ...g, "import", file]);
    expect(imported.status).toBe(0);
    expect(imported.stdout).toContain("Imported 2 parties");
    expect(imported.stdout).toContain("2 new, 0 replaced");
    expect(imported.stderr).toContain(
      'warning: party "Noodle Stall" has no unified social credit code',
    );
    expect(imported.stderr).toContain(`site cs-1 names credit code ${BETA} inline`);
    // Again: the same parties are replaced, not duplicated.
    const again = cli(["parties", ...g, "import", file]);
    expect(again.stdout).toContain("0 new, 2 replaced");

    const list = cli(["parties", ...g, "list", "--json"]);
    expect(list.status).toBe(0);
    const parties = z.array(Party).parse(JSON.parse(list.stdout));
    expect(parties.map((p) => p.name)).toEqual(['Acme, "Build" Co.', "Noodle Stall"]);
    const stall = parties[1];
    expect(stall?.key).toMatch(/^nocode-[0-9a-f]{16}$/);
    const table = cli(["parties", ...g, "list"]);
    expect(table.stdout).toContain(`${ACME}           1  Acme, "Build" Co.`);
    expect(table.stdout).toContain("2 parties");

    const show = cli(["parties", ...g, "show", ACME]);
    expect(show.status).toBe(0);
    expect(show.stdout).toContain("legal representative: Zhang San");
    expect(show.stdout).toContain("contact:              Li Si, 13800000000 (site manager)");
    expect(show.stdout).toContain("sites:                cs-1");

    // The site's party is the record (it lists the site), ahead of the party written inline.
    const registry = new RegistryStore(join(dir, "data", "registry.db"));
    try {
      const site = registry.resolvedSite("cs-1");
      expect(
        site !== undefined && "regulatedParty" in site ? site.regulatedParty : undefined,
      ).toEqual({
        name: 'Acme, "Build" Co.',
        creditCode: ACME,
        contact: { name: "Li Si", phone: "13800000000" },
      });
    } finally {
      registry.close();
    }
  });

  it("adds a party from flags, refuses a duplicate without --replace and names every problem", () => {
    const add = cli([
      "parties",
      ...g,
      "add",
      "--name",
      "Beta Ltd.",
      "--credit-code",
      BETA,
      "--legal-rep",
      "Chen Liu",
      "--contact",
      "Zhao Qi,028-12345678,environmental officer",
      "--json",
    ]);
    expect(add.stderr).toBe("");
    expect(add.status).toBe(0);
    const added = z
      .object({ party: Party, sites: z.array(z.string()) })
      .parse(JSON.parse(add.stdout));
    expect(added.party).toMatchObject({
      key: BETA,
      legalRepresentative: "Chen Liu",
      contacts: [{ name: "Zhao Qi", phone: "028-12345678", role: "environmental officer" }],
    });
    // cs-1 names Beta inline, but Acme's record lists it: it is not Beta's.
    expect(added.sites).toEqual([]);

    const duplicate = cli(["parties", ...g, "add", "--name", "Beta again", "--credit-code", BETA]);
    expect(duplicate.status).not.toBe(0);
    expect(duplicate.stderr).toContain(`party ${BETA} is already registered`);
    const replaced = cli([
      "parties",
      ...g,
      "add",
      "--name",
      "Beta again",
      "--credit-code",
      BETA,
      "--replace",
    ]);
    expect(replaced.status).toBe(0);
    expect(replaced.stdout).toBe(`Registered party ${BETA}: Beta again\n`);

    const taken = cli([
      "parties",
      ...g,
      "add",
      "--name",
      "Thief",
      "--credit-code",
      BETA,
      "--site",
      "cs-1",
      "--replace",
    ]);
    expect(taken.status).not.toBe(0);
    expect(taken.stderr).toContain(`site cs-1 is already a site of party ${ACME}`);

    const bad = cli([
      "parties",
      ...g,
      "add",
      "--name",
      " padded",
      "--credit-code",
      "12345",
      "--contact",
      "no phone",
    ]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("3 problems");
    expect(bad.stderr).toContain("creditCode (--credit-code)");
    expect(bad.stderr).toContain("name (--name)");
    expect(bad.stderr).toContain('"no phone" is not name,phone[,role]');

    const missing = cli(["parties", ...g, "show", "91310000MA1FL0AB2Y"]);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain("no party 91310000MA1FL0AB2Y");
  });

  it("refuses a registry file whose parties are invalid, naming each problem, and writes none of them", () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(
      file,
      `parties:
  - { creditCode: ${ACME}, name: One }
  - { creditCode: ${ACME}, name: Two }
  - { name: Three, contacts: [{ name: X }] }
`,
    );
    const r = cli(["parties", ...g, "import", file]);
    expect(r.status).not.toBe(0);
    // Every party's own problems first (the duplicate check needs valid parties).
    expect(r.stderr).toContain("parties.2.contacts.0.phone");
    writeFileSync(
      file,
      `parties:
  - { creditCode: ${ACME}, name: One }
  - { creditCode: ${ACME}, name: Two }
`,
    );
    const dup = cli(["parties", ...g, "import", file]);
    expect(dup.status).not.toBe(0);
    expect(dup.stderr).toContain(`parties.1.creditCode: duplicate credit code ${ACME}`);
    const unreadable = join(dir, "broken.yaml");
    writeFileSync(unreadable, "parties: [ {");
    expect(cli(["parties", ...g, "import", unreadable]).status).not.toBe(0);
    const names = z
      .array(Party)
      .parse(JSON.parse(cli(["parties", ...g, "list", "--json"]).stdout))
      .map((p) => p.name);
    expect(names).not.toContain("One");
    expect(names).not.toContain("Three");
  });
});
