import type { PublicSummary } from "../../../contracts/model/public.js";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "../api.js";
import { t, tk, useLang } from "../i18n.js";
import { LangSwitch } from "../components/LangSwitch.js";
import { formatLocal } from "../time.js";

/*
 * The public page at /public (信息公开, issue #19 item 9): for anyone, without signing in, when
 * the deployment publishes it (`console.public.enabled`; off by default). The environment of the
 * last complete hour per district, case and alert counts of the last days, and where the
 * monitoring points are (GET /api/v1/public/summary, cli/runtime/public-api.ts). Only
 * aggregates: no party, person, site name or case number. Refreshed once a minute.
 */

const REFRESH_MS = 60_000;

export function Public() {
  useLang();
  const [summary, setSummary] = useState<PublicSummary | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [off, setOff] = useState(false);
  useEffect(() => {
    let stopped = false;
    const load = () =>
      api<PublicSummary>("GET", "/api/v1/public/summary").then(
        (s) => {
          if (stopped) return;
          setSummary(s);
          setError(undefined);
        },
        (e: unknown) => {
          if (stopped) return;
          if (e instanceof ApiError && e.status === 404) setOff(true);
          else setError(e instanceof Error ? e.message : String(e));
        },
      );
    void load();
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);

  const title =
    summary?.title === undefined || summary.title === "" ? t("publicTitle") : summary.title;
  return (
    <div class="shell public">
      <header class="top">
        <span class="brand">{title}</span>
        <LangSwitch />
        <a href="/" class="small">
          {t("publicSignIn")}
        </a>
      </header>
      <main>
        {off ? (
          <p class="muted" data-testid="public-off">
            {t("publicOff")}
          </p>
        ) : error !== undefined ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : summary === undefined ? (
          <p class="loading">{t("loading")}</p>
        ) : (
          <Figures summary={summary} />
        )}
      </main>
    </div>
  );
}

function Figures({ summary }: { summary: PublicSummary }) {
  const withReadings = summary.districts.filter((d) => d.readings.length > 0);
  const withCases = summary.districts.filter((d) => d.cases.length > 0);
  return (
    <>
      <section class="public-section" aria-labelledby="pub-readings">
        <h1 id="pub-readings">{t("publicReadings")}</h1>
        <p class="muted">
          {t("publicHour", {
            from: formatLocal(summary.hour.from),
            to: formatLocal(summary.hour.to, { zone: true }),
          })}
        </p>
        <div class="public-districts">
          {withReadings.map((d) => (
            <article class="card" key={d.district} data-district={d.district}>
              <h2>{d.district}</h2>
              <dl>
                {d.readings.map((r) => (
                  <div key={r.quantity} data-quantity={r.quantity}>
                    <dt>{tk("pq", r.quantity)}</dt>
                    <dd>
                      <strong data-testid="public-value">
                        {r.value === null ? t("publicNoValue") : `${r.value.toFixed(1)} ${r.unit}`}
                      </strong>{" "}
                      <span class="small muted">
                        {t("publicMonitorsCounted", { n: r.monitors, of: r.of })}
                      </span>
                    </dd>
                  </div>
                ))}
              </dl>
            </article>
          ))}
        </div>
        <p class="small muted">{t("publicReadingsNote")}</p>
      </section>

      <section class="public-section" aria-labelledby="pub-cases">
        <h2 id="pub-cases">{t("publicCases", { days: summary.cases.days })}</h2>
        {withCases.length === 0 ? (
          <p class="muted">{t("publicNoCases")}</p>
        ) : (
          <table class="list" data-testid="public-cases">
            <thead>
              <tr>
                <th scope="col">{t("district")}</th>
                <th scope="col">{t("kind")}</th>
                <th scope="col" class="num">
                  {t("publicCasesFiled")}
                </th>
                <th scope="col" class="num">
                  {t("publicCasesClosed")}
                </th>
                <th scope="col" class="num">
                  {t("publicAlerts")}
                </th>
              </tr>
            </thead>
            <tbody>
              {withCases.flatMap((d) =>
                d.cases.map((c) => (
                  <tr key={`${d.district}-${c.topic}`}>
                    <td data-label={t("district")}>{d.district}</td>
                    <td data-label={t("kind")}>{tk("sk", c.topic)}</td>
                    <td class="num" data-label={t("publicCasesFiled")}>
                      {c.casesFiled}
                    </td>
                    <td class="num" data-label={t("publicCasesClosed")}>
                      {c.casesClosed}
                    </td>
                    <td class="num" data-label={t("publicAlerts")}>
                      {c.alertsFiled}
                    </td>
                  </tr>
                )),
              )}
            </tbody>
          </table>
        )}
      </section>

      <section class="public-section" aria-labelledby="pub-monitors">
        <h2 id="pub-monitors">{t("publicMonitors")}</h2>
        <p class="small muted">{t("publicMonitorsNote")}</p>
        <table class="list" data-testid="public-monitors">
          <thead>
            <tr>
              <th scope="col">{t("district")}</th>
              <th scope="col">{t("street")}</th>
              <th scope="col">{t("kind")}</th>
              <th scope="col" class="num">
                {t("publicLat")}
              </th>
              <th scope="col" class="num">
                {t("publicLon")}
              </th>
            </tr>
          </thead>
          <tbody>
            {summary.monitors.map((m, i) => (
              <tr key={i}>
                <td data-label={t("district")}>{m.district}</td>
                <td data-label={t("street")}>{m.street ?? "—"}</td>
                <td data-label={t("kind")}>{tk("sk", m.kind)}</td>
                <td class="num" data-label={t("publicLat")}>
                  {m.lat.toFixed(4)}
                </td>
                <td class="num" data-label={t("publicLon")}>
                  {m.lon.toFixed(4)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <p class="small muted">
          {t("publicGenerated", { at: formatLocal(summary.generatedAt, { zone: true }) })}
        </p>
      </section>
    </>
  );
}
