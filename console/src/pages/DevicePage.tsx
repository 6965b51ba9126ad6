import type { DeviceState } from "../../../contracts/model/api.js";
import { useEffect, useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { DeadLetters } from "../components/DeadLetters.js";
import { TimePlot } from "../components/TimePlot.js";
import {
  calibration,
  deviceStatus,
  latestReadings,
  loadDevices,
  type Reading,
} from "../devices.js";
import { t, tk } from "../i18n.js";
import { onLink } from "../router.js";
import { formatLocal } from "../time.js";

/*
 * One device (issue #19 item 6): what the registry and the ingest know of it, a chart of any of
 * its quantities over a range (the API's aggregates, GET /api/v1/devices/{id}/aggregate, so from
 * either store: the embedded one or InfluxDB), and its dead letters with reason and raw payload.
 */

/** The ranges offered, each with an interval that keeps the chart at 60–720 points. */
const RANGES = [
  ["1h", 3_600_000, "1m"],
  ["6h", 6 * 3_600_000, "5m"],
  ["24h", 86_400_000, "10m"],
  ["7d", 7 * 86_400_000, "1h"],
  ["30d", 30 * 86_400_000, "6h"],
] as const;
type Range = (typeof RANGES)[number][0];

interface Aggregate {
  quantity: string;
  fn: string;
  intervalMs: number;
  buckets: Array<{ ts: string; value: number | null }>;
}

/** dB(A) quantities are averaged by energy (GB 3096-2008), never arithmetically. */
const NOISE = new Set(["LAeq", "LAmax", "LAmin", "L10", "L50", "L90"]);

export function DevicePage(props: { id: string }) {
  const { id } = props;
  const [device, setDevice] = useState<DeviceState | null | undefined>(undefined);
  const [latest, setLatest] = useState<Reading | undefined>(undefined);
  const [range, setRange] = useState<Range>("24h");
  const [quantity, setQuantity] = useState<string | undefined>(undefined);
  const [fn, setFn] = useState<"mean" | "max">("mean");
  const [series, setSeries] = useState<Aggregate | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [toMs, setToMs] = useState(() => Date.now());

  useEffect(() => {
    loadDevices().then(
      (list) => setDevice(list.find((d) => d.id === id) ?? null),
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
    void latestReadings([id]).then(
      (m) => setLatest(m.get(id)),
      () => undefined,
    );
  }, [id]);

  const quantities = useMemo(
    () =>
      latest === undefined
        ? []
        : Object.entries(latest.values)
            .filter(([, v]) => typeof v === "number")
            .map(([k]) => k),
    [latest],
  );
  const chosen = quantity ?? quantities[0];
  const spec = RANGES.find((r) => r[0] === range) ?? RANGES[2];
  const fromMs = toMs - spec[1];

  useEffect(() => {
    if (chosen === undefined) return;
    const query = new URLSearchParams({
      quantity: chosen,
      fn: fn === "mean" && NOISE.has(chosen) ? "energy_mean" : fn,
      interval: spec[2],
      from: new Date(fromMs).toISOString(),
      to: new Date(toMs).toISOString(),
    });
    setSeries(undefined);
    api<Aggregate>(
      "GET",
      `/api/v1/devices/${encodeURIComponent(id)}/aggregate?${query.toString()}`,
    ).then(setSeries, (e: unknown) => setError(e instanceof Error ? e.message : String(e)));
  }, [id, chosen, fn, range, toMs]);

  const plot = useMemo(
    () => ({
      xs: series?.buckets.map((b) => Date.parse(b.ts) / 1_000) ?? [],
      ys: series?.buckets.map((b) => b.value) ?? [],
    }),
    [series],
  );

  if (device === null) return <p class="empty">{t("noDevices")}</p>;
  const status = device === undefined ? undefined : deviceStatus(device, []);
  return (
    <section class="device-page detail" aria-labelledby="device-title">
      <a href="/devices" class="back" onClick={onLink("/devices")}>
        ← {t("devicesTitle")}
      </a>
      <div class="detail-head">
        <h1 id="device-title">{id}</h1>
        {device !== undefined && status !== undefined && (
          <p>
            {tk("sk", device.kind)} · {device.model ?? ""} · <span class={`dot ${status}`} />
            {tk("st", status)} · {t("lastSeen")}{" "}
            {device.lastSeen === null ? "—" : formatLocal(device.lastSeen, { seconds: true })} ·{" "}
            {device.area.district} · {device.area.street ?? ""} · {device.area.gridCell} ·{" "}
            {t("calibrationDue")}{" "}
            <span class={`cal ${calibration(device.calibrationDueOn, Date.now())}`}>
              {device.calibrationDueOn ?? t("calNone")}
            </span>
          </p>
        )}
      </div>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <section class="panel" aria-labelledby="device-chart-title">
        <h2 id="device-chart-title">{t("readings")}</h2>
        {chosen === undefined ? (
          <p class="muted">{t("noReading")}</p>
        ) : (
          <>
            <div class="chart-head">
              <label>
                {t("quantity")}{" "}
                <select
                  name="quantity"
                  value={chosen}
                  onChange={(e) => setQuantity(e.currentTarget.value)}
                >
                  {quantities.map((q) => (
                    <option key={q} value={q}>
                      {q}
                    </option>
                  ))}
                </select>
              </label>
              <span class="ranges" role="group" aria-label={t("range")}>
                {RANGES.map(([name]) => (
                  <button
                    key={name}
                    type="button"
                    class={`small ${name === range ? "primary" : "secondary"}`}
                    aria-pressed={name === range}
                    data-range={name}
                    onClick={() => {
                      setRange(name);
                      setToMs(Date.now());
                    }}
                  >
                    {name}
                  </button>
                ))}
              </span>
              <label>
                {t("aggregate")}{" "}
                <select
                  name="fn"
                  value={fn}
                  onChange={(e) => setFn(e.currentTarget.value as "mean" | "max")}
                >
                  <option value="mean">{t("fnMean")}</option>
                  <option value="max">{t("fnMax")}</option>
                </select>
              </label>
              <span class="muted small">
                {t("perInterval", { interval: spec[2] })} · {t("nightShaded")}
              </span>
            </div>
            {series === undefined ? (
              <p class="loading">{t("loading")}</p>
            ) : (
              <TimePlot
                xs={plot.xs}
                ys={plot.ys}
                label={`${chosen} (${series.fn})`}
                fromMs={fromMs}
                toMs={toMs}
              />
            )}
          </>
        )}
      </section>
      <section class="panel" aria-labelledby="device-dl-title">
        <h2 id="device-dl-title">{t("deadLetters")}</h2>
        <DeadLetters deviceId={id} />
      </section>
    </section>
  );
}
