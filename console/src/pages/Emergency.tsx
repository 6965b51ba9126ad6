import type { DeviceState, SiteSummary } from "../../../contracts/model/api.js";
import type { User } from "../../../contracts/model/people.js";
import type { Task } from "../../../contracts/model/tasks.js";
import { useEffect, useState } from "preact/hooks";
import { beep, isSevere } from "../alarm.js";
import { AlarmBar } from "../components/AlarmBar.js";
import { api, ApiError } from "../api.js";
import { useNow } from "../components/Countdown.js";
import { latestReadings, loadDevices, loadSites, type Reading, valuesLine } from "../devices.js";
import { t, tk } from "../i18n.js";
import { subscribeTasks } from "../live.js";
import { onLink } from "../router.js";
import { actionsFor, loadTasks, NO_FILTERS } from "../tasks.js";
import { formatDuration, formatLocal } from "../time.js";

/*
 * The emergency board (issue #19 item 4) for emergency managers: every open emergency of their
 * scope grouped by level (I first), the sites it concerns (a tunnel segment and its neighbours),
 * the escalation countdown while nobody has acknowledged it, a one-click acknowledge (which stops
 * the escalation), and the newest readings of its devices (the river gauge, the underpass, the
 * tunnel's detectors), read again every 5 s and whenever the task changes. Live from the task
 * stream; a level I/II emergency that appears sounds the alarm and shows the alarm bar.
 */

const LEVELS = ["I", "II", "III", "IV"] as const;

/** How often the board reads its devices' newest readings. */
const READINGS_MS = 5_000;

/** When the next escalation is due (rules/engine/alarm.ts: filed + after × (count + 1)). */
export function nextEscalation(task: Task): number | undefined {
  if (task.acknowledgedAt !== undefined || task.state === "closed") return undefined;
  if (!["filed", "dispatched"].includes(task.state)) return undefined;
  const after = task.escalateAfterMs ?? 15 * 60_000;
  return Date.parse(task.filedAt) + after * (task.escalations + 1);
}

function Escalation(props: { task: Task }) {
  const now = useNow();
  const due = nextEscalation(props.task);
  if (due === undefined) return <span class="esc stopped">{t("escalationStopped")}</span>;
  const left = due - now;
  return left >= 0 ? (
    <span class={`esc${left < 120_000 ? " soon" : ""}`} data-testid="escalation">
      {t("escalatesIn", { t: formatDuration(left) })}
    </span>
  ) : (
    <span class="esc over" data-testid="escalation">
      {t("escalationOverdue", { t: formatDuration(-left), n: props.task.escalations })}
    </span>
  );
}

export function Emergency(props: { user: User }) {
  const { user } = props;
  const [tasks, setTasks] = useState<Map<string, Task> | undefined>(undefined);
  const [devices, setDevices] = useState<Map<string, DeviceState>>(new Map());
  const [sites, setSites] = useState<Map<string, SiteSummary>>(new Map());
  const [latest, setLatest] = useState<Map<string, Reading>>(new Map());
  const [alert, setAlert] = useState<Task | undefined>(undefined);
  const [live, setLive] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState<string | undefined>(undefined);

  useEffect(() => {
    const reload = () =>
      loadTasks({ ...NO_FILTERS, kind: "emergency", state: "open", sort: "level" }).then(
        (list) => setTasks(new Map(list.map((task) => [task.id, task]))),
        (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
      );
    void reload();
    Promise.all([loadDevices(), loadSites()]).then(
      ([d, s]) => {
        setDevices(new Map(d.map((x) => [x.id, x])));
        setSites(new Map(s.map((x) => [x.id, x])));
      },
      () => undefined,
    );
    return subscribeTasks(
      (event) => {
        if (event.task.kind !== "emergency") return;
        setTasks((before) => new Map(before ?? []).set(event.task.id, event.task));
        if (isSevere(event.task) && (event.type === "filed" || event.type === "level_raised")) {
          setAlert(event.task);
          beep();
        }
      },
      setLive,
      () => void reload(),
    );
  }, []);

  const shown = [...(tasks?.values() ?? [])]
    .filter((task) => task.state !== "closed")
    .sort((a, b) => b.levelIndex - a.levelIndex || b.filedAt.localeCompare(a.filedAt));
  const deviceKey = [...new Set(shown.flatMap((task) => task.deviceIds))].sort().join(",");

  // The newest readings of the open emergencies' devices: now, on a change, and every 5 s (a
  // gauge reports every minute or faster; a few devices, two requests at a time); the devices'
  // states (online, alarm) every minute.
  useEffect(() => {
    const ids = deviceKey === "" ? [] : deviceKey.split(",");
    if (ids.length === 0) return;
    const read = () => void latestReadings(ids).then(setLatest);
    const states = () =>
      loadDevices().then(
        (d) => setDevices(new Map(d.map((x) => [x.id, x]))),
        () => undefined,
      );
    read();
    void states();
    const timers = [setInterval(read, READINGS_MS), setInterval(() => void states(), 60_000)];
    return () => timers.forEach((timer) => clearInterval(timer));
  }, [deviceKey, shown.map((task) => task.updatedAt).join()]);

  const acknowledge = (task: Task) => {
    setBusy(task.id);
    setError(undefined);
    api<{ task: Task }>("POST", `/api/v1/tasks/${encodeURIComponent(task.id)}/transitions`, {
      to: "acknowledged",
    }).then(
      (answer) => {
        setBusy(undefined);
        setTasks((before) => new Map(before ?? []).set(answer.task.id, answer.task));
      },
      (e: unknown) => {
        setBusy(undefined);
        setError(
          e instanceof ApiError ? `${t("refused", { status: e.status })}: ${e.message}` : String(e),
        );
      },
    );
  };

  const groups = [...LEVELS, undefined].map((level) => ({
    level,
    tasks: shown.filter((task) =>
      level === undefined
        ? !LEVELS.includes(task.level as (typeof LEVELS)[number])
        : task.level === level,
    ),
  }));

  return (
    <section class="board" aria-labelledby="board-title">
      <div class="page-head">
        <h1 id="board-title">{t("boardTitle")}</h1>
        <span class={`live${live ? " on" : ""}`} data-testid="live" role="status">
          {live ? t("live") : t("offline")}
        </span>
        <span class="count" data-testid="board-count">
          {t("tasksShown", { n: shown.length })}
        </span>
      </div>
      {alert !== undefined && (
        <AlarmBar task={alert} testId="board-alarm" onDismiss={() => setAlert(undefined)} />
      )}
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {tasks === undefined ? (
        <p class="loading">{t("loading")}</p>
      ) : shown.length === 0 ? (
        <p class="empty">{t("boardNone")}</p>
      ) : (
        groups
          .filter((g) => g.tasks.length > 0)
          .map((g) => (
            <div class="level-group" key={g.level ?? "none"}>
              <h2 class={`badge level-${g.level ?? ""}`}>
                {g.level === undefined ? t("levelNone") : t("levelGroup", { level: g.level })}
              </h2>
              <div class="cards">
                {g.tasks.map((task) => {
                  const mayAck = actionsFor(task, user).some(
                    (a) => a.type === "transition" && a.to === "acknowledged",
                  );
                  return (
                    <article
                      class={`emergency-card level-${task.level ?? ""}${isSevere(task) ? " severe" : ""}`}
                      key={task.id}
                      data-task={task.id}
                      data-state={task.state}
                    >
                      <header>
                        <span class={`badge level-${task.level ?? ""}`}>{task.level ?? "—"}</span>
                        <a
                          href={`/tasks/${encodeURIComponent(task.id)}`}
                          onClick={onLink(`/tasks/${encodeURIComponent(task.id)}`)}
                          class="title"
                        >
                          {task.title}
                        </a>
                        <span class={`badge state ${task.state}`}>{tk("s", task.state)}</span>
                      </header>
                      <p class="muted small">
                        {task.id} · {t("filedAt")} {formatLocal(task.filedAt)}
                      </p>
                      <p>
                        <strong>{t("affectedSites")}:</strong>{" "}
                        {task.affectedSites.map((id) => sites.get(id)?.name ?? id).join("、") ||
                          "—"}
                      </p>
                      <div class="esc-row">
                        <Escalation task={task} />
                        {mayAck && (
                          <button
                            type="button"
                            class="primary"
                            data-testid="acknowledge"
                            disabled={busy === task.id}
                            onClick={() => acknowledge(task)}
                          >
                            {t("acknowledge")}
                          </button>
                        )}
                      </div>
                      <table class="readings-now">
                        <caption>{t("latestReadings")}</caption>
                        <tbody>
                          {task.deviceIds.map((id) => {
                            const reading = latest.get(id);
                            const device = devices.get(id);
                            return (
                              <tr key={id} data-reading={id}>
                                <th scope="row">
                                  {id}
                                  {device !== undefined && (
                                    <span class={`dot ${device.online ? "online" : "offline"}`} />
                                  )}
                                </th>
                                <td>
                                  {reading === undefined ? (
                                    <span class="muted">{t("noReading")}</span>
                                  ) : (
                                    <>
                                      {valuesLine(reading, 5)}{" "}
                                      <span class="muted small">
                                        {formatLocal(reading.ts, { seconds: true })}
                                      </span>
                                    </>
                                  )}
                                </td>
                              </tr>
                            );
                          })}
                        </tbody>
                      </table>
                    </article>
                  );
                })}
              </div>
            </div>
          ))
      )}
    </section>
  );
}
