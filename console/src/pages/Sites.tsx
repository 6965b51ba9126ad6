import type { SiteSummary } from "../../../contracts/model/api.js";
import type { CreditRecordRow, RepeatOffenderStatus } from "../../../contracts/model/tasks.js";
import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { loadDevices, loadSites } from "../devices.js";
import { t, tk } from "../i18n.js";
import { onLink } from "../router.js";
import { formatLocal } from "../time.js";

/*
 * Sites and their parties (issue #19 item 6): every registered site with its type, area, devices
 * and regulated party (as the party records resolve it), and, on a click, the party's credit
 * record across its sites (GET /api/v1/parties/{key}/record: each case outcome, and whether the
 * party is a repeat offender in the graduated-response period).
 */

interface PartyRecord {
  key: string;
  status: RepeatOffenderStatus;
  rows: CreditRecordRow[];
}

function Record(props: { recordKey: string }) {
  const [record, setRecord] = useState<PartyRecord | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    api<PartyRecord>("GET", `/api/v1/parties/${encodeURIComponent(props.recordKey)}/record`).then(
      setRecord,
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
  }, [props.recordKey]);
  if (error !== undefined) return <p class="error">{error}</p>;
  if (record === undefined) return <p class="loading">{t("loading")}</p>;
  const { status } = record;
  return (
    <div class="credit-record" data-testid="credit-record">
      <p class={status.repeatOffender ? "error" : "muted"} data-testid="repeat-status">
        {t(status.repeatOffender ? "repeatYes" : "repeatNo", {
          n: status.violations,
          days: status.periodDays,
        })}
      </p>
      {record.rows.length === 0 ? (
        <p class="muted">{t("recordNone")}</p>
      ) : (
        <table class="list">
          <tbody>
            {record.rows.map((row) => (
              <tr key={`${row.taskId}-${row.outcome}-${row.at}`}>
                <td>{formatLocal(row.at)}</td>
                <td>
                  <strong>{tk("o", row.outcome)}</strong>
                </td>
                <td>
                  <a
                    href={`/tasks/${encodeURIComponent(row.taskId)}`}
                    onClick={onLink(`/tasks/${encodeURIComponent(row.taskId)}`)}
                  >
                    {row.taskId}
                  </a>
                </td>
                <td class="small">{row.detail}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function Sites() {
  const [sites, setSites] = useState<SiteSummary[] | undefined>(undefined);
  const [counts, setCounts] = useState<Map<string, number>>(new Map());
  const [open, setOpen] = useState<string | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    loadSites().then(setSites, (e: unknown) =>
      setError(e instanceof Error ? e.message : String(e)),
    );
    loadDevices().then(
      (devices) => {
        const n = new Map<string, number>();
        for (const d of devices) n.set(d.siteId, (n.get(d.siteId) ?? 0) + 1);
        setCounts(n);
      },
      () => undefined,
    );
  }, []);

  return (
    <section class="sites" aria-labelledby="sites-title">
      <div class="page-head">
        <h1 id="sites-title">{t("sitesTitle")}</h1>
        {sites !== undefined && <span class="count">{t("sitesCount", { n: sites.length })}</span>}
      </div>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {sites === undefined ? (
        <p class="loading">{t("loading")}</p>
      ) : (
        <div class="table-wrap">
          <table class="list" data-testid="sites">
            <thead>
              <tr>
                <th>{t("site")}</th>
                <th>{t("kind")}</th>
                <th>{t("area")}</th>
                <th>{t("devices")}</th>
                <th>{t("party")}</th>
              </tr>
            </thead>
            <tbody>
              {sites.map((s) => (
                <Fragment key={s.id}>
                  <tr data-site={s.id}>
                    <td data-label={t("site")}>
                      <strong>{s.name}</strong>
                      <div class="muted small">{s.id}</div>
                    </td>
                    <td data-label={t("kind")}>{tk("site", s.type)}</td>
                    <td data-label={t("area")}>
                      {s.area.district} · {s.area.street ?? ""} · {s.area.gridCell}
                    </td>
                    <td data-label={t("devices")}>{counts.get(s.id) ?? 0}</td>
                    <td data-label={t("party")}>
                      {s.party === undefined ? (
                        "—"
                      ) : (
                        <>
                          {s.party.name}
                          <div class="muted small">{s.party.creditCode ?? t("noCreditCode")}</div>
                          <button
                            type="button"
                            class="secondary small"
                            data-testid="show-record"
                            aria-expanded={open === s.id}
                            onClick={() => setOpen(open === s.id ? undefined : s.id)}
                          >
                            {t("creditRecord")}
                          </button>
                        </>
                      )}
                    </td>
                  </tr>
                  {open === s.id && s.party !== undefined && (
                    <tr class="record-row">
                      <td colSpan={5}>
                        <Record recordKey={s.party.recordKey} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
