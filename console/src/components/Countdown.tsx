import { useEffect, useState } from "preact/hooks";
import { t } from "../i18n.js";
import { formatDuration } from "../time.js";

/*
 * The SLA countdown: time left until the task must be handled (or closed), red once past. One
 * clock for every countdown on the page, ticking each second.
 */
const listeners = new Set<(now: number) => void>();
let timer: ReturnType<typeof setInterval> | undefined;

export function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    listeners.add(setNow);
    timer ??= setInterval(() => {
      const at = Date.now();
      listeners.forEach((l) => l(at));
    }, 1_000);
    return () => {
      listeners.delete(setNow);
      if (listeners.size === 0 && timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
      }
    };
  }, []);
  return now;
}

export function Countdown(props: { due: number | undefined; flagged?: boolean }) {
  const now = useNow();
  if (props.due === undefined)
    return props.flagged === true ? (
      <span class="sla over">{t("overdue")}</span>
    ) : (
      <span class="sla none">{t("slaNone")}</span>
    );
  const left = props.due - now;
  const over = left < 0;
  const soon = !over && left < 3_600_000;
  return (
    <span class={`sla${over ? " over" : soon ? " soon" : ""}`} data-testid="sla">
      {over
        ? t("slaOver", { t: formatDuration(-left) })
        : t("slaLeft", { t: formatDuration(left) })}
    </span>
  );
}
