import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { t } from "../i18n.js";
import { isNightHour, localParts, TIME_ZONE } from "../time.js";

/*
 * One quantity over time drawn with uPlot, as the task page and the device page show it: times on
 * the axis in the site's zone (24-hour, the date where the day changes), the night period
 * (22:00–06:00 local) shaded, and a limit, when given, as a dashed red line across the range.
 */

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

export function TimePlot(props: {
  /** Seconds since the epoch. */
  xs: readonly number[];
  ys: ReadonlyArray<number | null>;
  label: string;
  fromMs: number;
  toMs: number;
  limit?: number | undefined;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const { xs, ys } = props;
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
          {
            label: props.label,
            stroke: "#1d4ed8",
            width: 2,
            spanGaps: false,
            // Every point drawn while there are few: a reading between gaps is a point, not nothing.
            points: { size: 4, show: xs.length <= 720 },
          },
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
      [[...xs], [...ys]] as uPlot.AlignedData,
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
  }, [props.xs, props.ys, props.label, props.limit, props.fromMs, props.toMs]);
  return <div ref={box} class="chart-box" data-testid="chart" />;
}
