import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { ZodError } from "zod";
import { PartiesFile, RegistryFile } from "../../../contracts/index.js";
import { RegistryError, RegistryStore } from "../../../registry/store.js";

/*
 * The regulated-party registry (issue #18 item 3): parties keyed by credit code, a stable
 * generated key and a warning without one, their sites, and which party a site resolves to (the
 * party record ahead of the party written inline in the site).
 */

const dir = mkdtempSync(join(tmpdir(), "cw-registry-parties-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ACME = "91310000MA1FL0AB1X";
const BETA = "91510100MA6CW7XK3P";
const AREA = { district: "jinjiang", gridCell: "jj-01" };
const site = (id: string, party: Record<string, unknown>) => ({
  id,
  type: "construction_site",
  name: `Site ${id}`,
  area: AREA,
  location: { lat: 30.6, lon: 104.1 },
  phase: "structure",
  regulatedParty: party,
});

let n = 0;
let registry: RegistryStore;
beforeEach(() => {
  registry?.close();
  registry = new RegistryStore(join(dir, `registry-${++n}.db`));
  registry.putSite(site("cs-1", { name: "Acme (inline)", creditCode: ACME }));
  registry.putSite(site("cs-2", { name: "Beta inline name" }));
  registry.putSite(site("cs-3", { name: "Other", creditCode: BETA }));
});
afterAll(() => registry.close());

describe("parties", () => {
  it("registers a party by credit code, reads it back after a reopen, lists and refuses a duplicate", () => {
    const { party, warnings, created } = registry.putParty(
      {
        creditCode: ACME,
        name: "Acme Build Co.",
        legalRepresentative: "Zhang San",
        contacts: [{ name: "Li Si", phone: "13800000000", role: "site manager" }],
        address: "1 Riverside Road",
        sites: [],
      },
      { now: Date.parse("2026-12-01T00:00:00Z") },
    );
    expect(created).toBe(true);
    expect(warnings).toEqual([]);
    expect(party.key).toBe(ACME);
    const file = registry.file;
    registry.close();
    registry = new RegistryStore(file);
    expect(registry.getParty(ACME)).toEqual(party);
    expect(registry.getParty(ACME)?.updatedAt).toBe("2026-12-01T00:00:00.000Z");
    expect(registry.listParties().map((p) => p.key)).toEqual([ACME]);
    expect(() => registry.putParty({ creditCode: ACME, name: "Acme again" })).toThrow(
      RegistryError,
    );
    const replaced = registry.putParty(
      { creditCode: ACME, name: "Acme renamed" },
      { replace: true },
    );
    expect(replaced.created).toBe(false);
    expect(registry.getParty(ACME)?.name).toBe("Acme renamed");
  });

  it("gives a party without a code a stable generated key and a warning", () => {
    const a = registry.putParty({ name: "Street Food Stall" });
    expect(a.party.key).toMatch(/^nocode-[0-9a-f]{16}$/);
    expect(a.warnings.join("\n")).toContain("no unified social credit code");
    const b = registry.putParty(
      { name: "Street Food Stall", address: "2 Lane" },
      { replace: true },
    );
    expect(b.party.key).toBe(a.party.key);
    expect(registry.partyKey({ name: "Another Stall" })).not.toBe(a.party.key);
    expect(registry.listParties()).toHaveLength(1);
  });

  it("refuses bad input with every problem named", () => {
    try {
      registry.putParty({ creditCode: "123", name: " padded ", contacts: [{ name: "x" }] });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ZodError);
      const paths = (error as ZodError).issues.map((i) => i.path.join("."));
      expect(paths).toEqual(expect.arrayContaining(["creditCode", "name", "contacts.0.phone"]));
    }
    expect(() => registry.putParty({ name: "A", extra: 1 })).toThrow(ZodError);
  });

  it("resolves a site's party: the record that lists it, then the record of its inline code, then inline", () => {
    // Inline only: no record yet.
    expect(registry.resolvedSite("cs-1")).toEqual(registry.getSite("cs-1"));
    // A record keyed by the inline code wins over the inline name.
    registry.putParty({
      creditCode: ACME,
      name: "Acme Build Co.",
      contacts: [{ name: "Li Si", phone: "13800000000" }],
    });
    const cs1 = registry.resolvedSite("cs-1");
    expect(cs1 !== undefined && "regulatedParty" in cs1 ? cs1.regulatedParty : undefined).toEqual({
      name: "Acme Build Co.",
      creditCode: ACME,
      contact: { name: "Li Si", phone: "13800000000" },
    });
    // A site without a code referenced by a party's record takes the record's code and name.
    const beta = registry.putParty({ creditCode: BETA, name: "Beta Ltd.", sites: ["cs-2"] });
    expect(beta.warnings).toEqual([]);
    const cs2 = registry.resolvedSite("cs-2");
    expect(cs2 !== undefined && "regulatedParty" in cs2 ? cs2.regulatedParty : undefined).toEqual({
      name: "Beta Ltd.",
      creditCode: BETA,
    });
    // The resolved view (what the task service would read) carries the record's party.
    const viewed = registry.resolvedView().site("cs-2");
    expect(
      viewed !== undefined && "regulatedParty" in viewed ? viewed.regulatedParty.name : "",
    ).toBe("Beta Ltd.");
    expect(
      registry
        .resolvedView()
        .sites()
        .map((s) => ("regulatedParty" in s ? s.regulatedParty.name : s.id)),
    ).toEqual(["Acme Build Co.", "Beta Ltd.", "Beta Ltd."]); // cs-3 names Beta's code inline
    expect(registry.view().site("cs-2")).toEqual(registry.getSite("cs-2"));
    // The party's sites: listed ones and those with its code inline.
    expect(registry.sitesOfParty(BETA)).toEqual(["cs-2", "cs-3"]);
    // A record listing a site whose inline code is another party's wins, with a warning.
    const moved = registry.putParty(
      { creditCode: BETA, name: "Beta Ltd.", sites: ["cs-2", "cs-1"] },
      { replace: true },
    );
    expect(moved.warnings.join("\n")).toContain(`cs-1 names credit code ${ACME} inline`);
    expect(registry.partyOfSite("cs-1")?.key).toBe(BETA);
    expect(registry.sitesOfParty(ACME)).toEqual([]);
    // Another party may not list a site a record already lists.
    expect(() =>
      registry.putParty({ creditCode: ACME, name: "Acme", sites: ["cs-1"] }, { replace: true }),
    ).toThrow(/already a site of party/);
  });

  it("warns of a listed site that is not registered or has no party", () => {
    registry.putSite({
      id: "amb-1",
      type: "ambient",
      name: "Air station",
      area: AREA,
      location: { lat: 30.6, lon: 104.1 },
    });
    const { warnings } = registry.putParty({
      creditCode: ACME,
      name: "Acme",
      sites: ["nowhere", "amb-1"],
    });
    expect(warnings.join("\n")).toContain("site nowhere of party");
    expect(warnings.join("\n")).toContain("amb-1");
  });

  it("imports a parties list in one transaction: all or nothing", () => {
    const file = PartiesFile.parse({
      sites: [{ ignored: true }],
      parties: [{ creditCode: ACME, name: "Acme", sites: ["cs-1"] }, { name: "No Code Stall" }],
    });
    const result = registry.importParties(file.parties);
    expect(result.created.map((p) => p.name)).toEqual(["Acme", "No Code Stall"]);
    expect(result.warnings).toHaveLength(1);
    const again = registry.importParties(file.parties);
    expect(again.replaced).toHaveLength(2);
    // The second party lists a site the first holds: nothing of the import is written.
    expect(() =>
      registry.importParties([
        { creditCode: BETA, name: "Beta" },
        { name: "Thief", sites: ["cs-1"] },
      ]),
    ).toThrow(RegistryError);
    expect(registry.getParty(BETA)).toBeUndefined();
    expect(
      PartiesFile.safeParse({
        parties: [
          { creditCode: ACME, name: "a" },
          { creditCode: ACME, name: "b" },
        ],
      }).success,
    ).toBe(false);
  });
});

describe("parties in a registry file", () => {
  it("imports the file's parties with its sites, in one transaction", () => {
    const file = RegistryFile.parse({
      sites: [site("cs-9", { name: "Gamma inline" })],
      parties: [{ creditCode: ACME, name: "Acme Build Co.", sites: ["cs-9"] }],
    });
    registry.importFile(file);
    expect(registry.getParty(ACME)?.name).toBe("Acme Build Co.");
    expect(registry.partyOfSite("cs-9")?.key).toBe(ACME);
    // A party claiming another party's site fails the whole import: its sites are not stored.
    const broken = RegistryFile.parse({
      sites: [site("cs-10", { name: "Delta" })],
      parties: [{ creditCode: BETA, name: "Beta", sites: ["cs-10", "cs-9"] }],
    });
    expect(() => registry.importFile(broken)).toThrow(/already a site of party/);
    expect(registry.getSite("cs-10")).toBeUndefined();
  });
});
