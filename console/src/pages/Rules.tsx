import type { BacktestReport } from "../../../contracts/model/backtest.js";
import type { User } from "../../../contracts/model/people.js";
import type { RuleList, RuleListItem } from "../../../contracts/model/rule-list.js";
import type { SiteSummary } from "../../../contracts/model/api.js";
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { loadSites } from "../devices.js";
import { t, tk } from "../i18n.js";
import { formatLocal, localParts } from "../time.js";

/*
 * The rule pack and the backtest (issue #19 item 7). Every rule the running process evaluates
 * (GET /api/v1/rules), grouped by its file (the pack's domains: noise, dust, water, …): clause,
 * condition, limits per context and period, and a flag on placeholders and unverified numbers.
 * For admins, the backtest form (POST /api/v1/rules/backtest): a range of local times, an
 * optional site or device, some rules, a tick; the report per rule with its cases in the site's
 * time zone. Nothing is filed.
 */

/** `pack/noise.yaml` → `noise`; a local file keeps its directory. */
const domainOf = (file: string) => file.replace(/^pack\//, "").replace(/\.(ya?ml|json)$/, "");

/** The value of a datetime-local input for an instant, in the site's time zone. */
function inputValue(ms: number): string {
  const p = localParts(ms);
  return `${p.date}T${p.time.slice(0, 5)}`;
}

/** A datetime-local value read in the site's time zone, as RFC 3339 with its offset. */
function instantOf(value: string): string {
  const offset = localParts(Date.parse(`${value}:00Z`)).offset;
  return `${value}:00${offset}`;
}

function limitsText(rule: RuleListItem): string[] {
  return rule.limits.map((row) => {
    const when = Object.entries(row.when)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    const values = Object.entries(row.values)
      .map(([k, v]) => `${k} ${v}`)
      .join(" · ");
    return when === "" ? values : `${when}: ${values}`;
  });
}

function RuleRow(props: { rule: RuleListItem }) {
  const r = props.rule;
  const placeholder = r.confidence === "placeholder";
  return (
    <tr data-rule={r.id} data-status={r.enabled ? undefined : "disabled"}>
      <td data-label={t("ruleTitle")}>
        <strong>{r.title}</strong>
        <div class="muted small">
          <code>{r.id}</code> v{r.version}
        </div>
        <span class={`badge kind ${r.taskKind}`}>{tk("k", r.taskKind)}</span>{" "}
        {placeholder && (
          <span class="badge flag placeholder" data-testid="placeholder" title={r.note ?? ""}>
            {t("rulePlaceholder")}
          </span>
        )}
        {!placeholder && r.unverified.length > 0 && (
          <span
            class="badge flag unverified"
            data-testid="unverified"
            title={r.unverified.map((u) => `${u.path}: ${u.note}`).join("\n")}
          >
            {t("ruleUnverified")}
          </span>
        )}{" "}
        {!r.enabled && <span class="badge">{t("ruleOff")}</span>}
      </td>
      <td data-label={t("ruleClause")} class="clause">
        {r.clause.standard}
        <div class="muted small">{r.clause.section}</div>
      </td>
      <td data-label={t("ruleCondition")}>
        <code class="condition">{r.condition.summary}</code>
        {r.unverified.length > 0 && (
          <div class="muted small">
            {t("ruleUnverifiedParts")}: {r.unverified.map((u) => u.path).join(", ")}
          </div>
        )}
      </td>
      <td data-label={t("ruleLimits")}>
        {r.limits.length === 0 ? (
          "—"
        ) : (
          <ul class="plain">
            {limitsText(r).map((line) => (
              <li key={line}>{line}</li>
            ))}
          </ul>
        )}
        {r.periods.length > 0 && (
          <div class="muted small">
            {r.periods.map((p) => `${p.name} ${p.from}–${p.to}`).join(" · ")}
          </div>
        )}
      </td>
    </tr>
  );
}

function Report(props: { report: BacktestReport }) {
  const { report } = props;
  const run = report.run;
  return (
    <div class="backtest-report" data-testid="backtest-report">
      <p>
        {t("backtestSummary", {
          readings: report.data.readings,
          devices: report.data.devices,
          rules: run.ruleCount,
          ms: Math.round(report.elapsedMs),
        })}
      </p>
      <p>
        <strong>
          {t("backtestTotals", {
            raised: run.totals.raised,
            escalated: run.totals.escalated,
            cleared: run.totals.cleared,
          })}
        </strong>
      </p>
      {report.warnings.map((w) => (
        <p key={w} class="muted small">
          {w}
        </p>
      ))}
      {run.byRule.length === 0 ? (
        <p class="empty">{t("backtestNone")}</p>
      ) : (
        run.byRule.map((rule) => (
          <div key={rule.id} class="backtest-rule" data-rule={rule.id}>
            <h3>
              {rule.title} <code class="muted small">{rule.id}</code>
            </h3>
            <p class="small">
              {t("backtestCounts", {
                raised: rule.raised,
                escalated: rule.escalated,
                cleared: rule.cleared,
                open: rule.openAtEnd,
              })}
            </p>
            <div class="table-wrap">
              <table class="list">
                <thead>
                  <tr>
                    <th>{t("backtestSubject")}</th>
                    <th>{t("backtestRaisedAt")}</th>
                    <th>{t("backtestLevel")}</th>
                    <th>{t("backtestValue")}</th>
                    <th>{t("backtestClearedAt")}</th>
                  </tr>
                </thead>
                <tbody>
                  {rule.subjects.flatMap((s) =>
                    s.cases.map((c) => (
                      <tr key={`${s.id}-${c.alarmSeq}`}>
                        <td data-label={t("backtestSubject")}>
                          {s.id}
                          {s.siteId !== null && s.siteId !== s.id && (
                            <span class="muted small"> ({s.siteId})</span>
                          )}
                        </td>
                        <td data-label={t("backtestRaisedAt")}>
                          {formatLocal(c.raisedAt, { zone: true })}
                          {c.openAtStart && (
                            <span class="muted small"> {t("backtestOpenAtStart")}</span>
                          )}
                        </td>
                        <td data-label={t("backtestLevel")}>{c.level ?? "—"}</td>
                        <td data-label={t("backtestValue")}>
                          {c.evidence.value === null ? "—" : String(c.evidence.value)}
                          {c.evidence.limit === null ? "" : ` / ${c.evidence.limit}`}
                        </td>
                        <td data-label={t("backtestClearedAt")}>
                          {c.clearedAt === null
                            ? t("backtestStillOpen")
                            : formatLocal(c.clearedAt, { zone: true })}
                        </td>
                      </tr>
                    )),
                  )}
                </tbody>
              </table>
            </div>
          </div>
        ))
      )}
    </div>
  );
}

function BacktestForm(props: { rules: readonly RuleListItem[] }) {
  const now = Date.now();
  const [from, setFrom] = useState(inputValue(now - 3_600_000));
  const [to, setTo] = useState(inputValue(now));
  const [site, setSite] = useState("");
  const [device, setDevice] = useState("");
  const [ruleIds, setRuleIds] = useState<string[]>([]);
  const [tick, setTick] = useState("");
  const [sites, setSites] = useState<SiteSummary[]>([]);
  const [running, setRunning] = useState(false);
  const [report, setReport] = useState<BacktestReport | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);

  useEffect(() => {
    loadSites().then(setSites, () => setSites([]));
  }, []);

  const run = (event: Event) => {
    event.preventDefault();
    setRunning(true);
    setError(undefined);
    setReport(undefined);
    api<BacktestReport>("POST", "/api/v1/rules/backtest", {
      from: instantOf(from),
      to: instantOf(to),
      ...(site === "" ? {} : { site }),
      ...(device.trim() === "" ? {} : { device: device.trim() }),
      ...(ruleIds.length === 0 ? {} : { ruleIds }),
      ...(tick.trim() === "" ? {} : { tick: tick.trim() }),
    })
      .then(setReport, (e: unknown) => setError(e instanceof Error ? e.message : String(e)))
      .finally(() => setRunning(false));
  };

  return (
    <section class="backtest" aria-labelledby="backtest-title">
      <h2 id="backtest-title">{t("backtestTitle")}</h2>
      <p class="muted small">{t("backtestHint")}</p>
      <form class="filters backtest-form" onSubmit={run} data-testid="backtest-form">
        <label>
          {t("backtestFrom")}
          <input
            type="datetime-local"
            name="from"
            required
            value={from}
            onChange={(e) => setFrom(e.currentTarget.value)}
          />
        </label>
        <label>
          {t("backtestTo")}
          <input
            type="datetime-local"
            name="to"
            required
            value={to}
            onChange={(e) => setTo(e.currentTarget.value)}
          />
        </label>
        <label>
          {t("backtestSite")}
          <select name="site" value={site} onChange={(e) => setSite(e.currentTarget.value)}>
            <option value="">{t("backtestAll")}</option>
            {sites.map((s) => (
              <option key={s.id} value={s.id}>
                {s.name} ({s.id})
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("backtestDevice")}
          <input
            name="device"
            value={device}
            disabled={site !== ""}
            onInput={(e) => setDevice(e.currentTarget.value)}
          />
        </label>
        <label>
          {t("backtestTick")}
          <input
            name="tick"
            placeholder="5s"
            size={6}
            value={tick}
            onInput={(e) => setTick(e.currentTarget.value)}
          />
        </label>
        <label class="rules-pick">
          {t("backtestRules")}
          <select
            name="rules"
            multiple
            size={6}
            onChange={(e) => setRuleIds([...e.currentTarget.selectedOptions].map((o) => o.value))}
          >
            {props.rules.map((r) => (
              <option key={r.id} value={r.id} selected={ruleIds.includes(r.id)}>
                {r.id}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={running} data-testid="backtest-run">
          {running ? t("backtestRunning") : t("backtestRun")}
        </button>
      </form>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {report !== undefined && <Report report={report} />}
    </section>
  );
}

export function Rules(props: { user: User }) {
  const [list, setList] = useState<RuleList | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    api<RuleList>("GET", "/api/v1/rules").then(setList, (e: unknown) =>
      setError(e instanceof Error ? e.message : String(e)),
    );
  }, []);
  const admin = props.user.roles.includes("admin");
  const groups = new Map<string, RuleListItem[]>();
  for (const rule of list?.rules ?? []) {
    const domain = domainOf(rule.file);
    groups.set(domain, [...(groups.get(domain) ?? []), rule]);
  }
  const placeholders = list?.rules.filter((r) => r.confidence === "placeholder").length ?? 0;
  return (
    <section class="rules" aria-labelledby="rules-title">
      <div class="page-head">
        <h1 id="rules-title">{t("rulesTitle")}</h1>
      </div>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list === undefined && error === undefined && <p class="loading">{t("loading")}</p>}
      {list !== undefined && (
        <>
          <p class="muted">
            {t("rulesSummary", { region: list.region, n: list.rules.length, placeholders })}
          </p>
          {admin && <BacktestForm rules={list.rules} />}
          {[...groups].map(([domain, rules]) => (
            <div key={domain} class="rule-group" data-domain={domain}>
              <h2>{tk("domain", domain)}</h2>
              <div class="table-wrap">
                <table class="list rule-table">
                  <thead>
                    <tr>
                      <th>{t("ruleTitle")}</th>
                      <th>{t("ruleClause")}</th>
                      <th>{t("ruleCondition")}</th>
                      <th>{t("ruleLimits")}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {rules.map((r) => (
                      <RuleRow key={r.id} rule={r} />
                    ))}
                  </tbody>
                </table>
              </div>
            </div>
          ))}
        </>
      )}
    </section>
  );
}
