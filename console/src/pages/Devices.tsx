import type { DeviceCredentials, DeviceState, SiteSummary } from "../../../contracts/model/api.js";
import type { User } from "../../../contracts/model/people.js";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "../api.js";
import { Confirm } from "../components/Confirm.js";
import { useNow } from "../components/Countdown.js";
import {
  calibration,
  deviceStatus,
  latestReadings,
  loadDevices,
  loadSites,
  mosquittoPub,
  type Reading,
  valuesLine,
} from "../devices.js";
import { t, tk } from "../i18n.js";
import { onLink } from "../router.js";
import { formatLocal } from "../time.js";

/*
 * Devices (issue #19 item 6): every registered device with its online state, last reading and its
 * quality, and when its calibration falls due (a warning once expired or within 30 days). An admin
 * adds a device (its secret shown once, with a mosquitto_pub line that sends a reading as it),
 * rotates a secret, disables and enables a device: POST /api/v1/devices, POST
 * /api/v1/devices/{id}/secret, PATCH /api/v1/devices/{id} (docs/api.md section 17). The secret
 * lives only in this page's state until "I have stored it": nothing keeps it.
 */

const KINDS = ["noise", "dust", "cooking_fume", "water_level", "utility_tunnel"] as const;

type Pending = { action: "rotate" | "disable" | "enable"; id: string };

function SecretPanel(props: { issued: DeviceCredentials; kind: string; onClose: () => void }) {
  const { issued } = props;
  const [copied, setCopied] = useState<string | undefined>(undefined);
  const line = mosquittoPub({
    host: location.hostname,
    port: issued.mqtt.port,
    deviceId: issued.deviceId,
    kind: props.kind,
    secret: issued.secret,
    topic: issued.mqtt.dataTopic,
    now: Date.now(),
  });
  const copy = (what: string, text: string) => {
    void navigator.clipboard?.writeText(text).then(
      () => setCopied(what),
      () => setCopied(undefined),
    );
  };
  return (
    <section class="secret card" data-testid="secret-panel" aria-live="polite">
      <h2>{t("secretTitle", { id: issued.deviceId })}</h2>
      <p class="warn">{t("secretOnce")}</p>
      <div class="secret-line">
        <code data-testid="secret">{issued.secret}</code>
        <button type="button" class="secondary small" onClick={() => copy("secret", issued.secret)}>
          {copied === "secret" ? t("copied") : t("copy")}
        </button>
      </div>
      <p>{t("mqttTry")}</p>
      <pre data-testid="mqtt-line">{line}</pre>
      <div class="buttons">
        <button type="button" class="secondary small" onClick={() => copy("line", line)}>
          {copied === "line" ? t("copied") : t("copy")}
        </button>
        <button type="button" class="primary" data-testid="secret-stored" onClick={props.onClose}>
          {t("secretStored")}
        </button>
      </div>
    </section>
  );
}

function AddDevice(props: {
  sites: SiteSummary[];
  onAdded: (issued: DeviceCredentials, kind: string) => void;
  onCancel: () => void;
}) {
  const first = props.sites[0];
  const [form, setForm] = useState({
    id: "",
    kind: "noise",
    siteId: first?.id ?? "",
    model: "",
    serial: "",
    lat: String(first?.location.lat ?? ""),
    lon: String(first?.location.lon ?? ""),
    calibrationDueOn: "",
    interval: "60",
  });
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const set = (key: keyof typeof form) => (e: Event) => {
    const value = (e.currentTarget as HTMLInputElement).value;
    setForm((f) => {
      if (key !== "siteId") return { ...f, [key]: value };
      const site = props.sites.find((s) => s.id === value);
      return {
        ...f,
        siteId: value,
        lat: String(site?.location.lat ?? f.lat),
        lon: String(site?.location.lon ?? f.lon),
      };
    });
  };
  const submit = (e: Event) => {
    e.preventDefault();
    const site = props.sites.find((s) => s.id === form.siteId);
    setBusy(true);
    setError(undefined);
    api<DeviceCredentials>("POST", "/api/v1/devices", {
      id: form.id.trim(),
      kind: form.kind,
      siteId: form.siteId,
      model: form.model.trim(),
      serial: form.serial.trim(),
      location: { lat: Number(form.lat), lon: Number(form.lon) },
      area: site?.area,
      ...(form.calibrationDueOn === "" ? {} : { calibrationDueOn: form.calibrationDueOn }),
      expectedIntervalS: Number(form.interval),
    }).then(
      (issued) => props.onAdded(issued, form.kind),
      (err: unknown) => {
        setBusy(false);
        setError(
          err instanceof ApiError
            ? `${t("refused", { status: err.status })}: ${err.message}${err.problems.map((p) => ` · ${p.path}: ${p.message}`).join("")}`
            : String(err),
        );
      },
    );
  };
  const field = (key: keyof typeof form, label: string, extra: Record<string, string> = {}) => (
    <label>
      {label}
      <input name={key} value={form[key]} onInput={set(key)} required {...extra} />
    </label>
  );
  return (
    <form class="add-device card" onSubmit={submit} data-testid="add-device-form">
      <h2>{t("addDevice")}</h2>
      <div class="grid-form">
        {field("id", t("deviceId"), { pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]*" })}
        <label>
          {t("kind")}
          <select name="kind" value={form.kind} onChange={set("kind")}>
            {KINDS.map((k) => (
              <option key={k} value={k}>
                {tk("sk", k)}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("site")}
          <select name="siteId" value={form.siteId} onChange={set("siteId")}>
            {props.sites.map((s) => (
              <option key={s.id} value={s.id}>
                {s.name} ({s.id})
              </option>
            ))}
          </select>
        </label>
        {field("model", t("model"))}
        {field("serial", t("serial"))}
        {field("lat", t("lat"), { inputmode: "decimal" })}
        {field("lon", t("lon"), { inputmode: "decimal" })}
        <label>
          {t("calibrationDue")}
          <input
            type="date"
            name="calibrationDueOn"
            value={form.calibrationDueOn}
            onInput={set("calibrationDueOn")}
          />
        </label>
        {field("interval", t("interval"), { type: "number", min: "1", max: "86400" })}
      </div>
      {error !== undefined && (
        <p class="error" role="alert" data-testid="add-error">
          {error}
        </p>
      )}
      <div class="buttons">
        <button type="button" class="secondary" onClick={props.onCancel}>
          {t("cancel")}
        </button>
        <button type="submit" class="primary" disabled={busy} data-testid="register">
          {t("register")}
        </button>
      </div>
    </form>
  );
}

export function Devices(props: { user: User }) {
  const admin = props.user.roles.includes("admin");
  const now = useNow();
  const [devices, setDevices] = useState<DeviceState[] | undefined>(undefined);
  const [sites, setSites] = useState<SiteSummary[]>([]);
  const [latest, setLatest] = useState<Map<string, Reading>>(new Map());
  const [error, setError] = useState<string | undefined>(undefined);
  const [adding, setAdding] = useState(false);
  const [issued, setIssued] = useState<{ c: DeviceCredentials; kind: string } | undefined>();
  const [pending, setPending] = useState<Pending | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [actError, setActError] = useState<string | undefined>(undefined);

  const load = () =>
    Promise.all([loadDevices(), loadSites()]).then(
      ([d, s]) => {
        setDevices(d);
        setSites(s);
        // Only devices seen have readings (no 404 for the others).
        void latestReadings(d.filter((x) => x.lastSeen !== null).map((x) => x.id)).then(setLatest);
      },
      (err: unknown) => setError(err instanceof Error ? err.message : String(err)),
    );
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 30_000);
    return () => clearInterval(timer);
  }, []);

  const siteName = new Map(sites.map((s) => [s.id, s.name]));
  const kindOf = (id: string) => devices?.find((d) => d.id === id)?.kind ?? "";

  const act = () => {
    if (pending === undefined) return;
    setBusy(true);
    setActError(undefined);
    const id = encodeURIComponent(pending.id);
    const done =
      pending.action === "rotate"
        ? api<DeviceCredentials>("POST", `/api/v1/devices/${id}/secret`).then((c) =>
            setIssued({ c, kind: kindOf(pending.id) }),
          )
        : api("PATCH", `/api/v1/devices/${id}`, { enabled: pending.action === "enable" });
    void done.then(
      () => {
        setBusy(false);
        setPending(undefined);
        void load();
      },
      (err: unknown) => {
        setBusy(false);
        setActError(
          err instanceof ApiError
            ? `${t("refused", { status: err.status })}: ${err.message}`
            : String(err),
        );
      },
    );
  };

  return (
    <section class="devices" aria-labelledby="devices-title">
      <div class="page-head">
        <h1 id="devices-title">{t("devicesTitle")}</h1>
        {devices !== undefined && (
          <span class="count" data-testid="device-count">
            {t("devicesCount", { n: devices.length })}
          </span>
        )}
        <a href="/dead-letters" onClick={onLink("/dead-letters")} data-testid="dead-letters-link">
          {t("deadLetters")}
        </a>
        {admin ? (
          !adding && (
            <button
              type="button"
              class="primary"
              data-testid="add-device"
              onClick={() => {
                setIssued(undefined);
                setAdding(true);
              }}
            >
              {t("addDevice")}
            </button>
          )
        ) : (
          <span class="muted small">{t("adminOnly")}</span>
        )}
      </div>
      {issued !== undefined && (
        <SecretPanel issued={issued.c} kind={issued.kind} onClose={() => setIssued(undefined)} />
      )}
      {adding && (
        <AddDevice
          sites={sites}
          onCancel={() => setAdding(false)}
          onAdded={(c, kind) => {
            setAdding(false);
            setIssued({ c, kind });
            void load();
          }}
        />
      )}
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {devices === undefined ? (
        <p class="loading">{t("loading")}</p>
      ) : devices.length === 0 ? (
        <p class="empty">{t("noDevices")}</p>
      ) : (
        <div class="table-wrap">
          <table class="list" data-testid="devices">
            <thead>
              <tr>
                <th>{t("deviceId")}</th>
                <th>{t("kind")}</th>
                <th>{t("site")}</th>
                <th>{t("status")}</th>
                <th>{t("lastReading")}</th>
                <th>{t("quality")}</th>
                <th>{t("calibrationDue")}</th>
                {admin && <th>{t("actions")}</th>}
              </tr>
            </thead>
            <tbody>
              {devices.map((d) => {
                const status = deviceStatus(d, []);
                const reading = latest.get(d.id);
                const cal = calibration(d.calibrationDueOn, now);
                return (
                  <tr key={d.id} data-device={d.id} data-status={status}>
                    <td data-label={t("deviceId")}>
                      <a
                        href={`/devices/${encodeURIComponent(d.id)}`}
                        onClick={onLink(`/devices/${encodeURIComponent(d.id)}`)}
                        class="device-link"
                      >
                        <strong>{d.id}</strong>
                      </a>
                      <div class="muted small">{d.model}</div>
                    </td>
                    <td data-label={t("kind")}>{tk("sk", d.kind)}</td>
                    <td data-label={t("site")}>
                      {siteName.get(d.siteId) ?? d.siteId}
                      <div class="muted small">
                        {d.area.district} · {d.area.street ?? ""} · {d.area.gridCell}
                      </div>
                    </td>
                    <td data-label={t("status")}>
                      <span class={`dot ${status}`} aria-hidden="true" />
                      {tk("st", status)}
                      <div class="muted small">
                        {t("lastSeen")} {d.lastSeen === null ? "—" : formatLocal(d.lastSeen)}
                      </div>
                    </td>
                    <td data-label={t("lastReading")}>
                      {reading === undefined ? (
                        <span class="muted">{t("noReading")}</span>
                      ) : (
                        <>
                          <span>{valuesLine(reading)}</span>
                          <div class="muted small">{formatLocal(reading.ts)}</div>
                        </>
                      )}
                    </td>
                    <td data-label={t("quality")}>
                      {reading === undefined ? (
                        "—"
                      ) : (
                        <span class={`quality ${reading.quality}`}>{tk("q", reading.quality)}</span>
                      )}
                    </td>
                    <td data-label={t("calibrationDue")}>
                      <span class={`cal ${cal}`} data-testid="calibration">
                        {d.calibrationDueOn ?? t("calNone")}
                        {cal === "expired" && ` ⚠ ${t("calExpired")}`}
                        {cal === "soon" && ` · ${t("calSoon")}`}
                      </span>
                    </td>
                    {admin && (
                      <td data-label={t("actions")} class="row-actions">
                        <button
                          type="button"
                          class="secondary small"
                          data-device-action="rotate"
                          onClick={() => setPending({ action: "rotate", id: d.id })}
                        >
                          {t("rotateSecret")}
                        </button>
                        <button
                          type="button"
                          class="secondary small"
                          data-device-action={d.enabled ? "disable" : "enable"}
                          onClick={() =>
                            setPending({ action: d.enabled ? "disable" : "enable", id: d.id })
                          }
                        >
                          {d.enabled ? t("disable") : t("enable")}
                        </button>
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {pending !== undefined && (
        <Confirm
          title={t(
            pending.action === "rotate"
              ? "rotateConfirm"
              : pending.action === "disable"
                ? "disableConfirm"
                : "enableConfirm",
            { id: pending.id },
          )}
          busy={busy}
          error={actError}
          onConfirm={act}
          onCancel={() => {
            setPending(undefined);
            setActError(undefined);
          }}
        />
      )}
    </section>
  );
}
