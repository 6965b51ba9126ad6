import QRCode from "qrcode";
import type {
  EvidencePackage,
  EvidencePackageV2,
  EvidenceWarning,
} from "../contracts/model/evidence.js";
import type { EvidencePackageV1 } from "../contracts/model/tasks.js";
import { QUANTITIES, type QuantitySpec } from "../contracts/model/sensors.js";
import { DEFAULT_LANGUAGE, type Language, translator, type Translator } from "./i18n/index.js";

/*
 * The printable evidence document (issue #17 items 2 and 4): one HTML page per package, A4 print
 * CSS, Chinese (default) or English from the message catalogues in tasks/i18n, in the order an
 * officer reads a case: header, warnings, party and site, rule, finding, readings, devices,
 * permits, vote, transport path, audit trail, integrity (hash, key fingerprint, QR code of the
 * verification address, short code), officers' and party's signature fields with the party's
 * right to state their case (Administrative Penalty Law 2021 Art. 41).
 *
 * Every value from the package is escaped (device names, operators' notes and the party come
 * from outside), the page has no script and loads nothing (the QR code is inline SVG), so it
 * prints the same anywhere and under `default-src 'none'`. Local times are printed in the
 * package's time zone with the offset (`2026-12-05 22:10:00 (UTC+08:00)`); values as the
 * standard reports them (`computation.reported`) with units, never a raw float.
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

const h = escapeHtml;

/** A CSS string literal for `content:` (every character but plain ASCII as a hex escape). */
function cssString(text: string): string {
  return `"${[...text]
    .map((c) => (/^[A-Za-z0-9 _.-]$/.test(c) ? c : `\\${(c.codePointAt(0) ?? 32).toString(16)} `))
    .join("")}"`;
}

export interface EvidenceDocumentOptions {
  readonly language: Language;
  /**
   * Where the deployment's public keys are served (`{publicUrl}/api/v1/evidence/keys`): printed
   * and as a QR code. Never a signed link: those expire, paper does not.
   */
  readonly verifyUrl?: string | undefined;
  /** When the document was printed (shown in the header); absent: not shown. */
  readonly generatedAt?: Date | undefined;
}

// ---------------------------------------------------------------------------------------------
// Numbers, units, times

/** Units by quantity name, from the sensor catalogue. */
const UNITS = new Map<string, string>();
/** Quantities that are on/off states (recorded as 1 and 0). */
const SWITCHES = new Set<string>();
for (const kind of Object.values(QUANTITIES) as ReadonlyArray<Record<string, QuantitySpec>>)
  for (const [name, spec] of Object.entries(kind)) {
    if (spec.type === "boolean") SWITCHES.add(name);
    else if (!UNITS.has(name)) UNITS.set(name, spec.unit);
  }

const numberFormats = new Map<number, Intl.NumberFormat>();
/** A number with at most `decimals` decimals, no grouping, no float noise (`64.2`, `55`). */
function num(value: number, decimals = 3): string {
  let format = numberFormats.get(decimals);
  if (format === undefined) {
    format = new Intl.NumberFormat("en-US", {
      useGrouping: false,
      maximumFractionDigits: decimals,
      minimumFractionDigits: 0,
    });
    numberFormats.set(decimals, format);
  }
  return format.format(value);
}

/** A number with exactly `decimals` decimals (a recomputed value beside the reported one). */
const fixed = (value: number, decimals: number): string =>
  new Intl.NumberFormat("en-US", {
    useGrouping: false,
    maximumFractionDigits: decimals,
    minimumFractionDigits: decimals,
  }).format(value);

const withUnit = (text: string, unit: string | null | undefined): string =>
  unit === null || unit === undefined || unit === "" ? text : `${text} ${unit}`;

/** Decimals of a reported value (`64.2` → 1, `55` → 0). */
const decimalsOf = (reported: string): number => /\.(\d+)$/.exec(reported)?.[1]?.length ?? 0;

interface LocalParts {
  readonly date: string;
  readonly time: string;
  /** `+08:00` */
  readonly offset: string;
}

const LOCAL_ISO = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2})?(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})$/;

const normOffset = (offset: string): string =>
  offset === "Z"
    ? "+00:00"
    : offset.includes(":")
      ? offset
      : `${offset.slice(0, 3)}:${offset.slice(3)}`;

/** An instant's local parts in `timeZone` (Intl), or undefined for what is no instant. */
function zoned(utc: string, timeZone: string): LocalParts | undefined {
  const date = new Date(utc);
  if (Number.isNaN(date.getTime())) return undefined;
  let parts: Intl.DateTimeFormatPart[];
  try {
    parts = new Intl.DateTimeFormat("en-US", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "longOffset",
    }).formatToParts(date);
  } catch {
    return timeZone === "UTC" ? undefined : zoned(utc, "UTC");
  }
  const get = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value;
  const name = get("timeZoneName") ?? "GMT";
  const offset = name === "GMT" || name === "UTC" ? "+00:00" : normOffset(name.replace(/^GMT/, ""));
  return {
    date: `${get("year")}-${get("month")}-${get("day")}`,
    time: `${get("hour")}:${get("minute")}:${get("second")}`,
    offset,
  };
}

/** Local parts of an instant: from its sealed local form when it has one, else computed. */
function localParts(
  utc: string | null | undefined,
  local: string | null | undefined,
  timeZone: string,
): LocalParts | undefined {
  const match = local === null || local === undefined ? null : LOCAL_ISO.exec(local);
  if (match !== null) {
    return {
      date: match[1] ?? "",
      time: `${match[2] ?? ""}${match[3] ?? ":00"}`,
      offset: normOffset(match[4] ?? "Z"),
    };
  }
  return utc === null || utc === undefined ? undefined : zoned(utc, timeZone);
}

const stamp = (p: LocalParts): string => `${p.date} ${p.time} (UTC${p.offset})`;

/** `2026-12-05 22:10:00 (UTC+08:00)`, or `fallback` for no instant. */
function localTime(
  utc: string | null | undefined,
  local: string | null | undefined,
  timeZone: string,
  fallback: string,
): string {
  const parts = localParts(utc, local, timeZone);
  return parts === undefined ? fallback : stamp(parts);
}

/** A window: `2026-12-05 22:10–22:30 (UTC+08:00)` on one day, both stamps otherwise. */
function localWindow(
  start: LocalParts | undefined,
  end: LocalParts | undefined,
  t: Translator,
): string {
  if (start === undefined || end === undefined) return t.t("common.notRecorded");
  if (start.date === end.date && start.offset === end.offset)
    return `${start.date} ${start.time.slice(0, 5)}–${end.time.slice(0, 5)} (UTC${start.offset})`;
  return t.t("finding.windowOf", { start: stamp(start), end: stamp(end) });
}

/** A window length in words: `20 min`, `1 h`, `30 s`. */
function duration(ms: number, t: Translator): string {
  if (ms % 3_600_000 === 0) return t.t("duration.hours", { count: ms / 3_600_000 });
  if (ms % 60_000 === 0) return t.t("duration.minutes", { count: ms / 60_000 });
  return t.t("duration.seconds", { count: num(ms / 1000, 1) });
}

/** A date as recorded (`2026-03-01`), or an instant as a local stamp. */
function dateOrInstant(value: string, timeZone: string): string {
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) return value;
  return localTime(value, undefined, timeZone, value);
}

/** Hex in groups of four (`a1b2 c3d4 …`), for reading aloud and comparing. */
const grouped = (hex: string): string => hex.replace(/(.{4})(?=.)/g, "$1 ");

/** The short code of a package: the first 12 hex of its SHA-256 in groups of four. */
export const shortCode = (hash: string): string => grouped(hash.slice(0, 12));

// ---------------------------------------------------------------------------------------------
// Words from codes

const quantityName = (q: string | null, t: Translator): string =>
  q === null ? t.t("aggregate.none") : (t.maybe(`quantity.${q}`) ?? q);

/** Decimals a column of readings is printed with: the most any of its values has (at most 3). */
function columnDecimals(values: readonly (number | undefined)[]): number {
  let most = 0;
  for (const v of values) {
    if (v === undefined) continue;
    const text = num(v, 3);
    most = Math.max(most, text.includes(".") ? text.length - text.indexOf(".") - 1 : 0);
  }
  return most;
}

function readingValue(
  q: string,
  value: number | undefined,
  decimals: number,
  t: Translator,
): string {
  if (value === undefined) return "";
  if (SWITCHES.has(q)) return t.t(value === 0 ? "switch.off" : "switch.on");
  return fixed(value, decimals);
}

const qualityWord = (flag: string, t: Translator): string => t.maybe(`quality.${flag}`) ?? flag;

function transportStep(step: string, t: Translator): string {
  const device = /^device (.+)$/.exec(step);
  if (device !== null) return t.t("transport.step.device", { id: device[1] ?? "" });
  return t.maybe(`transport.step.${step}`) ?? step;
}

// ---------------------------------------------------------------------------------------------
// Building blocks

type Cell = string | { readonly html: string };

/** Escaped text, or trusted markup built here. */
const cell = (value: Cell): string => (typeof value === "string" ? h(value) : value.html);

const row = (label: string, value: Cell, cls = ""): string =>
  `<tr${cls === "" ? "" : ` class="${cls}"`}><th scope="row">${h(label)}</th><td>${cell(value)}</td></tr>`;

const facts = (rows: readonly string[], cls = "facts"): string =>
  `<table class="${cls}"><tbody>${rows.join("")}</tbody></table>`;

const section = (id: string, title: string, body: string): string =>
  `<section id="${id}"><h2>${h(title)}</h2>${body}</section>`;

const missing = (text: string): { html: string } => ({
  html: `<span class="missing">${h(text)}</span>`,
});

const orMissing = (value: string | null | undefined, text: string): Cell =>
  value === null || value === undefined || value === "" ? missing(text) : value;

function warningBox(title: string, text: string, about: string | undefined): string {
  return `<div class="warning" role="note"><strong>${h(title)}</strong> ${h(text)}${
    about === undefined ? "" : `<br><span class="about">${h(about)}</span>`
  }</div>`;
}

/** An inline SVG QR code of `text` (qrcode's SVG renderer: paths, no script, no canvas). */
function qrSvg(text: string, label: string): string {
  let svg: string | undefined;
  // With a callback the SVG string renderer answers synchronously.
  QRCode.toString(text, { type: "svg", errorCorrectionLevel: "M", margin: 2 }, (error, out) => {
    if (error === null || error === undefined) svg = out;
  });
  if (svg === undefined) return "";
  return svg.replace("<svg ", `<svg class="qr" role="img" aria-label="${h(label)}" `);
}

const STYLE = `
@page { size: A4; margin: 16mm 14mm 18mm 14mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body {
  font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "SimSun", sans-serif;
  font-size: 10pt; line-height: 1.45; color: #111; margin: 0;
}
@media screen { body { max-width: 210mm; margin: 0 auto; padding: 10mm 12mm; } }
header.doc { border-bottom: 2px solid #111; margin-bottom: 4mm; }
h1 { font-size: 17pt; margin: 0 0 1mm 0; letter-spacing: 0.05em; }
.subtitle { font-size: 11pt; margin: 0 0 2mm 0; }
h2 { font-size: 12pt; margin: 5mm 0 2mm 0; padding-bottom: 1mm; border-bottom: 1px solid #777; break-after: avoid; }
h3 { font-size: 10.5pt; margin: 3mm 0 1mm 0; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 0 0 2mm 0; }
th, td { border: 1px solid #999; padding: 1mm 1.5mm; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
table.facts th { width: 32%; background: #f1f1f1; font-weight: 600; }
table.grid th { background: #f1f1f1; font-weight: 600; }
table.readings { font-size: 8.5pt; }
table.readings td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.readings td.nowrap { white-space: nowrap; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
tr.unusable td { color: #666; font-style: italic; }
tr.trigger td { font-weight: 700; background: #fff6d6; }
.finding { font-size: 12pt; font-weight: 700; border: 2px solid #111; padding: 2mm 3mm; margin: 0 0 2mm 0; }
.warning { border: 2px solid #c00000; background: #fdecec; color: #8a0000; padding: 1.5mm 3mm; margin: 0 0 2mm 0; break-inside: avoid; }
.warning .about { color: #5a0000; font-size: 9pt; }
.missing { color: #c00000; font-weight: 700; }
.placeholder { color: #c00000; font-weight: 700; }
.mono { font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK SC", monospace; overflow-wrap: anywhere; }
.small { font-size: 8.5pt; color: #333; }
.integrity { display: flex; gap: 5mm; align-items: flex-start; break-inside: avoid; }
.integrity .text { flex: 1 1 auto; min-width: 0; }
svg.qr { width: 32mm; height: 32mm; flex: 0 0 32mm; }
.short { font-size: 14pt; font-weight: 700; letter-spacing: 0.08em; }
.signatures { break-inside: avoid; }
table.sign th { width: 16%; background: #f1f1f1; font-weight: 600; }
table.sign td { width: 34%; height: 12mm; }
pre.command { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f6f6; border: 1px solid #ccc; padding: 1.5mm 2mm; margin: 1mm 0; font-size: 9pt; }
.rights { border: 1px solid #111; padding: 2mm 3mm; margin-top: 2mm; }
.device { break-inside: avoid; }
`;

function pageCss(footer: string): string {
  // The case number and page numbers on every printed page (CSS paged-media margin box).
  return `@page { @bottom-center { content: ${cssString(footer)} " " counter(page) " / " counter(pages); font-size: 8pt; color: #444; } }`;
}

function documentShell(language: Language, title: string, footer: string, body: string): string {
  return `<!doctype html>
<html lang="${language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${h(title)}</title>
<style>${STYLE}${pageCss(footer)}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function signatureBlock(t: Translator, hasParty: boolean): string {
  const pair = (a: string, b: string) =>
    `<tr><th scope="row">${h(a)}</th><td></td><th scope="row">${h(b)}</th><td></td></tr>`;
  const officer = (n: number) =>
    `<h3>${h(t.t("sign.officer", { n }))}</h3><table class="sign"><tbody>${pair(t.t("sign.officerName"), t.t("sign.officerId"))}${pair(t.t("sign.signature"), t.t("sign.date"))}</tbody></table>`;
  const party = hasParty
    ? `<h3>${h(t.t("sign.party"))}</h3><table class="sign"><tbody>${pair(t.t("sign.partySignature"), t.t("sign.date"))}</tbody></table><p class="rights">${h(t.t("sign.rights"))}</p>`
    : `<p class="small">${h(t.t("sign.partyNone"))}</p>`;
  // Off-site enforcement needs two officers (Administrative Penalty Law 2021 Art. 42).
  return `<section id="signatures" class="signatures"><h2>${h(t.t("section.signatures"))}</h2>${officer(1)}${officer(2)}${party}</section>`;
}

function integrityBlock(
  t: Translator,
  hash: string,
  signature: { keyId: string; value: string } | null,
  verifyUrl: string | undefined,
): string {
  const rows = [
    row(t.t("integrity.shortCode"), {
      html: `<span class="short mono" id="short-code">${h(shortCode(hash))}</span><br><span class="small">${h(t.t("integrity.shortCodeHelp"))}</span>`,
    }),
    row(t.t("integrity.hash"), {
      html: `<span class="mono" id="package-hash">${h(hash)}</span><br><span class="small">${h(t.t("integrity.canonical"))}</span>`,
    }),
    signature === null
      ? row(t.t("integrity.signature"), missing(t.t("integrity.unsigned")))
      : row(t.t("integrity.signature"), t.t("integrity.signatureOf", { keyId: signature.keyId })),
    ...(signature === null
      ? []
      : [
          row(t.t("integrity.signatureValue"), {
            html: `<span class="mono small">${h(signature.value)}</span>`,
          }),
        ]),
    row(
      t.t("integrity.verifyUrl"),
      verifyUrl === undefined
        ? missing(t.t("integrity.verifyUrlNone"))
        : { html: `<span class="mono" id="verify-url">${h(verifyUrl)}</span>` },
    ),
  ];
  const howTo = `<p>${h(t.t(verifyUrl === undefined ? "integrity.howToNoUrl" : "integrity.howTo"))}</p><pre class="mono command" id="verify-command">${h(
    t.t("integrity.command", { keys: verifyUrl ?? t.t("integrity.keysFile") }),
  )}</pre>`;
  const qr = verifyUrl === undefined ? "" : qrSvg(verifyUrl, t.t("integrity.qrAlt"));
  return section(
    "integrity",
    t.t("section.integrity"),
    `<div class="integrity"><div class="text">${facts(rows)}${howTo}</div>${qr}</div>`,
  );
}

// ---------------------------------------------------------------------------------------------
// Format 2

function warningsOf(pkg: EvidencePackageV2): EvidenceWarning[] {
  const warnings = [...pkg.warnings];
  // A device whose calibration is not valid always gets a box, even if the sealer did not warn.
  for (const d of pkg.devices) {
    if (d.calibration === "valid") continue;
    const code = `calibration_${d.calibration}`;
    if (!warnings.some((w) => w.code === code && w.about === d.id))
      warnings.push({ code, about: d.id, message: `calibration ${d.calibration}` });
  }
  return warnings;
}

function warningsSection(pkg: EvidencePackageV2, t: Translator): string {
  const warnings = warningsOf(pkg);
  if (warnings.length === 0) return "";
  const boxes = warnings.map((w) =>
    warningBox(
      t.t("warning.title"),
      t.maybe(`warning.${w.code}`) ?? t.t("warning.unknown", { code: w.code, message: w.message }),
      t.t("warning.about", { about: w.about }),
    ),
  );
  return section("warnings", t.t("section.warnings"), boxes.join(""));
}

function partySection(pkg: EvidencePackageV2, t: Translator): string {
  const party = pkg.party;
  const partyRows =
    party === null
      ? [row(t.t("party.name"), t.t("party.none"))]
      : [
          row(t.t("party.name"), party.name),
          row(t.t("party.creditCode"), orMissing(party.creditCode, t.t("party.notRecorded"))),
          row(t.t("party.address"), orMissing(party.address, t.t("party.notRecorded"))),
          row(
            t.t("party.contact"),
            party.contact === null
              ? missing(t.t("party.notRecorded"))
              : t.t("party.contactOf", { name: party.contact.name, phone: party.contact.phone }),
          ),
        ];
  const site = pkg.site;
  const subject = row(
    t.t("site.subject"),
    t.t("site.subjectOf", {
      type: t.maybe(`subjectType.${pkg.subject.type}`) ?? pkg.subject.type,
      id: pkg.subject.id,
    }),
  );
  const siteRows =
    site === null
      ? [row(t.t("site.name"), t.t("site.none")), subject]
      : [
          row(t.t("site.name"), site.name),
          row(t.t("site.id"), site.id),
          row(t.t("site.type"), t.maybe(`siteType.${site.type}`) ?? site.type),
          row(t.t("site.address"), orMissing(site.address, t.t("common.notRecorded"))),
          row(
            t.t("site.area"),
            [
              site.area.district,
              site.area.street ?? t.t("common.notRecorded"),
              site.area.gridCell,
            ].join(" / "),
          ),
          row(
            t.t("site.location"),
            t.t("site.locationOf", {
              lat: num(site.location.lat, 6),
              lon: num(site.location.lon, 6),
            }),
          ),
          ...(site.zoneClass === null ? [] : [row(t.t("site.zoneClass"), site.zoneClass)]),
          subject,
        ];
  return section("party", t.t("section.party"), facts([...partyRows, ...siteRows]));
}

function ruleSection(pkg: EvidencePackageV2, t: Translator): string {
  const { rule } = pkg;
  const placeholder = rule.confidence === "placeholder";
  const legal =
    rule.legalBasis.length === 0
      ? missing(t.t("rule.legalBasisNone"))
      : {
          html: rule.legalBasis
            .map(
              (b) =>
                `<div>${h(`${b.law} ${b.article}`)}: ${h(b.summary)}${
                  b.confidence === "placeholder"
                    ? ` <span class="placeholder">[${h(t.t("rule.placeholderMark"))}]</span>`
                    : ""
                }</div>`,
            )
            .join(""),
        };
  const rows = [
    row(t.t("rule.title"), rule.title),
    row(t.t("rule.idVersion"), t.t("rule.idVersionOf", { id: rule.id, version: rule.version })),
    row(t.t("rule.clause"), t.t("rule.clauseOf", rule.clause)),
    row(t.t("rule.legalBasis"), legal),
    row(
      t.t("rule.confidence"),
      placeholder
        ? { html: `<span class="placeholder">${h(t.t("confidence.placeholder"))}</span>` }
        : (t.maybe(`confidence.${rule.confidence}`) ?? rule.confidence),
    ),
    ...(rule.unverified.length === 0
      ? []
      : [
          row(t.t("rule.unverified"), {
            html: rule.unverified.map((u) => `<div>${h(`${u.path}: ${u.note}`)}</div>`).join(""),
          }),
        ]),
    ...(rule.note === null ? [] : [row(t.t("rule.note"), rule.note)]),
    ...(rule.statement === null ? [] : [row(t.t("rule.statement"), rule.statement)]),
  ];
  const mark = placeholder
    ? warningBox(t.t("warning.title"), t.t("rule.placeholderMark"), undefined)
    : "";
  return section("rule", t.t("section.rule"), mark + facts(rows));
}

/** A length of time in words, to the second: `2 h 5 min`, `40 s`. */
function elapsed(ms: number, t: Translator): string {
  const seconds = Math.round(ms / 1000);
  const parts: string[] = [];
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) parts.push(t.t("duration.hours", { count: h }));
  if (m > 0) parts.push(t.t("duration.minutes", { count: m }));
  if (s > 0 || parts.length === 0) parts.push(t.t("duration.seconds", { count: s }));
  return parts.join(" ");
}

/** A value or limit of the computation with its unit (a silence in ms as a length of time). */
function measured(value: number, pkg: EvidencePackageV2, t: Translator): string {
  const unit = pkg.computation.unit;
  return unit === "ms" ? elapsed(value, t) : withUnit(num(value), unit);
}

/**
 * The value of the computation in words: reported with its unit, a silence as a length of
 * time, a state as its terms, a quality decision as the flags.
 */
function reportedValue(pkg: EvidencePackageV2, t: Translator): string | undefined {
  const c = pkg.computation;
  if (c.unit === "ms" && typeof c.value === "number") return elapsed(c.value, t);
  if (typeof c.value === "boolean") {
    if (c.conditionType === "state" && c.terms !== undefined && c.terms.length > 0) {
      const terms = c.terms
        .map(
          (term) =>
            `${quantityName(term.quantity, t)} ${t.t(term.is ? "switch.on" : "switch.off")}`,
        )
        .join(t.t(c.match === "any" ? "stateTerms.or" : "stateTerms.and"));
      return c.value ? terms : t.t("stateTerms.not", { terms });
    }
    if (c.conditionType === "quality") {
      if (!c.value) return t.t("qualityFinding.notFlagged");
      const flagged = pkg.readings.filter(
        (r) => r.trigger && (c.flags === undefined || c.flags.includes(r.quality)),
      );
      if (flagged.length > 0)
        return t.t("qualityFinding.flagged", {
          flags: [...new Set(flagged.map((r) => qualityWord(r.quality, t)))].join(", "),
        });
      if (pkg.devices.some((d) => d.calibration === "expired"))
        return t.t("qualityFinding.calibrationExpired");
      return t.t("qualityFinding.flaggedOther");
    }
    if (c.quantity !== null && SWITCHES.has(c.quantity))
      return t.t(c.value ? "switch.on" : "switch.off");
  }
  if (c.reported === null) return undefined;
  return withUnit(c.reported, c.unit);
}

function methodWords(pkg: EvidencePackageV2, t: Translator): string {
  const c = pkg.computation;
  const window =
    c.windowMs === null
      ? t.t("method.latest")
      : t.t(c.align === "clock" ? "method.windowClock" : "method.windowRolling", {
          length: duration(c.windowMs, t),
        });
  const period =
    c.period === null
      ? ""
      : t.t("method.periodOnly", { period: t.maybe(`period.${c.period}`) ?? c.period });
  const coverage =
    c.coverage === null ? "" : t.t("method.coverage", { percent: num(c.coverage * 100, 1) });
  const vars = {
    aggregate: t.maybe(`aggregate.${c.aggregate ?? "none"}`) ?? c.aggregate ?? "",
    quantity: quantityName(c.quantity, t),
    window,
    period,
  };
  const text = t.maybe(`method.${c.conditionType}`, vars) ?? t.t("method.other", vars);
  return text + coverage;
}

function findingSentence(pkg: EvidencePackageV2, t: Translator): string {
  const c = pkg.computation;
  const zone = pkg.timeZone;
  const start = localParts(c.windowStart, c.windowStartLocal, zone);
  const end = localParts(c.windowEnd, c.windowEndLocal, zone);
  const at = localTime(pkg.decision.at, pkg.decision.atLocal, zone, t.t("common.notRecorded"));
  const window = localWindow(start, end, t);
  const quantity = quantityName(c.quantity, t);
  const value = reportedValue(pkg, t) ?? t.t("common.notRecorded");
  const limit = c.limit === null ? undefined : measured(c.limit, pkg, t);
  const period = c.period === null ? "" : (t.maybe(`periodPrefix.${c.period}`) ?? "");
  switch (c.conditionType) {
    case "threshold":
      return limit === undefined
        ? t.t("finding.sentence.thresholdNoLimit", { window, period, quantity, value })
        : t.t("finding.sentence.threshold", { window, period, quantity, value, limit });
    case "k_of_n": {
      const vote = pkg.vote;
      if (vote === null) break;
      const threshold = vote.threshold ?? c.limit;
      return t.t("finding.sentence.k_of_n", {
        k: vote.k,
        n: vote.n,
        quantity,
        limit: threshold === null ? t.t("common.notRecorded") : withUnit(num(threshold), c.unit),
        at,
      });
    }
    case "rate_of_rise":
      return t.t("finding.sentence.rate_of_rise", {
        window,
        quantity,
        value,
        limit: limit ?? t.t("common.notRecorded"),
      });
    case "state":
      return t.t("finding.sentence.state", { at, quantity, value });
    case "deadman":
      return t.t("finding.sentence.deadman", {
        since: localTime(
          pkg.decision.startedAt ?? c.windowStart,
          pkg.decision.startedAt === null ? c.windowStartLocal : pkg.decision.startedAtLocal,
          zone,
          t.t("common.notRecorded"),
        ),
      });
    case "quality": {
      const trigger = pkg.readings.find((r) => r.trigger);
      return t.t("finding.sentence.quality", {
        at,
        value: trigger === undefined ? value : qualityWord(trigger.quality, t),
      });
    }
    default:
      break;
  }
  return t.t("finding.sentence.other", { at, quantity, value });
}

function recomputedCell(pkg: EvidencePackageV2, t: Translator): Cell {
  const c = pkg.computation;
  const { recomputed, reported } = c;
  if (recomputed === null) return t.t("finding.recomputedNone");
  if (typeof recomputed === "boolean") {
    const word = t.t(recomputed ? "switch.on" : "switch.off");
    return recomputed === c.value
      ? t.t("finding.recomputedAgrees", { value: word })
      : missing(
          t.t("finding.recomputedDiffers", { value: word, reported: reportedValue(pkg, t) ?? "" }),
        );
  }
  if (c.unit === "ms") {
    const value = elapsed(recomputed, t);
    return reported === null || fixed(recomputed, decimalsOf(reported)) === reported
      ? t.t("finding.recomputedAgrees", { value })
      : missing(t.t("finding.recomputedDiffers", { value, reported: reportedValue(pkg, t) ?? "" }));
  }
  if (reported === null) return withUnit(num(recomputed), c.unit);
  const text = fixed(recomputed, decimalsOf(reported));
  const value = withUnit(text, c.unit);
  return text === reported
    ? t.t("finding.recomputedAgrees", { value })
    : missing(t.t("finding.recomputedDiffers", { value, reported: withUnit(reported, c.unit) }));
}

function findingSection(pkg: EvidencePackageV2, t: Translator): string {
  const c = pkg.computation;
  const d = pkg.decision;
  const zone = pkg.timeZone;
  const notRecorded = t.t("common.notRecorded");
  const rows = [
    row(
      t.t("finding.decision"),
      t.t("finding.decisionOf", {
        type: t.maybe(`decisionType.${d.type}`) ?? d.type,
        seq: d.alarmSeq,
      }),
    ),
    ...(d.level === null ? [] : [row(t.t("finding.level"), d.level)]),
    ...(d.levelThreshold === null
      ? []
      : [row(t.t("finding.levelThreshold"), withUnit(num(d.levelThreshold), c.unit))]),
    row(t.t("finding.decidedAt"), localTime(d.at, d.atLocal, zone, notRecorded)),
    ...(d.startedAt === null
      ? []
      : [
          row(
            t.t("finding.startedAt"),
            localTime(d.startedAt, d.startedAtLocal, zone, notRecorded),
          ),
        ]),
    row(t.t("finding.method"), methodWords(pkg, t)),
    row(
      t.t("finding.window"),
      t.t("finding.windowOf", {
        start: localTime(c.windowStart, c.windowStartLocal, zone, notRecorded),
        end: localTime(c.windowEnd, c.windowEndLocal, zone, notRecorded),
      }),
    ),
    row(t.t("finding.value"), {
      html: `<strong id="reported-value">${h(reportedValue(pkg, t) ?? t.t("finding.notApplicable"))}</strong>`,
    }),
    row(
      t.t("finding.limit"),
      c.limit === null
        ? t.t("finding.notApplicable")
        : { html: `<span id="limit-value">${h(measured(c.limit, pkg, t))}</span>` },
    ),
    row(t.t("finding.recomputed"), recomputedCell(pkg, t)),
    row(t.t("finding.replayed"), t.t(d.replayed ? "finding.yes" : "finding.no")),
  ];
  return section(
    "finding",
    t.t("section.finding"),
    `<p class="finding" id="finding-sentence">${h(findingSentence(pkg, t))}</p>${facts(rows)}`,
  );
}

function readingsSection(pkg: EvidencePackageV2, t: Translator): string {
  const title = t.t("section.readings", { count: pkg.readings.length });
  if (pkg.readings.length === 0)
    return section("readings", title, `<p>${h(t.t("readings.none"))}</p>`);
  const quantities = [...new Set(pkg.readings.flatMap((r) => Object.keys(r.values)))].sort();
  const head = [
    "#",
    t.t("readings.time"),
    t.t("readings.device"),
    ...quantities.map((q) => withUnit(q, UNITS.get(q))),
    t.t("readings.quality"),
    t.t("readings.usable"),
    t.t("readings.trigger"),
    t.t("readings.received"),
    t.t("readings.seq"),
  ];
  const zone = pkg.timeZone;
  const decimals = new Map(
    quantities.map((q) => [q, columnDecimals(pkg.readings.map((r) => r.values[q]))]),
  );
  const rows = pkg.readings.map((r, i) => {
    const cls = [r.usable ? "" : "unusable", r.trigger ? "trigger" : ""]
      .filter((c) => c !== "")
      .join(" ");
    const cells = [
      { html: String(i + 1), num: false },
      localTime(r.ts, r.tsLocal, zone, r.ts),
      // Short ids stay on one line; a long one may wrap rather than widen the table.
      r.deviceId.length <= 16 ? { html: h(r.deviceId), num: false } : r.deviceId,
      ...quantities.map((q) => ({
        html: h(readingValue(q, r.values[q], decimals.get(q) ?? 3, t)),
        num: true,
      })),
      `${qualityWord(r.quality, t)}${r.replay ? ` (${t.t("readings.replay")})` : ""}`,
      t.t(r.usable ? "readings.usableYes" : "readings.usableNo"),
      r.trigger ? { html: `<span title="${h(t.t("readings.triggerMark"))}">★</span>` } : "",
      r.receivedAt === null
        ? t.t("readings.receivedNone")
        : localTime(r.receivedAt, undefined, zone, r.receivedAt),
      r.seq === null ? t.t("readings.seqNone") : String(r.seq),
    ];
    return `<tr${cls === "" ? "" : ` class="${cls}"`}>${cells
      .map((c) =>
        typeof c === "object" && "num" in c
          ? `<td class="${c.num ? "num" : "nowrap"}">${c.html}</td>`
          : `<td>${cell(c)}</td>`,
      )
      .join("")}</tr>`;
  });
  return section(
    "readings",
    title,
    `<table class="grid readings"><thead><tr>${head.map((x) => `<th scope="col">${h(x)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table><p class="small">${h(t.t("readings.triggerLegend"))}</p>`,
  );
}

function devicesSection(pkg: EvidencePackageV2, t: Translator): string {
  if (pkg.devices.length === 0)
    return section("devices", t.t("section.devices"), `<p>${h(t.t("devices.none"))}</p>`);
  const notRecorded = t.t("devices.notRecorded");
  const cards = pkg.devices.map((d) => {
    const calibration = t.maybe(`calibration.${d.calibration}`) ?? d.calibration;
    return `<div class="device"><h3>${h(d.id)}</h3>${facts([
      row(t.t("devices.kind"), t.maybe(`sensorKind.${d.kind}`) ?? d.kind),
      row(t.t("devices.model"), d.model),
      row(t.t("devices.serial"), d.serial),
      row(t.t("devices.typeApproval"), orMissing(d.typeApproval, notRecorded)),
      row(t.t("devices.metrologyCertificate"), orMissing(d.metrologyCertificate, notRecorded)),
      row(t.t("devices.calibratedOn"), orMissing(d.calibratedOn, notRecorded)),
      row(t.t("devices.calibrationDueOn"), orMissing(d.calibrationDueOn, notRecorded)),
      row(
        t.t("devices.calibration"),
        d.calibration === "valid" ? calibration : missing(calibration),
      ),
      row(
        t.t("devices.location"),
        `${t.t("site.locationOf", { lat: num(d.location.lat, 6), lon: num(d.location.lon, 6) })}; ${[
          d.area.district,
          d.area.street ?? t.t("common.notRecorded"),
          d.area.gridCell,
        ].join(" / ")}`,
      ),
      ...(d.zoneClass === null ? [] : [row(t.t("site.zoneClass"), d.zoneClass)]),
    ])}</div>`;
  });
  return section("devices", t.t("section.devices"), cards.join(""));
}

function permitsSection(pkg: EvidencePackageV2, t: Translator): string {
  const zone = pkg.timeZone;
  const { inForce, exempting } = pkg.permits;
  const table =
    inForce.length === 0
      ? `<p>${h(t.t("permits.none"))}</p>`
      : `<table class="grid"><thead><tr><th scope="col">${h(t.t("permits.type"))}</th><th scope="col">${h(t.t("permits.reference"))}</th><th scope="col">${h(t.t("permits.valid"))}</th></tr></thead><tbody>${inForce
          .map(
            (p) =>
              `<tr><td>${h(t.maybe(`permitType.${p.type}`) ?? p.type)}</td><td>${cell(orMissing(p.reference, t.t("common.notRecorded")))}</td><td>${h(
                t.t("permits.validOf", {
                  from: dateOrInstant(p.validFrom, zone),
                  to: dateOrInstant(p.validTo, zone),
                }),
              )}</td></tr>`,
          )
          .join("")}</tbody></table>`;
  const exempt = facts([
    row(
      t.t("permits.exempting"),
      exempting.length === 0
        ? t.t("permits.exemptingNone")
        : exempting.map((x) => t.maybe(`permitType.${x}`) ?? x).join(", "),
    ),
  ]);
  return section("permits", t.t("section.permits"), table + exempt);
}

function voteSection(pkg: EvidencePackageV2, t: Translator): string {
  const vote = pkg.vote;
  if (vote === null) return "";
  const unit = pkg.computation.unit;
  const threshold = vote.threshold ?? pkg.computation.limit;
  const summary = t.t("vote.summary", {
    k: vote.k,
    n: vote.n,
    threshold: threshold === null ? t.t("common.notRecorded") : withUnit(num(threshold), unit),
  });
  const rows = vote.devices.map(
    (d) =>
      `<tr><td>${h(d.deviceId)}</td><td class="num">${h(d.value === null ? t.t("vote.noValue") : withUnit(num(d.value), unit))}</td><td>${h(
        d.quality === null ? t.t("vote.noQuality") : qualityWord(d.quality, t),
      )}</td><td>${h(t.t(d.votes ? "finding.yes" : "finding.no"))}</td></tr>`,
  );
  return section(
    "vote",
    t.t("section.vote"),
    `<p>${h(summary)}</p><table class="grid"><thead><tr><th scope="col">${h(t.t("vote.device"))}</th><th scope="col">${h(t.t("vote.value"))}</th><th scope="col">${h(t.t("vote.quality"))}</th><th scope="col">${h(t.t("vote.votes"))}</th></tr></thead><tbody>${rows.join("")}</tbody></table>`,
  );
}

function transportSection(pkg: EvidencePackageV2, t: Translator): string {
  const { path, commits } = pkg.transport;
  return section(
    "transport",
    t.t("section.transport"),
    facts([
      row(
        t.t("transport.path"),
        path.length === 0
          ? t.t("common.notRecorded")
          : path.map((s) => transportStep(s, t)).join(" → "),
      ),
      row(
        t.t("transport.commits"),
        commits.length === 0
          ? t.t("common.notRecorded")
          : commits
              .map(
                (c) =>
                  `${c.deviceId}: ${c.seq === null ? t.t("transport.commitNone") : String(c.seq)}`,
              )
              .join("; "),
      ),
    ]),
  );
}

function auditSection(pkg: EvidencePackageV2, t: Translator): string {
  if (pkg.audit.length === 0)
    return section("audit", t.t("section.audit"), `<p>${h(t.t("audit.none"))}</p>`);
  const state = (s: string | null) => (s === null ? "" : (t.maybe(`state.${s}`) ?? s));
  const rows = pkg.audit.map((a) => {
    const change = a.from === null && a.to === null ? "" : `${state(a.from)} → ${state(a.to)}`;
    return `<tr><td>${h(localTime(a.at, a.atLocal, pkg.timeZone, a.at))}</td><td>${h(a.actor)}</td><td>${h(
      t.maybe(`action.${a.action}`) ?? a.action,
    )}</td><td>${h(change)}</td><td>${h(a.detail)}</td></tr>`;
  });
  const head = [
    t.t("audit.at"),
    t.t("audit.actor"),
    t.t("audit.action"),
    t.t("audit.change"),
    t.t("audit.detail"),
  ];
  return section(
    "audit",
    t.t("section.audit"),
    `<table class="grid"><thead><tr>${head.map((x) => `<th scope="col">${h(x)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`,
  );
}

function headerBlock(
  t: Translator,
  kind: string,
  taskId: string,
  sequence: number,
  rows: readonly string[],
): string {
  const title = t.maybe(`doc.title.${kind}`) ?? t.t("doc.title.enforcement");
  return `<header class="doc"><h1>${h(title)}</h1><p class="subtitle">${h(
    `${t.t("doc.subtitle")} ${t.t("doc.packageOf", { sequence })}`,
  )}</p>${facts([
    row(t.t("doc.caseNumber"), { html: `<strong id="case-number">${h(taskId)}</strong>` }),
    row(t.t("doc.packageSequence"), t.t("doc.packageOf", { sequence })),
    ...rows,
  ])}</header>`;
}

function renderV2(pkg: EvidencePackageV2, t: Translator, options: EvidenceDocumentOptions): string {
  const zone = pkg.timeZone;
  const notRecorded = t.t("common.notRecorded");
  const header = headerBlock(t, pkg.kind, pkg.taskId, pkg.sequence, [
    row(t.t("doc.createdAt"), localTime(pkg.createdAt, pkg.createdAtLocal, zone, notRecorded)),
    row(t.t("doc.format"), t.t("doc.formatV2")),
    row(
      t.t("doc.previous"),
      pkg.previous === null
        ? t.t("doc.previousNone")
        : t.t("doc.previousOf", {
            sequence: pkg.previous.sequence,
            hash: shortCode(pkg.previous.hash),
          }),
    ),
    row(t.t("doc.timeZone"), t.t("doc.timeZoneOf", { zone })),
    ...(options.generatedAt === undefined
      ? []
      : [
          row(
            t.t("doc.generatedAt"),
            localTime(options.generatedAt.toISOString(), undefined, zone, notRecorded),
          ),
        ]),
  ]);
  const body = [
    header,
    warningsSection(pkg, t),
    partySection(pkg, t),
    ruleSection(pkg, t),
    findingSection(pkg, t),
    readingsSection(pkg, t),
    devicesSection(pkg, t),
    permitsSection(pkg, t),
    voteSection(pkg, t),
    transportSection(pkg, t),
    auditSection(pkg, t),
    integrityBlock(t, pkg.hash.value, pkg.signature, options.verifyUrl),
    `<p class="small">${h(t.t("doc.machineRecord"))}</p>`,
    signatureBlock(t, pkg.party !== null || pkg.kind === "enforcement"),
  ].join("\n");
  const title = `${t.maybe(`doc.title.${pkg.kind}`) ?? ""} ${pkg.taskId} #${pkg.sequence}`;
  return documentShell(
    t.language,
    title,
    t.t("doc.pageFooter", { taskId: pkg.taskId, sequence: pkg.sequence }),
    body,
  );
}

// ---------------------------------------------------------------------------------------------
// Format 1: what it has, plainly, marked unsigned

/** Format 1 recorded no time zone: its times are shown in the default zone of the rules. */
const V1_ZONE = "Asia/Shanghai";

function renderV1(pkg: EvidencePackageV1, t: Translator, options: EvidenceDocumentOptions): string {
  const notRecorded = t.t("common.notRecorded");
  const time = (utc: string | null) => localTime(utc, undefined, V1_ZONE, notRecorded);
  const header = headerBlock(t, pkg.kind, pkg.taskId, pkg.sequence, [
    row(t.t("doc.createdAt"), time(pkg.createdAt)),
    row(t.t("doc.format"), missing(t.t("doc.formatV1"))),
    row(t.t("doc.timeZone"), t.t("doc.timeZoneOf", { zone: V1_ZONE })),
    ...(options.generatedAt === undefined
      ? []
      : [row(t.t("doc.generatedAt"), time(options.generatedAt.toISOString()))]),
  ]);
  const site = pkg.site;
  const party = site?.regulatedParty ?? null;
  const partyRows =
    party === null
      ? [row(t.t("party.name"), t.t("party.none"))]
      : [
          row(t.t("party.name"), party.name),
          row(t.t("party.creditCode"), orMissing(party.creditCode, t.t("party.notRecorded"))),
          row(
            t.t("party.contact"),
            party.contact === undefined
              ? missing(t.t("party.notRecorded"))
              : t.t("party.contactOf", { name: party.contact.name, phone: party.contact.phone }),
          ),
        ];
  const siteRows =
    site === null
      ? [row(t.t("site.name"), t.t("site.none"))]
      : [
          row(t.t("site.name"), site.name),
          row(t.t("site.id"), site.id),
          row(t.t("site.type"), t.maybe(`siteType.${site.type}`) ?? site.type),
          row(
            t.t("site.location"),
            t.t("site.locationOf", {
              lat: num(site.location.lat, 6),
              lon: num(site.location.lon, 6),
            }),
          ),
        ];
  const c = pkg.computation;
  const value =
    c.value === null
      ? t.t("finding.notApplicable")
      : typeof c.value === "boolean"
        ? t.t(c.value ? "switch.on" : "switch.off")
        : num(c.value, 1);
  const rule = pkg.rule;
  const ruleRows = [
    row(t.t("rule.title"), rule.title),
    row(t.t("rule.idVersion"), t.t("rule.idVersionOf", { id: rule.id, version: rule.version })),
    row(t.t("rule.clause"), t.t("rule.clauseOf", rule.clause)),
    row(
      t.t("rule.confidence"),
      rule.confidence === "placeholder"
        ? { html: `<span class="placeholder">${h(t.t("confidence.placeholder"))}</span>` }
        : (t.maybe(`confidence.${rule.confidence}`) ?? rule.confidence),
    ),
    ...(rule.unverified === undefined || rule.unverified.length === 0
      ? []
      : [
          row(t.t("rule.unverified"), {
            html: rule.unverified.map((u) => `<div>${h(`${u.path}: ${u.note}`)}</div>`).join(""),
          }),
        ]),
    ...(rule.note === null ? [] : [row(t.t("rule.note"), rule.note)]),
    ...(rule.statement === null ? [] : [row(t.t("rule.statement"), rule.statement)]),
  ];
  const findingRows = [
    row(
      t.t("finding.decision"),
      t.t("finding.decisionOf", {
        type: t.maybe(`decisionType.${pkg.decision.type}`) ?? pkg.decision.type,
        seq: pkg.decision.alarmSeq,
      }),
    ),
    ...(pkg.decision.level === null ? [] : [row(t.t("finding.level"), pkg.decision.level)]),
    row(t.t("finding.decidedAt"), time(pkg.decision.at)),
    row(
      t.t("finding.window"),
      t.t("finding.windowOf", { start: time(c.windowStart), end: time(c.windowEnd) }),
    ),
    row(t.t("finding.value"), value),
    row(t.t("finding.limit"), c.limit === null ? t.t("finding.notApplicable") : num(c.limit)),
    row(t.t("finding.replayed"), t.t(pkg.decision.replayed ? "finding.yes" : "finding.no")),
  ];
  const warnings = pkg.devices
    .filter((d) => d.calibratedOn === null || d.calibrationDueOn === null)
    .map((d) =>
      warningBox(
        t.t("warning.title"),
        t.t("warning.calibration_missing"),
        t.t("warning.about", { about: d.id }),
      ),
    );
  const devices = pkg.devices.map(
    (d) =>
      `<div class="device"><h3>${h(d.id)}</h3>${facts([
        row(t.t("devices.kind"), t.maybe(`sensorKind.${d.kind}`) ?? d.kind),
        row(t.t("devices.model"), d.model),
        row(t.t("devices.serial"), d.serial),
        row(t.t("devices.calibratedOn"), orMissing(d.calibratedOn, t.t("devices.notRecorded"))),
        row(
          t.t("devices.calibrationDueOn"),
          orMissing(d.calibrationDueOn, t.t("devices.notRecorded")),
        ),
      ])}</div>`,
  );
  const quantities = [...new Set(pkg.readings.flatMap((r) => Object.keys(r.values)))].sort();
  const v1Decimals = new Map(
    quantities.map((q) => [q, columnDecimals(pkg.readings.map((r) => r.values[q]))]),
  );
  const readings =
    pkg.readings.length === 0
      ? `<p>${h(t.t("readings.none"))}</p>`
      : `<table class="grid readings"><thead><tr>${[
          "#",
          t.t("readings.time"),
          t.t("readings.device"),
          ...quantities.map((q) => withUnit(q, UNITS.get(q))),
          t.t("readings.quality"),
          t.t("readings.usable"),
        ]
          .map((x) => `<th scope="col">${h(x)}</th>`)
          .join("")}</tr></thead><tbody>${pkg.readings
          .map(
            (r, i) =>
              `<tr${r.usable ? "" : ' class="unusable"'}><td>${i + 1}</td><td>${h(time(r.ts))}</td><td>${h(r.deviceId)}</td>${quantities
                .map(
                  (q) =>
                    `<td class="num">${h(readingValue(q, r.values[q], v1Decimals.get(q) ?? 3, t))}</td>`,
                )
                .join("")}<td>${h(qualityWord(r.quality, t))}</td><td>${h(
                t.t(r.usable ? "readings.usableYes" : "readings.usableNo"),
              )}</td></tr>`,
          )
          .join("")}</tbody></table>`;
  const body = [
    header,
    warnings.length === 0 ? "" : section("warnings", t.t("section.warnings"), warnings.join("")),
    section("party", t.t("section.party"), facts([...partyRows, ...siteRows])),
    section("rule", t.t("section.rule"), facts(ruleRows)),
    section("finding", t.t("section.finding"), facts(findingRows)),
    section("readings", t.t("section.readings", { count: pkg.readings.length }), readings),
    section(
      "devices",
      t.t("section.devices"),
      devices.join("") || `<p>${h(t.t("devices.none"))}</p>`,
    ),
    integrityBlock(t, pkg.hash.value, null, options.verifyUrl),
    signatureBlock(t, party !== null || pkg.kind === "enforcement"),
  ].join("\n");
  return documentShell(
    t.language,
    `${pkg.taskId} #${pkg.sequence}`,
    t.t("doc.pageFooter", { taskId: pkg.taskId, sequence: pkg.sequence }),
    body,
  );
}

/**
 * The printable document of an evidence package in `options.language`: a complete HTML page
 * with A4 print CSS, no script, every package value escaped.
 */
export function renderEvidenceDocument(
  pkg: EvidencePackage,
  options: EvidenceDocumentOptions,
): string {
  const t = translator(options.language);
  return pkg.format === "citywatch-evidence/2"
    ? renderV2(pkg, t, options)
    : renderV1(pkg, t, options);
}

/**
 * The document in English without a verification address (the page the task API served before
 * the bilingual document). Kept for callers not yet moved to renderEvidenceDocument.
 * @deprecated use renderEvidenceDocument
 */
export function evidenceHtml(pkg: EvidencePackage): string {
  return renderEvidenceDocument(pkg, { language: "en" });
}

export { DEFAULT_LANGUAGE };
