import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api } from "../api.js";
import { t } from "../i18n.js";
import { isNightHour, localParts, TIME_ZONE } from "../time.js";

/*
 * The readings around an event (GET /api/v1/devices/{id}/readings), drawn with uPlot: the
 * quantity the rule judges, the limit as a dashed red line, the night period (22:00–06:00 local)
 * shaded, times on the axis in the site's zone.
 */

interface Readings {
  deviceId: string;
  kind: string;
  readings: Array<{ ts: string; quality: string; values: Record<string, number | boolean> }>;
}

/** The quantity each kind's rules judge first. */
const MAIN: Record<string, string> = {
  noise: "LAeq",
  dust: "pm10",
  cooking_fume: "oilFume",
  water_level: "stage",
  utility_tunnel: "ch4",
};

/** The night periods (local 22:00–06:00) that meet [from, to], in seconds. */
function nights(fromS: number, toS: number): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  let start: number | undefined;
  // Hour by hour from the hour before `from`: offsets in China are whole hours.
  for (let s = Math.floor(fromS / 3_600) * 3_600; s <= toS + 3_600; s += 3_600) {
    const night = isNightHour(localParts(s * 1_000).hour);
    if (night && start === undefined) start = s;
    if (!night && start !== undefined) {
      spans.push([start, s]);
      start = undefined;
    }
  }
  if (start !== undefined) spans.push([start, toS + 3_600]);
  return spans;
}

export function ReadingsChart(props: {
  deviceId: string;
  fromMs: number;
  toMs: number;
  limit: number | undefined;
  quantityHint?: string | undefined;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [data, setData] = useState<Readings | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [quantity, setQuantity] = useState<string | undefined>(undefined);

  useEffect(() => {
    const query = new URLSearchParams({
      from: new Date(props.fromMs).toISOString(),
      to: new Date(props.toMs).toISOString(),
      limit: "10000",
    });
    api<Readings>(
      "GET",
      `/api/v1/devices/${encodeURIComponent(props.deviceId)}/readings?${query.toString()}`,
    ).then(setData, (e: unknown) => setError(e instanceof Error ? e.message : String(e)));
  }, [props.deviceId, props.fromMs, props.toMs]);

  const quantities =
    data === undefined
      ? []
      : [
          ...new Set(
            data.readings.flatMap((r) =>
              Object.entries(r.values)
                .filter(([, v]) => typeof v === "number")
                .map(([k]) => k),
            ),
          ),
        ];
  const chosen =
    quantity ??
    (props.quantityHint !== undefined && quantities.includes(props.quantityHint)
      ? props.quantityHint
      : undefined) ??
    (data !== undefined && quantities.includes(MAIN[data.kind] ?? "")
      ? MAIN[data.kind]
      : quantities[0]);

  useEffect(() => {
    const el = box.current;
    if (el === null || data === undefined || chosen === undefined) return;
    const xs: number[] = [];
    const ys: Array<number | null> = [];
    for (const r of data.readings) {
      const v = r.values[chosen];
      xs.push(Date.parse(r.ts) / 1_000);
      ys.push(typeof v === "number" ? v : null);
    }
    const limit = props.limit;
    const fromS = props.fromMs / 1_000;
    const toS = props.toMs / 1_000;
    const spans = nights(fromS, toS);
    const width = Math.max(280, el.clientWidth);
    const plot = new uPlot(
      {
        width,
        height: 240,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1_000), TIME_ZONE),
        scales: {
          x: { time: true, min: fromS, max: toS },
          y: {
            range: (_u, min, max) => {
              const lo = Math.min(min, limit ?? min);
              const hi = Math.max(max, limit ?? max);
              const pad = (hi - lo) * 0.1 || 1;
              return [lo - pad, hi + pad];
            },
          },
        },
        series: [
          {},
          { label: chosen, stroke: "#1d4ed8", width: 2, spanGaps: false, points: { size: 4 } },
        ],
        axes: [
          {
            // 24-hour local times; the date under the first tick and where the day changes.
            values: (_u, splits) =>
              splits.map((s, i) => {
                const p = localParts(s * 1_000);
                const before = i === 0 ? undefined : localParts((splits[i - 1] ?? s) * 1_000);
                const time = p.time.slice(0, 5);
                return before === undefined || before.date !== p.date
                  ? `${time}\n${p.date.slice(5)}`
                  : time;
              }),
          },
          {},
        ],
        legend: { show: true },
        hooks: {
          draw: [
            (u: uPlot) => {
              if (limit === undefined) return;
              // The limit across the whole range, dashed red, with its value.
              const y = u.valToPos(limit, "y", true);
              const ctx = u.ctx;
              ctx.save();
              ctx.strokeStyle = "#dc2626";
              ctx.lineWidth = 1.5 * devicePixelRatio;
              ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
              ctx.beginPath();
              ctx.moveTo(u.bbox.left, y);
              ctx.lineTo(u.bbox.left + u.bbox.width, y);
              ctx.stroke();
              ctx.fillStyle = "#dc2626";
              ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
              ctx.fillText(`${t("limitLine")} ${limit}`, u.bbox.left + 6, y - 6);
              ctx.restore();
            },
          ],
          drawClear: [
            (u: uPlot) => {
              const ctx = u.ctx;
              ctx.save();
              ctx.fillStyle = "rgba(30, 41, 82, 0.10)";
              for (const [a, b] of spans) {
                const x0 = u.valToPos(Math.max(a, fromS), "x", true);
                const x1 = u.valToPos(Math.min(b, toS), "x", true);
                if (x1 > x0) ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
              }
              ctx.restore();
            },
          ],
        },
      },
      [xs, ys] as uPlot.AlignedData,
      el,
    );
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(280, el.clientWidth), height: 240 }),
    );
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [data, chosen, props.limit, props.fromMs, props.toMs]);

  if (error !== undefined) return <p class="error">{error}</p>;
  if (data === undefined) return <p class="muted">{t("loading")}</p>;
  if (data.readings.length === 0) return <p class="muted">{t("readingsNone")}</p>;
  return (
    <div class="chart">
      <div class="chart-head">
        <span>
          {t("device")} {props.deviceId}
        </span>
        {quantities.length > 1 && (
          <label>
            {t("quantity")}{" "}
            <select value={chosen} onChange={(e) => setQuantity(e.currentTarget.value)}>
              {quantities.map((q) => (
                <option value={q}>{q}</option>
              ))}
            </select>
          </label>
        )}
        <span class="muted small">{t("nightShaded")}</span>
      </div>
      <div ref={box} class="chart-box" data-testid="chart" />
    </div>
  );
}
