import type { DeviceState, MapSettings, SiteSummary } from "../../../contracts/model/api.js";
import type { User } from "../../../contracts/model/people.js";
import type { Task } from "../../../contracts/model/tasks.js";
import * as L from "leaflet";
import "leaflet/dist/leaflet.css";
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api.js";
import { deviceStatus, type DeviceStatus, loadDevices, loadSites, siteStatus } from "../devices.js";
import { t, tk } from "../i18n.js";
import { subscribeTasks } from "../live.js";
import { navigate, onLink } from "../router.js";
import { loadTasks, NO_FILTERS } from "../tasks.js";

/*
 * The map (issue #19 item 5), a chunk of its own loaded when the page opens (Leaflet stays out
 * of the first load): sites and devices coloured by status (alarm, maintenance, offline, online,
 * standby, disabled: console/src/devices.ts), the open tasks beside it, live from the task
 * stream. The base is the configured tile service (`console.map.tileUrl`: Tianditu, a city GIS)
 * when there is one, and always the districts, streets and grid cells of the registry's GeoJSON
 * (`console.map.areas`), so the map works with no tile server at all.
 */

const COLOURS: Record<DeviceStatus, string> = {
  alarm: "#c62828",
  maintenance: "#b98900",
  offline: "#6b7280",
  online: "#1e7a3c",
  standby: "#8aa2c0",
  disabled: "#111827",
};
const LEGEND: readonly DeviceStatus[] = [
  "alarm",
  "maintenance",
  "offline",
  "online",
  "standby",
  "disabled",
];

interface Data {
  settings: MapSettings;
  sites: SiteSummary[];
  devices: DeviceState[];
}

const text = (tag: string, content: string, cls?: string): HTMLElement => {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls !== undefined) el.className = cls;
  return el;
};

export function MapPage(props: { user: User }) {
  void props.user;
  const box = useRef<HTMLDivElement>(null);
  const map = useRef<L.Map | undefined>(undefined);
  const layer = useRef<L.LayerGroup | undefined>(undefined);
  const [data, setData] = useState<Data | undefined>(undefined);
  const [tasks, setTasks] = useState<Map<string, Task>>(new Map());
  const [error, setError] = useState<string | undefined>(undefined);

  useEffect(() => {
    Promise.all([api<MapSettings>("GET", "/api/v1/map"), loadSites(), loadDevices()]).then(
      ([settings, sites, devices]) => setData({ settings, sites, devices }),
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
    const reload = () =>
      loadTasks({ ...NO_FILTERS, state: "open" }).then(
        (list) => setTasks(new Map(list.map((task) => [task.id, task]))),
        () => undefined,
      );
    void reload();
    return subscribeTasks(
      (event) => setTasks((before) => new Map(before).set(event.task.id, event.task)),
      () => undefined,
      () => void reload(),
    );
  }, []);

  // The map and its base, once.
  useEffect(() => {
    if (data === undefined || box.current === null || map.current !== undefined) return;
    const m = L.map(box.current, { zoomControl: true, attributionControl: true });
    m.attributionControl.setPrefix(false);
    const tiles = data.settings.tiles;
    if (tiles !== null) {
      L.tileLayer(tiles.url, {
        subdomains: tiles.subdomains,
        maxZoom: tiles.maxZoom,
        attribution: tiles.attribution,
      }).addTo(m);
    }
    const areas = L.geoJSON(data.settings.areas, {
      style: (feature) => {
        const kind = (feature?.properties as { kind?: string } | undefined)?.kind;
        return kind === "district"
          ? {
              color: "#0f3d75",
              weight: 2,
              fill: tiles === null,
              fillColor: "#eef2f7",
              fillOpacity: 1,
            }
          : kind === "street"
            ? { color: "#5b6677", weight: 1, dashArray: "4 4", fill: false }
            : { color: "#1d5fbf", weight: 1, fillColor: "#dbe7f7", fillOpacity: 0.5 };
      },
      onEachFeature: (feature, shape) => {
        const p = feature.properties as { kind?: string; name?: string } | undefined;
        if (p?.name !== undefined)
          shape.bindTooltip(p.name, {
            permanent: p.kind === "grid",
            direction: "right",
            offset: [16, 0],
            className: `area-label ${p.kind ?? ""}`,
          });
      },
    }).addTo(m);
    const points = data.sites.map((s) => L.latLng(s.location.lat, s.location.lon));
    const bounds = areas.getBounds();
    for (const p of points) bounds.extend(p);
    if (bounds.isValid()) m.fitBounds(bounds, { padding: [20, 20] });
    else m.setView([30.66, 104.08], 13);
    layer.current = L.layerGroup().addTo(m);
    map.current = m;
    return () => {
      m.remove();
      map.current = undefined;
    };
  }, [data]);

  // The sites and devices, drawn again when a task changes.
  const open = [...tasks.values()].filter((task) => task.state !== "closed");
  useEffect(() => {
    const group = layer.current;
    if (data === undefined || group === undefined) return;
    group.clearLayers();
    for (const d of data.devices) {
      const status = deviceStatus(d, open);
      L.circleMarker([d.location.lat, d.location.lon], {
        radius: 4,
        color: "#fff",
        weight: 1,
        fillColor: COLOURS[status],
        fillOpacity: 1,
        className: `device status-${status}`,
      })
        .bindTooltip(`${d.id} · ${tk("st", status)}`)
        .addTo(group);
    }
    for (const s of data.sites) {
      const status = siteStatus(s, data.devices, open);
      const here = open.filter((task) => task.siteId === s.id || task.affectedSites.includes(s.id));
      const popup = document.createElement("div");
      popup.className = "map-popup";
      popup.append(text("strong", s.name), text("div", `${s.id} · ${tk("st", status)}`, "muted"));
      for (const task of here) {
        const a = text("a", `${task.id} · ${task.title}`);
        a.setAttribute("href", `/tasks/${encodeURIComponent(task.id)}`);
        a.addEventListener("click", (e) => {
          e.preventDefault();
          navigate(`/tasks/${encodeURIComponent(task.id)}`);
        });
        popup.append(a);
      }
      L.circleMarker([s.location.lat, s.location.lon], {
        radius: status === "alarm" ? 13 : 10,
        color: COLOURS[status],
        weight: 3,
        fillColor: COLOURS[status],
        fillOpacity: 0.25,
        className: `site site-${s.id} status-${status}`,
      })
        .bindPopup(popup)
        .bindTooltip(`${s.name} · ${tk("st", status)}`)
        .addTo(group);
    }
  }, [data, tasks]);

  const siteName = new Map(data?.sites.map((s) => [s.id, s.name]) ?? []);
  return (
    <section class="map-page" aria-labelledby="map-title">
      <div class="page-head">
        <h1 id="map-title">{t("mapTitle")}</h1>
        <span class="muted small" data-testid="map-base">
          {data === undefined
            ? ""
            : data.settings.tiles === null
              ? t("mapBaseAreas")
              : t("mapBaseTiles")}
        </span>
      </div>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="map-layout">
        <div class="map-box" ref={box} data-testid="map" />
        <aside class="map-side">
          <h2>{t("mapLegend")}</h2>
          <ul class="legend">
            {LEGEND.map((s) => (
              <li key={s}>
                <span class="swatch" data-status={s} />
                {tk("st", s)}
              </li>
            ))}
          </ul>
          <h2>
            {t("openTasks")} ({open.length})
          </h2>
          <ul class="map-tasks" data-testid="map-tasks">
            {open.slice(0, 200).map((task) => (
              <li key={task.id}>
                <span class={`badge kind ${task.kind}`}>{tk("k", task.kind)}</span>{" "}
                <a
                  href={`/tasks/${encodeURIComponent(task.id)}`}
                  onClick={onLink(`/tasks/${encodeURIComponent(task.id)}`)}
                >
                  {task.title}
                </a>
                <div class="muted small">
                  {task.id} ·{" "}
                  {task.siteId === undefined ? "—" : (siteName.get(task.siteId) ?? task.siteId)}
                </div>
              </li>
            ))}
          </ul>
        </aside>
      </div>
    </section>
  );
}
