import type { EvidenceVerification } from "../../../contracts/model/evidence.js";
import type { User } from "../../../contracts/model/people.js";
import type { AuditEntry, ClosureReason, Task, TaskEvent } from "../../../contracts/model/tasks.js";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "../api.js";
import { Attachments } from "../components/Attachments.js";
import { Confirm } from "../components/Confirm.js";
import { Countdown } from "../components/Countdown.js";
import { ReadingsChart } from "../components/ReadingsChart.js";
import { lang, t, tk } from "../i18n.js";
import { subscribeTasks } from "../live.js";
import { onLink } from "../router.js";
import { actionsFor, actsOn, partyOf, slaDue, type TaskAction } from "../tasks.js";
import { formatLocal } from "../time.js";

/*
 * One task: what happened (the incident's violations, the readings around it with the limit and
 * the night shaded), what was done (the audit trail as a timeline), the evidence package with its
 * verification and the signed link to the printable document, and the actions the user's roles
 * and the task's state allow, each confirmed, with a reason where the process needs one. A refusal
 * of the server (403, 409) is shown as it came.
 */

interface Detail {
  task: Task;
  audit: AuditEntry[];
}

const errorText = (e: unknown): string =>
  e instanceof ApiError
    ? `${t("refused", { status: e.status })}: ${e.message}${e.problems.map((p) => ` · ${p.path}: ${p.message}`).join("")}`
    : e instanceof Error
      ? e.message
      : String(e);

function actionLabel(action: TaskAction): string {
  switch (action.type) {
    case "transition":
      return action.reopen ? t("t.reopen") : tk("t", action.to);
    case "review":
      return action.decision === "approve" ? t("approve") : t("reject");
    case "level":
      return t("levelChange");
    case "assign":
      return t("assignMe");
  }
}

const actionId = (action: TaskAction): string => {
  switch (action.type) {
    case "transition":
      return action.reopen ? "reopen" : action.to;
    case "review":
      return `review-${action.decision}`;
    case "level":
      return "level";
    case "assign":
      return "assign";
  }
};

function ActionDialog(props: {
  task: Task;
  action: TaskAction;
  user: User;
  onDone: (detail: Detail) => void;
  onCancel: () => void;
}) {
  const { task, action } = props;
  const [reason, setReason] = useState<ClosureReason | "">("");
  const [note, setNote] = useState("");
  const [level, setLevel] = useState(
    action.type === "level" ? (action.levels.at(-1) ?? "lifted") : "",
  );
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);

  const needsNote =
    (action.type === "review" && action.decision === "reject") ||
    action.type === "level" ||
    (action.type === "assign" && action.reassign);
  const needsReason = action.type === "transition" && action.to === "closed";
  const missing = (needsNote && note.trim() === "") || (needsReason && reason === "");
  const base = `/api/v1/tasks/${encodeURIComponent(task.id)}`;
  const trimmed = note.trim();

  const submit = () => {
    setBusy(true);
    setError(undefined);
    let request: Promise<Detail>;
    switch (action.type) {
      case "transition":
        request = api<Detail>("POST", `${base}/transitions`, {
          to: action.to,
          ...(action.to === "closed" && reason !== "" ? { reason } : {}),
          ...(trimmed === "" ? {} : { note: trimmed }),
        });
        break;
      case "review":
        request = api<Detail>("POST", `${base}/review`, {
          decision: action.decision,
          ...(trimmed === "" ? {} : { note: trimmed }),
        });
        break;
      case "level":
        request = api<Detail>("POST", `${base}/level`, { to: level, reason: trimmed });
        break;
      case "assign":
        request = api<Detail>("POST", `${base}/assign`, {
          userId: props.user.id,
          ...(trimmed === "" ? {} : { reason: trimmed }),
        });
        break;
    }
    request.then(props.onDone, (e: unknown) => {
      setBusy(false);
      setError(errorText(e));
    });
  };

  return (
    <Confirm
      title={`${actionLabel(action)} · ${task.id}`}
      confirmLabel={actionLabel(action)}
      confirmDisabled={missing}
      busy={busy}
      error={error}
      onConfirm={submit}
      onCancel={props.onCancel}
    >
      <p class="muted">{task.title}</p>
      {needsReason && action.type === "transition" && (
        <label>
          {t("closureReason")}
          <select
            name="reason"
            required
            value={reason}
            onChange={(e) => setReason(e.currentTarget.value as ClosureReason)}
          >
            <option value="" disabled>
              —
            </option>
            {(action.reasons ?? []).map((r) => (
              <option value={r}>{tk("r", r)}</option>
            ))}
          </select>
        </label>
      )}
      {action.type === "level" && (
        <label>
          {t("lowerTo")}
          <select name="level" value={level} onChange={(e) => setLevel(e.currentTarget.value)}>
            {action.levels.map((l) => (
              <option value={l}>{tk("lvl", l)}</option>
            ))}
            <option value="lifted">{t("lift")}</option>
          </select>
        </label>
      )}
      <label>
        {needsNote ? t("reason") : t("note")}
        <textarea
          name="note"
          rows={3}
          maxLength={2_000}
          required={needsNote}
          value={note}
          onInput={(e) => setNote(e.currentTarget.value)}
        />
      </label>
      {needsNote && trimmed === "" && <p class="muted small">{t("reasonRequired")}</p>}
    </Confirm>
  );
}

function EvidencePanel(props: { task: Task }) {
  const { task } = props;
  const [check, setCheck] = useState<EvidenceVerification | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [round, setRound] = useState(0);
  const base = `/api/v1/tasks/${encodeURIComponent(task.id)}/evidence`;

  useEffect(() => {
    if (task.evidenceCount === 0) return;
    setCheck(undefined);
    setError(undefined);
    api<EvidenceVerification>("GET", `${base}/verify`).then(setCheck, (e: unknown) =>
      setError(errorText(e)),
    );
  }, [task.id, task.evidenceCount, round]);

  const open = () => {
    // A new window first (a popup opened after an await is blocked), then the signed link.
    const win = window.open("about:blank", "_blank");
    api<{ url: string }>("GET", `${base}/link?lang=${lang()}`).then(
      (link) => {
        if (win === null) location.assign(link.url);
        else win.location.assign(link.url);
      },
      (e: unknown) => {
        win?.close();
        setError(errorText(e));
      },
    );
  };

  if (task.evidenceCount === 0) return <p class="muted">{t("evidenceNone")}</p>;
  return (
    <div class="evidence" data-testid="evidence">
      {check === undefined && error === undefined && <p class="muted">{t("evidenceChecking")}</p>}
      {check !== undefined && (
        <div
          class={`verdict ${check.valid ? "ok" : "bad"}`}
          data-testid="evidence-verdict"
          role="status"
        >
          <strong>
            {check.valid ? "✓ " : "✗ "}
            {check.valid ? t("evidenceValid") : t("evidenceInvalid")}
          </strong>
          <span>{t("packageNo", { n: check.sequence })}</span>
          <code class="hash" title={t("hash")}>
            {check.actual}
          </code>
          {check.keyId !== null && (
            <span class="small muted">
              {t("key")}: <code>{check.keyId}</code>
            </span>
          )}
          {check.problems.map((p) => (
            <span class="problem">
              {p.code}: {p.message}
            </span>
          ))}
        </div>
      )}
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="buttons">
        <button type="button" class="primary small" data-testid="open-document" onClick={open}>
          {t("openDocument")}
        </button>
        <button type="button" class="secondary small" onClick={() => setRound(round + 1)}>
          {t("verifyAgain")}
        </button>
      </div>
    </div>
  );
}

function Timeline(props: { audit: readonly AuditEntry[] }) {
  return (
    <ol class="timeline" data-testid="audit">
      {[...props.audit].reverse().map((entry) => (
        <li class={`entry ${entry.action}`}>
          <time dateTime={entry.at}>{formatLocal(entry.at, { seconds: true })}</time>
          <div>
            <strong>
              {entry.action === "transition" && entry.from !== undefined && entry.to !== undefined
                ? `${tk("s", entry.from)} → ${tk("s", entry.to)}`
                : entry.action}
            </strong>{" "}
            <span class="actor">{entry.actor}</span>
            {entry.detail !== "" && <p class="entry-detail">{entry.detail}</p>}
          </div>
        </li>
      ))}
    </ol>
  );
}

export function TaskDetail(props: { id: string; user: User }) {
  const { id, user } = props;
  const [detail, setDetail] = useState<Detail | undefined>(undefined);
  const [error, setError] = useState<ApiError | Error | undefined>(undefined);
  const [acting, setActing] = useState<TaskAction | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);

  const load = () =>
    api<Detail>("GET", `/api/v1/tasks/${encodeURIComponent(id)}`).then(
      (d) => {
        setDetail(d);
        setError(undefined);
      },
      (e: unknown) => setError(e instanceof Error ? e : new Error(String(e))),
    );
  useEffect(() => void load(), [id]);
  // Changes made elsewhere (another officer, the rules) arrive on the stream.
  useEffect(
    () =>
      subscribeTasks(
        (event: TaskEvent) => {
          if (event.task.id !== id) return;
          setDetail((before) =>
            before === undefined
              ? before
              : {
                  task: event.task,
                  audit: [
                    ...before.audit,
                    ...event.entries.filter((e) => !before.audit.some((b) => b.id === e.id)),
                  ],
                },
          );
        },
        () => undefined,
        () => void load(),
      ),
    [id],
  );

  if (error !== undefined)
    return (
      <section class="detail">
        <a href="/" onClick={onLink("/")}>
          ← {t("back")}
        </a>
        <p class="error" role="alert" data-testid="detail-error">
          {error instanceof ApiError && error.status === 404 ? t("notFound") : errorText(error)}
        </p>
      </section>
    );
  if (detail === undefined) return <p class="muted">{t("loading")}</p>;
  const { task, audit } = detail;
  const actions = actionsFor(task, user);
  const party = partyOf(task);
  const started = Date.parse(task.startedAt);
  const cleared =
    task.conditionClearedAt === undefined ? started : Date.parse(task.conditionClearedAt);
  // From an hour before the condition started to two hours after it cleared (or now).
  const fromMs = started - 3_600_000;
  const toMs = Math.min(Date.now(), Math.max(cleared, started) + 2 * 3_600_000);
  const violations = task.violations ?? [
    {
      ruleId: task.rule.id,
      ruleVersion: task.rule.version,
      clause: task.rule.clause,
      subject: task.subject,
      alarmSeq: task.alarmSeq,
      startedAt: task.startedAt,
      detail: task.detail,
      value: task.value,
      limit: task.limit,
    },
  ];
  const handledByMe = task.handledBy === user.id && task.state === "handled";

  return (
    <section class="detail" aria-labelledby="task-title">
      <a href="/" class="back" onClick={onLink("/")}>
        ← {t("back")}
      </a>
      <header class="detail-head">
        <h1 id="task-title">
          <span class="id">{task.id}</span> {task.title}
        </h1>
        <div class="badges">
          <span class={`badge kind ${task.kind}`}>{tk("k", task.kind)}</span>
          {task.level !== undefined && (
            <span class={`badge level level-${task.level}`}>{tk("lvl", task.level ?? "")}</span>
          )}
          <span class={`badge state ${task.state}`} data-testid="state">
            {tk("s", task.state)}
          </span>
          <Countdown
            due={slaDue(task)}
            flagged={task.sla.flags.length > 0 && task.state !== "closed"}
          />
        </div>
        <dl class="facts">
          <dt>{t("routing")}</dt>
          <dd>
            {task.routing.department} · {task.routing.team}
            {[task.routing.district, task.routing.street, task.routing.gridCell]
              .filter((x) => x !== undefined)
              .map((x) => ` · ${x}`)}
          </dd>
          {party !== undefined && (
            <>
              <dt>{t("party")}</dt>
              <dd>
                {party.name} <code>{party.key}</code>
              </dd>
            </>
          )}
          {task.graduated !== undefined && (
            <>
              <dt>{t("graduated")}</dt>
              <dd>
                {tk("g", task.graduated.stage)}
                {task.graduated.review !== undefined &&
                  ` · ${t("review")}: ${tk("rv", task.graduated.review.status)}`}
                {task.graduated.deadline !== undefined &&
                  ` · ${t("deadline")} ${formatLocal(task.graduated.deadline)}`}
              </dd>
            </>
          )}
          <dt>{t("filedAt")}</dt>
          <dd>{formatLocal(task.filedAt, { zone: true })}</dd>
          {task.assignee !== undefined && (
            <>
              <dt>{t("assignee")}</dt>
              <dd data-testid="assignee">{task.assignee.name}</dd>
            </>
          )}
          {task.handledBy !== undefined && (
            <>
              <dt>{t("handledBy")}</dt>
              <dd>{task.handledBy}</dd>
            </>
          )}
        </dl>
      </header>

      <section class="panel actions" aria-labelledby="actions-title">
        <h2 id="actions-title">{t("actions")}</h2>
        {done !== undefined && (
          <p class="notice" role="status">
            {done}
          </p>
        )}
        {actions.length === 0 ? (
          <p class="muted" data-testid="no-actions">
            {task.state !== "closed" &&
            !actions.length &&
            !user.roles.some((r) => r !== "viewer" && r !== "legal_reviewer")
              ? t("readOnly")
              : t("noActions")}
          </p>
        ) : (
          <div class="buttons">
            {actions.map((action) => (
              <button
                type="button"
                class={
                  action.type === "transition" && action.to === "closed" ? "secondary" : "primary"
                }
                data-action={actionId(action)}
                onClick={() => {
                  setDone(undefined);
                  setActing(action);
                }}
              >
                {actionLabel(action)}
              </button>
            ))}
          </div>
        )}
        {handledByMe && (
          <p class="muted small" data-testid="duty-note">
            {lang() === "zh-CN"
              ? "您处置了此任务，须由他人核查。"
              : "You handled this task: someone else must verify it."}
          </p>
        )}
      </section>

      <section class="panel" aria-labelledby="violations-title">
        <h2 id="violations-title">{t("violations")}</h2>
        <div class="table-wrap">
          <table class="violations">
            <thead>
              <tr>
                <th>{t("rule")}</th>
                <th>{t("subject")}</th>
                <th>{t("startedAt")}</th>
                <th>{t("value")}</th>
                <th>{t("limit")}</th>
              </tr>
            </thead>
            <tbody>
              {violations.map((v) => (
                <tr>
                  <td>
                    <code>{v.ruleId}</code>
                    <div class="small muted">
                      {v.clause.standard} {v.clause.section}
                    </div>
                  </td>
                  <td>{v.subject.id}</td>
                  <td>{formatLocal(v.startedAt)}</td>
                  <td>{v.value === undefined ? "—" : String(v.value)}</td>
                  <td>{v.limit ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <p class="detail-text">{task.detail}</p>
      </section>

      {task.deviceIds[0] !== undefined && (
        <section class="panel" aria-labelledby="readings-title">
          <h2 id="readings-title">{t("readings")}</h2>
          <ReadingsChart
            deviceId={task.deviceIds[0]}
            fromMs={fromMs}
            toMs={toMs}
            limit={task.limit}
          />
        </section>
      )}

      <section class="panel" aria-labelledby="evidence-title">
        <h2 id="evidence-title">{t("evidence")}</h2>
        <EvidencePanel task={task} />
      </section>

      <section class="panel" aria-labelledby="attachments-title">
        <h2 id="attachments-title">{t("attachments")}</h2>
        <Attachments
          task={task}
          mayUpload={actsOn(user, task.kind)}
          onUploaded={() => void load()}
        />
      </section>

      <section class="panel" aria-labelledby="audit-title">
        <h2 id="audit-title">{t("audit")}</h2>
        <Timeline audit={audit} />
      </section>

      {acting !== undefined && (
        <ActionDialog
          task={task}
          action={acting}
          user={user}
          onCancel={() => setActing(undefined)}
          onDone={(d) => {
            setDetail(d);
            setActing(undefined);
            setDone(`${actionLabel(acting)} · ${t("done")}`);
          }}
        />
      )}
    </section>
  );
}
