import type { Task } from "../../../contracts/model/tasks.js";
import { t } from "../i18n.js";
import { onLink } from "../router.js";

/** The alarm bar of a level I/II emergency (console/src/alarm.ts), linking to its task. */
export function AlarmBar(props: { task: Task; testId: string; onDismiss: () => void }) {
  const { task } = props;
  const path = `/tasks/${encodeURIComponent(task.id)}`;
  return (
    <div class={`alarm level-${task.level ?? ""}`} role="alert" data-testid={props.testId}>
      <strong>{t("alarm", { level: task.level ?? "" })}</strong>
      <a href={path} onClick={onLink(path)}>
        {task.id} · {task.title}
      </a>
      <button type="button" class="secondary small" onClick={props.onDismiss}>
        {t("dismiss")}
      </button>
    </div>
  );
}
