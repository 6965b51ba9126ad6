import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AdministrativeArea, Device, RegistryFile } from "../../../contracts/index.js";
import { toLine } from "../../../ingest/store/line-protocol.js";
import { RegistryStore } from "../../../registry/store.js";

/*
 * Issue #16 item 6: registry values the store cannot hold. A district `Jin\` or a grid cell
 * `x\ y` was accepted at registration, and every reading of the device became a `store_rejected`
 * dead letter; a newline in a grid cell broke `devices list`.
 */

const area = { district: "Jinjiang", gridCell: "JJ-01" };
const location = { lat: 30.65, lon: 104.08 };
const device = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  kind: "noise" as const,
  model: "AWA",
  serial: id,
  location,
  area,
  siteId: "s1",
  ...extra,
});

const BAD_AREAS: ReadonlyArray<[string, Record<string, string>, RegExp]> = [
  ["a trailing backslash", { district: "Jin\\", gridCell: "JJ-01" }, /backslash/],
  ["a backslash before a space", { district: "Jinjiang", gridCell: "x\\ y" }, /backslash/],
  ["a backslash before a comma", { district: "a\\,b", gridCell: "JJ-01" }, /backslash/],
  ["a newline", { district: "Jinjiang", gridCell: "JJ\n01" }, /control characters/],
  ["a NUL", { district: "Jin\u0000jiang", gridCell: "JJ-01" }, /control characters/],
  ["a lone surrogate", { district: "Jin\ud800", gridCell: "JJ-01" }, /Unicode/],
  ["a trailing space", { district: "Jinjiang ", gridCell: "JJ-01" }, /whitespace/],
  ["65 characters", { district: "x".repeat(65), gridCell: "JJ-01" }, /65|64/],
];

describe("registry values every store can hold (issue #16 item 6)", () => {
  let dir: string;
  let file: string;
  let store: RegistryStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "cw-registry-text-"));
    file = join(dir, "registry.db");
    store = new RegistryStore(file);
    store.putSite({ id: "s1", type: "ambient", name: "Square", area, location });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(BAD_AREAS)("refuses %s in an area at registration, naming the field", (_, bad, why) => {
    const parsed = Device.safeParse(device("n1", { area: bad }));
    expect(parsed.success).toBe(false);
    const issue = parsed.error?.issues[0];
    expect(issue?.path[0]).toBe("area");
    expect(issue?.message).toMatch(why);
    expect(() => store.addDevice(device("n1", { area: bad }))).toThrow(why);
    expect(store.getDevice("n1")).toBeUndefined();
  });

  it("refuses a control character in free text (model, site name) and in an imported file", () => {
    expect(() => store.addDevice(device("n1", { model: "AWA\n6228" }))).toThrow(/control/);
    const file = RegistryFile.safeParse({
      sites: [
        {
          id: "s2",
          type: "ambient",
          name: "Sq\tuare",
          area: { ...area, district: "Jin\\" },
          location,
        },
      ],
    });
    expect(file.success).toBe(false);
    const paths = file.error?.issues.map((i) => i.path.join(".")) ?? [];
    expect(paths).toEqual(expect.arrayContaining(["sites.0.name", "sites.0.area.district"]));
  });

  it("accepts only what line protocol can carry: every accepted area writes a point", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "grapheme-composite", minLength: 1, maxLength: 20 }),
        fc.string({ unit: fc.constantFrom("a", "\\", " ", ",", "=", "\n", "é"), maxLength: 8 }),
        (a, b) => {
          for (const value of [a, b, `${a}${b}`]) {
            const parsed = AdministrativeArea.safeParse({ district: value, gridCell: value });
            if (!parsed.success) continue;
            const line = toLine({
              measurement: "noise",
              tags: {
                device: "n1",
                site: "s1",
                district: parsed.data.district,
                grid_cell: parsed.data.gridCell,
                quality: "normal",
              },
              fields: { LAeq: 50 },
              seq: 1,
              timeMs: 1_700_000_000_000,
            });
            expect(line).not.toContain("\n");
          }
        },
      ),
      { numRuns: 2_000, seed: 16 },
    );
  });

  it("reads a row written before the rules without crashing, and reports it", () => {
    store.addDevice(device("n1"));
    store.addDevice(device("n2"));
    store.close();
    // A row as an older citywatch wrote it: a newline in the grid cell, a trailing backslash.
    const raw = new Database(file);
    const doc = JSON.parse(
      (raw.prepare("SELECT doc FROM device WHERE id = 'n2'").get() as { doc: string }).doc,
    ) as Record<string, unknown>;
    raw
      .prepare("UPDATE device SET doc = ? WHERE id = 'n2'")
      .run(JSON.stringify({ ...doc, area: { district: "Jin\\", gridCell: "x\ny" } }));
    raw.close();
    store = new RegistryStore(file);
    expect(store.listDevices().map((d) => d.id)).toEqual(["n1", "n2"]);
    expect(store.getDevice("n2")?.area.gridCell).toBe("x\ny");
    const invalid = store.invalidRecords();
    expect(invalid).toHaveLength(1);
    expect(invalid[0]).toMatchObject({ type: "device", id: "n2" });
    expect(invalid[0]?.problems.join("; ")).toMatch(/area\.district: .*backslash/);
    expect(invalid[0]?.problems.join("; ")).toMatch(/area\.gridCell: .*control/);
  });

  it("still refuses a damaged row (not a text rule) as a damaged file", () => {
    store.addDevice(device("n1"));
    store.close();
    const raw = new Database(file);
    raw.prepare("UPDATE device SET doc = ? WHERE id = 'n1'").run('{"id":"n1","kind":"toaster"}');
    raw.close();
    store = new RegistryStore(file);
    expect(() => store.getDevice("n1")).toThrow();
  });
});
