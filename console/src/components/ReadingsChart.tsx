import { useEffect, useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { t } from "../i18n.js";
import { TimePlot } from "./TimePlot.js";

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

export function ReadingsChart(props: {
  deviceId: string;
  fromMs: number;
  toMs: number;
  limit: number | undefined;
  quantityHint?: string | undefined;
}) {
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

  // The same arrays while the readings and the quantity stay (the plot is drawn again on a change).
  const series = useMemo(
    () => ({
      xs: data?.readings.map((r) => Date.parse(r.ts) / 1_000) ?? [],
      ys:
        data?.readings.map((r) => {
          const v = chosen === undefined ? undefined : r.values[chosen];
          return typeof v === "number" ? v : null;
        }) ?? [],
    }),
    [data, chosen],
  );

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
      {chosen !== undefined && (
        <TimePlot
          xs={series.xs}
          ys={series.ys}
          label={chosen}
          fromMs={props.fromMs}
          toMs={props.toMs}
          limit={props.limit}
        />
      )}
    </div>
  );
}
