import type { EvidencePackage } from "../contracts/model/tasks.js";

/*
 * The evidence package as a printable HTML page: every value from the package is escaped
 * (readings, names and notes come from devices and operators, not from us), no scripts, no
 * external resources, so the page prints the same anywhere.
 */

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text safe in HTML element content and in quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const e = (value: string | number | boolean | null | undefined): string =>
  escapeHtml(value === null || value === undefined ? "—" : String(value));

const row = (label: string, value: string | number | boolean | null | undefined) =>
  `<tr><th>${escapeHtml(label)}</th><td>${e(value)}</td></tr>`;

export function evidenceHtml(pkg: EvidencePackage): string {
  const site = pkg.site;
  const party = site?.regulatedParty;
  const quantities = [...new Set(pkg.readings.flatMap((r) => Object.keys(r.values)))].sort();
  const readings = pkg.readings
    .map(
      (r) =>
        `<tr${r.usable ? "" : ' class="unusable"'}><td>${e(r.ts)}</td><td>${e(r.deviceId)}</td><td>${e(r.quality)}${r.usable ? "" : " (not used)"}</td>${quantities
          .map((q) => `<td>${e(r.values[q])}</td>`)
          .join("")}</tr>`,
    )
    .join("\n");
  const devices = pkg.devices
    .map(
      (d) =>
        `<tr><td>${e(d.id)}</td><td>${e(d.model)}</td><td>${e(d.serial)}</td><td>${e(d.calibratedOn)}</td><td>${e(d.calibrationDueOn)}</td><td>${e(`${d.location.lat}, ${d.location.lon}`)}</td><td>${e(d.zoneClass)}</td></tr>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Evidence ${e(pkg.taskId)} #${e(pkg.sequence)}</title>
<style>
body { font: 11pt/1.4 serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; vertical-align: top; }
tr.unusable td { color: #777; font-style: italic; }
code { font-size: 9pt; word-break: break-all; }
</style>
</head>
<body>
<h1>Evidence package — task ${e(pkg.taskId)}</h1>
<table>
${row("Package", `${pkg.format} #${pkg.sequence}, created ${pkg.createdAt}`)}
${row("Task kind", pkg.kind)}
${row("Rule", `${pkg.rule.id} version ${pkg.rule.version}: ${pkg.rule.title}`)}
${row("Clause", `${pkg.rule.clause.standard} ${pkg.rule.clause.section}`)}
${row("Confidence", pkg.rule.confidence)}
${row("Unverified", pkg.rule.unverified === undefined ? null : pkg.rule.unverified.map((u) => `${u.path}: ${u.note}`).join("; ") || "none")}
${row("Note", pkg.rule.note)}
${row("Statement", pkg.rule.statement)}
</table>
<h2>Finding</h2>
<table>
${row("Decision", `${pkg.decision.type} (alarm ${pkg.decision.alarmSeq})`)}
${row("Level", pkg.decision.level)}
${row("Condition held since", pkg.decision.startedAt)}
${row("Decided at", pkg.decision.at)}
${row("Detail", pkg.decision.detail)}
${row("Replayed (historical) data", pkg.decision.replayed ? "yes" : "no")}
${row("Method", pkg.computation.method)}
${row("Window", `${pkg.computation.windowStart} – ${pkg.computation.windowEnd}`)}
${row("Computed value", pkg.computation.value)}
${row("Limit", pkg.computation.limit)}
</table>
<h2>Place</h2>
<table>
${row("Subject", `${pkg.subject.type} ${pkg.subject.id}`)}
${row("Site", site === null ? null : `${site.name} (${site.id}, ${site.type})`)}
${row("District / street / grid cell", site === null ? null : `${site.area.district} / ${site.area.street ?? "—"} / ${site.area.gridCell}`)}
${row("Location (WGS-84)", site === null ? null : `${site.location.lat}, ${site.location.lon}`)}
${row("Zone class", site?.zoneClass)}
${row("Regulated party", party === null || party === undefined ? null : `${party.name}${party.creditCode === undefined ? "" : ` (${party.creditCode})`}`)}
</table>
<h2>Devices</h2>
<table>
<tr><th>Device</th><th>Model</th><th>Serial</th><th>Calibrated on</th><th>Calibration due</th><th>Location</th><th>Zone class</th></tr>
${devices}
</table>
<h2>Raw readings (${pkg.readings.length})</h2>
<table>
<tr><th>Time</th><th>Device</th><th>Quality</th>${quantities.map((q) => `<th>${e(q)}</th>`).join("")}</tr>
${readings}
</table>
<h2>Integrity</h2>
<p>SHA-256 over the ${e(pkg.hash.canonicalization)} canonical JSON of the package without its <code>hash</code> member:</p>
<p><code>${e(pkg.hash.value)}</code></p>
</body>
</html>
`;
}
