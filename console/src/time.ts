import { lang } from "./i18n.js";

/*
 * Times as the deployment's people read them: local time in the site's zone with its offset, as
 * the printable evidence document prints them (tasks/evidence-html.ts: `2026-12-05 22:10
 * (UTC+08:00)`). The zone is the rules' default schedule zone (DEFAULT_TIME_ZONE,
 * contracts/model/rule-time.ts), Asia/Shanghai.
 */
export const TIME_ZONE = "Asia/Shanghai";

const partsFormat = new Intl.DateTimeFormat("en-CA", {
  timeZone: TIME_ZONE,
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
  timeZoneName: "longOffset",
});

export interface LocalParts {
  readonly date: string;
  readonly time: string;
  readonly hour: number;
  readonly offset: string;
}

export function localParts(ms: number): LocalParts {
  const parts = partsFormat.formatToParts(new Date(ms));
  const get = (type: Intl.DateTimeFormatPartTypes) =>
    parts.find((p) => p.type === type)?.value ?? "";
  const name = get("timeZoneName").replace(/^GMT/, "");
  return {
    date: `${get("year")}-${get("month")}-${get("day")}`,
    time: `${get("hour")}:${get("minute")}:${get("second")}`,
    hour: Number(get("hour")),
    offset: name === "" ? "+00:00" : name,
  };
}

/** `2026-12-05 22:10` (minutes), or with seconds; `withZone` adds `(UTC+08:00)`. */
export function formatLocal(
  iso: string | number | undefined,
  options: { seconds?: boolean; zone?: boolean } = {},
): string {
  if (iso === undefined) return "—";
  const ms = typeof iso === "number" ? iso : Date.parse(iso);
  if (!Number.isFinite(ms)) return String(iso);
  const p = localParts(ms);
  const time = options.seconds === true ? p.time : p.time.slice(0, 5);
  return `${p.date} ${time}${options.zone === true ? ` (UTC${p.offset})` : ""}`;
}

/** A duration as `2 h 05 min`, `3 d 4 h`, `45 s` (Chinese units in zh-CN). */
export function formatDuration(ms: number): string {
  const zh = lang() === "zh-CN";
  const s = Math.max(0, Math.floor(ms / 1_000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  const sec = s % 60;
  const u = zh
    ? { d: "天", h: "小时", m: "分", s: "秒" }
    : { d: " d", h: " h", m: " min", s: " s" };
  if (d > 0) return `${d}${u.d} ${h}${u.h}`;
  if (h > 0) return `${h}${u.h} ${String(m).padStart(2, "0")}${u.m}`;
  if (m > 0) return `${m}${u.m} ${String(sec).padStart(2, "0")}${u.s}`;
  return `${sec}${u.s}`;
}

/** Local hours of the night period (GB 3096-2008 / GB 12523-2011: 22:00–06:00). */
export const isNightHour = (hour: number): boolean => hour >= 22 || hour < 6;
