import type { User } from "../../../contracts/model/people.js";
import type { Task, TaskState } from "../../../contracts/model/tasks.js";
import type { TaskKind } from "../../../contracts/model/topics.js";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { beep, isSevere } from "../alarm.js";
import { AlarmBar } from "../components/AlarmBar.js";
import { api, ApiError } from "../api.js";
import { Confirm } from "../components/Confirm.js";
import { Countdown } from "../components/Countdown.js";
import { VirtualList } from "../components/VirtualList.js";
import { t, tk } from "../i18n.js";
import { subscribeTasks } from "../live.js";
import { onLink } from "../router.js";
import {
  actsOn,
  type Filters,
  isOverdue,
  loadTasks,
  matches,
  mayDispatchInBulk,
  NO_FILTERS,
  partyOf,
  serverFilters,
  slaDue,
  type Sort,
  sortTasks,
} from "../tasks.js";
import { formatLocal } from "../time.js";

/*
 * The task queue: the tasks of the user's scope (the server sends no others), filtered, sorted and
 * searched; live from the task stream (a new task appears at the top, marked, without a reload);
 * an SLA countdown per row; for the command centre, bulk dispatch of filed tasks. The list draws
 * only the rows in view, so 10,000 tasks scroll as smoothly as ten.
 */

const KINDS: readonly TaskKind[] = ["enforcement", "emergency", "maintenance", "environmental"];
const STATES: readonly TaskState[] = [
  "filed",
  "dispatched",
  "acknowledged",
  "in_progress",
  "handled",
  "verified",
  "closed",
];
const SORTS: ReadonlyArray<[Sort, Parameters<typeof t>[0]]> = [
  ["-filedAt", "sortNewest"],
  ["filedAt", "sortOldest"],
  ["slaDue", "sortSla"],
  ["level", "sortLevel"],
];
const FILTERS_KEY = "citywatch.queue.filters";

function savedFilters(): Filters {
  try {
    const raw = sessionStorage.getItem(FILTERS_KEY);
    return raw === null ? NO_FILTERS : { ...NO_FILTERS, ...(JSON.parse(raw) as Partial<Filters>) };
  } catch {
    return NO_FILTERS;
  }
}

function useMedia(query: string): boolean {
  const [hit, setHit] = useState(() => matchMedia(query).matches);
  useEffect(() => {
    const list = matchMedia(query);
    const change = () => setHit(list.matches);
    list.addEventListener("change", change);
    return () => list.removeEventListener("change", change);
  }, [query]);
  return hit;
}

const distinct = (values: ReadonlyArray<string | undefined>) =>
  [...new Set(values.filter((v): v is string => v !== undefined && v !== ""))].sort();

export function Queue(props: { user: User }) {
  const { user } = props;
  const [filters, setFilters] = useState<Filters>(savedFilters);
  const [tasks, setTasks] = useState<Map<string, Task>>(new Map());
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | undefined>(undefined);
  const [live, setLive] = useState(false);
  /** Counts the stream's reopenings: each reads the list again (events may have been missed). */
  const [resync, setResync] = useState(0);
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const [full, setFull] = useState(false);
  const [showFilters, setShowFilters] = useState(false);
  const [minute, setMinute] = useState(() => Date.now());
  const [alert, setAlert] = useState<Task | undefined>(undefined);
  const mobile = useMedia("(max-width: 720px)");
  const bulk = mayDispatchInBulk(user);

  useEffect(() => {
    const timer = setInterval(() => setMinute(Date.now()), 30_000);
    return () => clearInterval(timer);
  }, []);

  useEffect(() => {
    sessionStorage.setItem(FILTERS_KEY, JSON.stringify(filters));
  }, [filters]);

  useEffect(() => void serverFilters().then(setFull), []);

  // What the server filters: reload when it changes (text fields after a pause).
  const serverKey = full
    ? JSON.stringify(filters)
    : JSON.stringify([filters.kind, filters.state, filters.district]);
  const generation = useRef(0);
  /** Tasks the stream sent (the newest of each), to lay over a list read before them. */
  const arrived = useRef(new Map<string, Task>());
  useEffect(() => {
    const mine = ++generation.current;
    const timer = setTimeout(
      () => {
        setLoading(true);
        loadTasks(filters).then(
          (list) => {
            if (mine !== generation.current) return;
            // A task the stream sent that the list lacks or holds older (the list was read
            // before the event) is laid over it.
            const loaded = new Map(list.map((task) => [task.id, task]));
            for (const [id, task] of arrived.current) {
              const listed = loaded.get(id);
              if (listed === undefined || listed.updatedAt <= task.updatedAt) loaded.set(id, task);
            }
            setTasks(loaded);
            setError(undefined);
            setLoading(false);
          },
          (e: unknown) => {
            if (mine !== generation.current) return;
            setError(e instanceof Error ? e.message : String(e));
            setLoading(false);
          },
        );
      },
      full ? 250 : 0,
    );
    return () => clearTimeout(timer);
  }, [serverKey, resync]);

  // Live: every event replaces its task; a task not seen before is marked new for a while.
  useEffect(
    () =>
      subscribeTasks(
        (event) => {
          if (arrived.current.size >= 20_000) arrived.current.clear();
          arrived.current.set(event.task.id, event.task);
          setTasks((before) => {
            const next = new Map(before);
            next.set(event.task.id, event.task);
            return next;
          });
          if (isSevere(event.task) && (event.type === "filed" || event.type === "level_raised")) {
            setAlert(event.task);
            beep();
          }
          if (event.type === "filed") {
            const id = event.task.id;
            setFresh((before) => new Set(before).add(id));
            setTimeout(
              () =>
                setFresh((before) => {
                  const next = new Set(before);
                  next.delete(id);
                  return next;
                }),
              60_000,
            );
          }
        },
        setLive,
        () => setResync((n) => n + 1),
      ),
    [],
  );

  const shown = useMemo(
    () =>
      sortTasks(
        [...tasks.values()].filter((task) => matches(task, filters, minute)),
        filters.sort,
      ),
    [tasks, filters, minute],
  );
  const options = useMemo(() => {
    const all = [...tasks.values()];
    return {
      levels: distinct(all.map((x) => x.level)),
      districts: distinct(all.map((x) => x.routing.district)),
      streets: distinct(all.map((x) => x.routing.street)),
      grids: distinct(all.map((x) => x.routing.gridCell)),
    };
  }, [tasks]);

  const set = <K extends keyof Filters>(key: K, value: Filters[K]) =>
    setFilters((before) => ({ ...before, [key]: value }));

  const dispatchable = (task: Task) => task.state === "filed" && actsOn(user, task.kind);
  const chosen = shown.filter((task) => selected.has(task.id) && dispatchable(task));
  const toggle = (id: string) =>
    setSelected((before) => {
      const next = new Set(before);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  const dispatchChosen = async () => {
    setBusy(true);
    let ok = 0;
    let failed = 0;
    const queue = [...chosen];
    const worker = async () => {
      for (let task = queue.shift(); task !== undefined; task = queue.shift()) {
        try {
          const answer = await api<{ task: Task }>(
            "POST",
            `/api/v1/tasks/${encodeURIComponent(task.id)}/transitions`,
            { to: "dispatched" },
          );
          ok++;
          setTasks((before) => new Map(before).set(answer.task.id, answer.task));
        } catch (e) {
          failed++;
          if (e instanceof ApiError && e.status === 401) break;
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    setBusy(false);
    setConfirming(false);
    setSelected(new Set());
    setNotice(t("dispatchDone", { ok, failed }));
  };

  const filterBar = (
    <div class={`filters${mobile && !showFilters ? " collapsed" : ""}`} data-testid="filters">
      <label>
        {t("kind")}
        <select
          name="kind"
          value={filters.kind}
          onChange={(e) => set("kind", e.currentTarget.value as Filters["kind"])}
        >
          <option value="">{t("all")}</option>
          {KINDS.map((k) => (
            <option value={k}>{tk("k", k)}</option>
          ))}
        </select>
      </label>
      <label>
        {t("state")}
        <select
          name="state"
          value={filters.state}
          onChange={(e) => set("state", e.currentTarget.value as Filters["state"])}
        >
          <option value="open">{t("open")}</option>
          <option value="">{t("all")}</option>
          {STATES.map((s) => (
            <option value={s}>{tk("s", s)}</option>
          ))}
        </select>
      </label>
      <label>
        {t("level")}
        <select
          name="level"
          value={filters.level}
          onChange={(e) => set("level", e.currentTarget.value)}
        >
          <option value="">{t("all")}</option>
          {options.levels.map((l) => (
            <option value={l}>{tk("lvl", l)}</option>
          ))}
        </select>
      </label>
      {(
        [
          ["district", options.districts],
          ["street", options.streets],
          ["grid", options.grids],
        ] as const
      ).map(([key, values]) => (
        <label>
          {t(key)}
          <select name={key} value={filters[key]} onChange={(e) => set(key, e.currentTarget.value)}>
            <option value="">{t("all")}</option>
            {values.map((v) => (
              <option value={v}>{v}</option>
            ))}
          </select>
        </label>
      ))}
      <label>
        {t("party")}
        <input
          name="party"
          value={filters.party}
          onInput={(e) => set("party", e.currentTarget.value)}
        />
      </label>
      <label class="check">
        <input
          type="checkbox"
          name="overdue"
          checked={filters.overdue}
          onChange={(e) => set("overdue", e.currentTarget.checked)}
        />
        {t("onlyOverdue")}
      </label>
      <label>
        {t("sort")}
        <select
          name="sort"
          value={filters.sort}
          onChange={(e) => set("sort", e.currentTarget.value as Sort)}
        >
          {SORTS.map(([value, label]) => (
            <option value={value}>{t(label)}</option>
          ))}
        </select>
      </label>
      <button
        type="button"
        class="link"
        onClick={() => setFilters({ ...NO_FILTERS, sort: filters.sort })}
      >
        {t("clearFilters")}
      </button>
    </div>
  );

  const row = (task: Task) => {
    const party = partyOf(task);
    const area = [task.routing.district, task.routing.street, task.routing.gridCell]
      .filter((x) => x !== undefined)
      .join(" / ");
    const overdue = isOverdue(task, minute);
    const href = `/tasks/${encodeURIComponent(task.id)}`;
    return (
      <div
        class={`task-row kind-${task.kind}${fresh.has(task.id) ? " fresh" : ""}${overdue ? " overdue" : ""}`}
        data-task={task.id}
        data-state={task.state}
      >
        {bulk && (
          <input
            type="checkbox"
            class="pick"
            aria-label={`${t("select")} ${task.id}`}
            disabled={!dispatchable(task)}
            checked={selected.has(task.id)}
            onChange={() => toggle(task.id)}
          />
        )}
        <a class="title" href={href} onClick={onLink(href)}>
          <span class="id">{task.id}</span>
          <span class="text">{task.title}</span>
        </a>
        <span class={`badge kind ${task.kind}`}>{tk("k", task.kind)}</span>
        <span class={`badge level level-${task.level ?? "none"}`}>
          {tk("lvl", task.level ?? "")}
        </span>
        <span class={`badge state ${task.state}`}>{tk("s", task.state)}</span>
        <span class="area" title={area}>
          {area}
        </span>
        <span class="party" title={party?.name ?? ""}>
          {party?.name ?? ""}
        </span>
        <span class="filed">{formatLocal(task.filedAt)}</span>
        <Countdown
          due={slaDue(task)}
          flagged={task.sla.flags.length > 0 && task.state !== "closed"}
        />
        {fresh.has(task.id) && <span class="new">{t("newTask")}</span>}
      </div>
    );
  };

  return (
    <section class="queue" aria-labelledby="queue-title">
      <div class="queue-head">
        <h1 id="queue-title">{t("queue")}</h1>
        <input
          type="search"
          class="search"
          name="q"
          placeholder={t("search")}
          aria-label={t("search")}
          value={filters.q}
          onInput={(e) => set("q", e.currentTarget.value)}
        />
        {mobile && (
          <button
            type="button"
            class="secondary small"
            onClick={() => setShowFilters(!showFilters)}
          >
            {t("mobileFilters")}
          </button>
        )}
        <span class={`live${live ? " on" : ""}`} data-testid="live" role="status">
          {live ? t("live") : t("offline")}
        </span>
        <span class="count" data-testid="count">
          {t("tasksShown", { n: shown.length })}
        </span>
        {bulk && (
          <button
            type="button"
            class="primary small"
            data-testid="bulk-dispatch"
            disabled={chosen.length === 0}
            onClick={() => setConfirming(true)}
          >
            {t("dispatchSelected", { n: chosen.length })}
          </button>
        )}
      </div>
      {alert !== undefined && (
        <AlarmBar task={alert} testId="alarm" onDismiss={() => setAlert(undefined)} />
      )}
      {filterBar}
      {notice !== undefined && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!mobile && (
        <div class={`task-row header${bulk ? "" : " nobulk"}`} aria-hidden="true">
          {bulk && <span />}
          <span class="title">{t("subject")}</span>
          <span>{t("kind")}</span>
          <span>{t("level")}</span>
          <span>{t("state")}</span>
          <span>{t("routing")}</span>
          <span>{t("party")}</span>
          <span>{t("filedAt")}</span>
          <span>{t("sla")}</span>
        </div>
      )}
      {loading && tasks.size === 0 ? (
        <p class="muted">{t("loading")}</p>
      ) : shown.length === 0 ? (
        <p class="muted empty">{t("noTasks")}</p>
      ) : (
        <div class={bulk ? "" : "nobulk"}>
          <VirtualList
            items={shown}
            rowHeight={mobile ? 104 : 48}
            keyOf={(task) => task.id}
            render={row}
            label={t("queue")}
          />
        </div>
      )}
      {confirming && (
        <Confirm
          title={t("dispatchConfirm", { n: chosen.length })}
          busy={busy}
          onConfirm={() => void dispatchChosen()}
          onCancel={() => setConfirming(false)}
        >
          <ul class="chosen">
            {chosen.slice(0, 8).map((task) => (
              <li>
                {task.id} · {task.title}
              </li>
            ))}
            {chosen.length > 8 && <li>…</li>}
          </ul>
        </Confirm>
      )}
    </section>
  );
}
