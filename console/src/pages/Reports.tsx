import type { AssessmentReport } from "../../../contracts/model/assessment.js";
import type { User } from "../../../contracts/model/people.js";
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { t } from "../i18n.js";
import { localParts } from "../time.js";

/*
 * The teams' assessment report (issue #19 item 7; GET /api/v1/assessment, docs/tasks.md
 * Assessment) for the command centre: a period of local dates per district, street or team —
 * received, dispatched and handled on time, closed, false positives, overdue, reopened, handling
 * time, repeat offenders — with a bar of each group's share handled on time (of those received)
 * and the CSV download.
 */

type By = "district" | "street" | "team";

const pct = (part: number, whole: number): number | undefined =>
  whole === 0 ? undefined : Math.round((part / whole) * 100);

export function Reports(props: { user: User }) {
  const allowed = props.user.roles.some((r) => r === "admin" || r === "command_centre");
  const today = localParts(Date.now()).date;
  const [from, setFrom] = useState(`${today.slice(0, 8)}01`);
  const [to, setTo] = useState(localParts(Date.now() + 86_400_000).date);
  const [by, setBy] = useState<By>("district");
  const [report, setReport] = useState<AssessmentReport | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const query = new URLSearchParams({ from, to, by }).toString();

  useEffect(() => {
    if (!allowed) return;
    setError(undefined);
    api<AssessmentReport>("GET", `/api/v1/assessment?${query}`).then(setReport, (e: unknown) => {
      setReport(undefined);
      setError(e instanceof Error ? e.message : String(e));
    });
  }, [query]);

  if (!allowed) return <p class="empty">{t("reportsRole")}</p>;
  const rows = report === undefined ? [] : [...report.rows];
  return (
    <section class="reports" aria-labelledby="reports-title">
      <div class="page-head">
        <h1 id="reports-title">{t("reportsTitle")}</h1>
        <a
          class="button secondary small"
          href={`/api/v1/assessment?${query}&format=csv`}
          download
          data-testid="csv"
        >
          {t("downloadCsv")}
        </a>
      </div>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          {t("periodFrom")}
          <input
            type="date"
            name="from"
            value={from}
            onChange={(e) => setFrom(e.currentTarget.value)}
          />
        </label>
        <label>
          {t("periodTo")}
          <input type="date" name="to" value={to} onChange={(e) => setTo(e.currentTarget.value)} />
        </label>
        <label>
          {t("groupBy")}
          <select name="by" value={by} onChange={(e) => setBy(e.currentTarget.value as By)}>
            <option value="district">{t("district")}</option>
            <option value="street">{t("street")}</option>
            <option value="team">{t("team")}</option>
          </select>
        </label>
      </form>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {report !== undefined && (
        <div class="table-wrap">
          <table class="list report" data-testid="report">
            <thead>
              <tr>
                <th>{t(by)}</th>
                <th>{t("received")}</th>
                <th>{t("dispatchedOnTime")}</th>
                <th>{t("handledOnTime")}</th>
                <th>{t("closedCount")}</th>
                <th>{t("falsePositives")}</th>
                <th>{t("overdue")}</th>
                <th>{t("reopened")}</th>
                <th>{t("handlingHours")}</th>
                <th>{t("repeatOffenders")}</th>
              </tr>
            </thead>
            <tbody>
              {[...rows, { ...report.totals, group: t("totals") }].map((r, i) => {
                const onTime = pct(r.handledOnTime, r.received);
                return (
                  <tr key={`${r.group ?? "—"}-${i}`} class={i === rows.length ? "totals" : ""}>
                    <td data-label={t(by)}>
                      <strong>{r.group ?? "—"}</strong>
                    </td>
                    <td data-label={t("received")}>{r.received}</td>
                    <td data-label={t("dispatchedOnTime")}>
                      {r.dispatchedOnTime}/{r.received}
                    </td>
                    <td data-label={t("handledOnTime")}>
                      {r.handledOnTime}/{r.received}
                      <svg
                        class="bar"
                        viewBox="0 0 100 8"
                        preserveAspectRatio="none"
                        aria-hidden="true"
                      >
                        <rect x="0" y="0" width="100" height="8" fill="#e5e9f0" />
                        <rect x="0" y="0" width={onTime ?? 0} height="8" fill="#1e7a3c" />
                      </svg>
                      <span class="muted small">{onTime === undefined ? "—" : `${onTime}%`}</span>
                    </td>
                    <td data-label={t("closedCount")}>{r.closed}</td>
                    <td data-label={t("falsePositives")}>
                      {r.closedFalsePositive}
                      {r.falsePositiveRate === null
                        ? ""
                        : ` (${Math.round(r.falsePositiveRate * 100)}%)`}
                    </td>
                    <td data-label={t("overdue")}>{r.overdue}</td>
                    <td data-label={t("reopened")}>{r.reopened}</td>
                    <td data-label={t("handlingHours")}>
                      {r.averageHandlingHours.calendar === null
                        ? "—"
                        : r.averageHandlingHours.calendar.toFixed(1)}
                    </td>
                    <td data-label={t("repeatOffenders")}>{r.repeatOffenders}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
