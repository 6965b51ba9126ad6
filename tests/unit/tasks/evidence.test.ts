import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EvidencePackageV2 } from "../../../contracts/model/evidence.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { canonicalJson } from "../../../tasks/canonical-json.js";
import { escapeHtml, evidenceHtml } from "../../../tasks/evidence-html.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { fakeClock, noiseEvidence, noiseNotice, raise, startSystem, T0 } from "./fixtures.js";

describe("canonicalJson (RFC 8785)", () => {
  it("sorts members by UTF-16 code units at every depth, no whitespace, ES number form", () => {
    expect(
      canonicalJson({
        b: 1,
        a: [{ z: true, y: null }],
        é: "x",
        B: 1e21,
        c: 0.1 + 0.2,
        u: undefined,
      }),
    ).toBe('{"B":1e+21,"a":[{"y":null,"z":true}],"b":1,"c":0.30000000000000004,"é":"x"}');
    expect(canonicalJson({ "\u{1F600}": 1, "\uFFFD": 2 })).toBe('{"\u{1F600}":1,"\uFFFD":2}'); // surrogates sort before U+FFFD
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(/no JSON form/);
  });
});

describe("evidence package", () => {
  let dir: string;
  let system: TaskSystem;
  const clock = fakeClock();

  beforeEach(async () => {
    dir = await makeTempDir("cw-evidence-");
    clock.set(T0);
    system = startSystem(dir, { now: clock.now });
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
  });
  afterEach(async () => {
    await system.stop();
    await removeTempDir(dir);
  });

  it("holds the raw readings (flags marked), method and values, clause and rule version, device identity and calibration, place, zone and party, in local time", () => {
    const pkg = EvidencePackageV2.parse(system.store.evidence("enf-000001"));
    expect(pkg).toMatchObject({
      format: "citywatch-evidence/2",
      taskId: "enf-000001",
      sequence: 1,
      previous: null,
      timeZone: "Asia/Shanghai",
      rule: {
        id: "noise.construction.laeq",
        version: 1,
        clause: { standard: "GB 12523-2011", section: "Table 1" },
        legalBasis: [{ article: "Art. 41", confidence: "verified" }],
      },
      decision: {
        atLocal: "2026-11-26T22:40:00+08:00",
        startedAtLocal: "2026-11-26T22:20:00+08:00",
      },
      computation: {
        method: "energy mean of LAeq over the rolling 20 min window",
        value: 62.4,
        reported: "62.4",
        unit: "dB(A)",
        limit: 55,
        windowEndLocal: "2026-11-26T22:40:00+08:00",
      },
      subject: { type: "site", id: "cs-1" },
      party: { name: "Acme <Build> Co.", creditCode: "91310000MA1FL0AB1X" },
      site: { id: "cs-1", zoneClass: "2", area: { district: "pudong", gridCell: "pd-017" } },
      devices: [
        {
          id: "n-1",
          serial: "SN-n-1",
          calibratedOn: "2026-03-01",
          calibrationDueOn: "2027-03-01",
          calibration: "valid",
        },
      ],
    });
    expect(pkg.readings).toHaveLength(20);
    expect(pkg.readings.filter((r) => !r.usable).map((r) => r.quality)).toEqual(["calibration"]);
    expect(pkg.readings[0]?.tsLocal).toBe("2026-11-26T22:20:00+08:00");
    // The fixture's stated value is made up: the package recomputes its own from the usable
    // readings of its window (start, end] (the fixture's first reading lies on the start).
    const start = Date.parse(pkg.computation.windowStart);
    const usable = pkg.readings
      .filter((r) => r.usable && Date.parse(r.ts) > start)
      .map((r) => r.values["LAeq"] as number);
    expect(usable).toHaveLength(18);
    const energy = 10 * Math.log10(usable.reduce((a, l) => a + 10 ** (l / 10), 0) / usable.length);
    expect(pkg.computation.recomputed).toBe(energy);
    // The fixture's devices have no approval numbers on record: the package says so.
    expect(pkg.warnings.map((w) => w.code)).toEqual([
      "type_approval_missing",
      "metrology_certificate_missing",
    ]);
    expect(pkg.audit.map((e) => e.action)).toContain("filed");
  });

  it("files the task even when the evidence cannot be sealed, and says why", async () => {
    const evidence = { ...noiseEvidence(T0), value: Number.NaN };
    await system.service.applyAlarm(noiseNotice("cs-3", raise(T0), evidence));
    const task = system.store.listTasks({ limit: 1, siteId: "cs-3" })[0]!;
    expect(task.evidenceCount).toBe(0);
    const entry = (await system.service.audit(task.id)).find(
      (e) => e.action === "evidence_attached",
    );
    expect(entry?.detail).toBe("evidence could not be sealed: NaN has no JSON form");
  });

  it("prints as HTML with every value escaped", () => {
    const html = evidenceHtml(system.store.evidence("enf-000001")!);
    expect(html).toContain("Riverside &lt;Tower&gt; &amp; &quot;Plaza&quot;");
    expect(html).toContain("Acme &lt;Build&gt; Co.");
    expect(html).not.toContain("<Tower>");
    expect(html).not.toMatch(/<script/i);
    expect(escapeHtml(`<img src=x onerror='alert(1)'>&`)).toBe(
      "&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;",
    );
  });
});
