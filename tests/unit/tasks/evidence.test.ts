import { createHash } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EvidencePackage } from "../../../contracts/index.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { canonicalJson } from "../../../tasks/canonical-json.js";
import { escapeHtml, evidenceHtml } from "../../../tasks/evidence-html.js";
import { verifyEvidence } from "../../../tasks/evidence.js";
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
    system.service.handleAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
  });
  afterEach(async () => {
    await system.stop();
    await removeTempDir(dir);
  });

  it("holds the raw readings (flags marked), method and values, clause and rule version, device identity and calibration, place and zone", () => {
    const pkg = EvidencePackage.parse(system.store.evidence("enf-000001"));
    expect(pkg).toMatchObject({
      format: "citywatch-evidence/1",
      taskId: "enf-000001",
      sequence: 1,
      rule: {
        id: "noise.construction.laeq",
        version: 1,
        clause: { standard: "GB 12523-2011", section: "Table 1" },
      },
      computation: {
        method: "energy mean of LAeq over the rolling 20 min window",
        value: 62.4,
        limit: 55,
      },
      subject: { type: "site", id: "cs-1" },
      site: {
        id: "cs-1",
        zoneClass: "2",
        area: { district: "pudong", gridCell: "pd-017" },
        regulatedParty: { name: "Acme <Build> Co." },
      },
      devices: [
        { id: "n-1", serial: "SN-n-1", calibratedOn: "2026-03-01", calibrationDueOn: "2027-03-01" },
      ],
    });
    expect(pkg.readings).toHaveLength(20);
    expect(pkg.readings.filter((r) => !r.usable).map((r) => r.quality)).toEqual(["calibration"]);
    const expected = createHash("sha256")
      .update(canonicalJson({ ...pkg, hash: undefined }))
      .digest("hex");
    expect(pkg.hash.value).toBe(expected);
  });

  it("verifies, and detects any change to the package", () => {
    const pkg = system.store.evidence("enf-000001")!;
    expect(verifyEvidence(pkg).valid).toBe(true);
    const tampered = structuredClone(pkg);
    tampered.readings[5]!.values["LAeq"] = 54.9;
    expect(verifyEvidence(tampered)).toMatchObject({ valid: false, expected: pkg.hash.value });
    const { hash, ...body } = pkg;
    const reordered = JSON.parse(JSON.stringify({ hash, ...body })) as typeof pkg;
    expect(verifyEvidence(reordered).valid).toBe(true); // member order is not content
    expect(verifyEvidence({ ...pkg, rule: { ...pkg.rule, version: 2 } }).valid).toBe(false);
  });

  it("files the task even when the evidence cannot be sealed, and says why", () => {
    const evidence = { ...noiseEvidence(T0), value: Number.NaN };
    system.service.handleAlarm(noiseNotice("cs-3", raise(T0), evidence));
    const task = system.store.listTasks({ limit: 1, siteId: "cs-3" })[0]!;
    expect(task.evidenceCount).toBe(0);
    const entry = system.service.audit(task.id).find((e) => e.action === "evidence_attached");
    expect(entry?.detail).toBe("evidence could not be sealed: NaN has no JSON form");
  });

  it("prints as HTML with every value escaped", () => {
    const html = evidenceHtml(system.store.evidence("enf-000001")!);
    expect(html).toContain("Riverside &lt;Tower&gt; &amp; &quot;Plaza&quot;");
    expect(html).toContain("Acme &lt;Build&gt; Co.");
    expect(html).not.toContain("<Tower>");
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain("calibration (not used)");
    expect(escapeHtml(`<img src=x onerror='alert(1)'>&`)).toBe(
      "&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;",
    );
  });
});
