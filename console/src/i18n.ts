import { useEffect, useState } from "preact/hooks";

/*
 * The console's words in Chinese (the default) and English. The choice is kept in the browser
 * (localStorage) and switches every page at once. Server messages (errors) come in English.
 */

export type Lang = "zh-CN" | "en";
const KEY = "citywatch.lang";

const zh = {
  appName: "城市感知 · 指挥台",
  signIn: "登录",
  signOut: "退出",
  signInTitle: "登录指挥台",
  username: "用户名",
  password: "密码",
  signingIn: "正在登录…",
  wrongPassword: "用户名或密码错误",
  firstStartHint:
    "首次启动：管理员 admin 的密码在数据目录的 first-start-secrets.txt 中（仅所有者可读）。",
  queue: "任务队列",
  language: "语言",
  kind: "类型",
  state: "状态",
  level: "级别",
  district: "区",
  street: "街道",
  grid: "网格",
  party: "当事人",
  overdue: "超时",
  onlyOverdue: "仅超时",
  sort: "排序",
  search: "搜索案件编号或当事人",
  all: "全部",
  open: "未办结",
  sortNewest: "最新立案",
  sortOldest: "最早立案",
  sortSla: "时限最近",
  sortLevel: "级别最高",
  tasksShown: "{n} 项任务",
  live: "实时",
  offline: "连接中断，正在重连…",
  newTask: "新任务",
  select: "选择",
  dispatchSelected: "派遣所选（{n}）",
  dispatchConfirm: "派遣 {n} 项任务到其责任单位？",
  dispatchDone: "已派遣 {ok} 项，{failed} 项失败",
  noTasks: "没有符合条件的任务",
  loading: "正在加载…",
  filedAt: "立案时间",
  sla: "时限",
  slaLeft: "剩余 {t}",
  slaOver: "超时 {t}",
  slaNone: "—",
  team: "责任单位",
  assignee: "承办人",
  back: "返回队列",
  violations: "违法事实",
  rule: "规则",
  clause: "依据",
  subject: "对象",
  startedAt: "开始",
  value: "数值",
  limit: "限值",
  readings: "监测数据",
  readingsNone: "该时段没有数据",
  nightShaded: "阴影为夜间（22:00–06:00）",
  limitLine: "限值线",
  audit: "处置记录",
  evidence: "证据包",
  evidenceNone: "尚无证据包",
  evidenceValid: "校验通过：哈希与签名有效",
  evidenceInvalid: "校验失败",
  evidenceChecking: "正在校验…",
  verifyAgain: "重新校验",
  openDocument: "打开可打印文书",
  packageNo: "第 {n} 号证据包",
  hash: "SHA-256",
  key: "签名密钥",
  actions: "操作",
  noActions: "您的角色在此状态下无可执行操作",
  readOnly: "只读：您的角色不处理此类任务",
  confirm: "确认",
  cancel: "取消",
  reason: "理由",
  note: "备注",
  reasonRequired: "必须填写理由",
  closureReason: "结案原因",
  refused: "被拒绝（{status}）",
  done: "已完成",
  graduated: "分级处置",
  deadline: "整改期限",
  review: "法制审核",
  approve: "审核通过",
  reject: "退回",
  levelChange: "调整级别",
  lowerTo: "降为",
  lift: "解除响应",
  assignMe: "由我承办",
  routing: "派遣至",
  handledBy: "处置人",
  notFound: "没有这个任务",
  device: "设备",
  quantity: "指标",
  mobileFilters: "筛选",
  clearFilters: "清除筛选",
  signedInAs: "{name}（{roles}）",
  alarm: "{level} 级应急警报",
  dismiss: "知道了",
  "t.dispatched": "派遣",
  "t.acknowledged": "签收",
  "t.in_progress": "开始处置",
  "t.handled": "处置完毕",
  "t.verified": "核查通过",
  "t.closed": "结案",
  "t.reopen": "退回重办",
  "s.filed": "已立案",
  "s.dispatched": "已派遣",
  "s.acknowledged": "已签收",
  "s.in_progress": "处置中",
  "s.handled": "已处置",
  "s.verified": "已核查",
  "s.closed": "已结案",
  "k.enforcement": "执法案件",
  "k.emergency": "应急",
  "k.maintenance": "运维",
  "k.environmental": "环境质量",
  "r.rectified": "已整改",
  "r.false_positive": "误报",
  "r.sensor_fault": "传感器故障",
  "r.exempt": "豁免",
  "g.warning": "警告（首违）",
  "g.referred": "移送处罚",
  "g.inspection": "需现场核查",
  "rv.pending": "待审核",
  "rv.approved": "已通过",
  "rv.rejected": "已退回",
  "role.admin": "管理员",
  "role.command_centre": "指挥中心",
  "role.operator": "运维",
  "role.emergency": "应急管理",
  "role.enforcement": "执法",
  "role.legal_reviewer": "法制审核",
  "role.viewer": "只读",
};

type Key = keyof typeof zh;

const en: Record<Key, string> = {
  appName: "citywatch · console",
  signIn: "Sign in",
  signOut: "Sign out",
  signInTitle: "Sign in to the console",
  username: "User name",
  password: "Password",
  signingIn: "Signing in…",
  wrongPassword: "Wrong user name or password",
  firstStartHint:
    "First start: the password of the user admin is in first-start-secrets.txt in the data directory (owner-only).",
  queue: "Task queue",
  language: "Language",
  kind: "Kind",
  state: "State",
  level: "Level",
  district: "District",
  street: "Street",
  grid: "Grid cell",
  party: "Party",
  overdue: "Overdue",
  onlyOverdue: "Overdue only",
  sort: "Sort",
  search: "Search case number or party",
  all: "All",
  open: "Open",
  sortNewest: "Newest first",
  sortOldest: "Oldest first",
  sortSla: "SLA due first",
  sortLevel: "Highest level",
  tasksShown: "{n} tasks",
  live: "Live",
  offline: "Disconnected, reconnecting…",
  newTask: "New",
  select: "Select",
  dispatchSelected: "Dispatch selected ({n})",
  dispatchConfirm: "Dispatch {n} tasks to their teams?",
  dispatchDone: "Dispatched {ok}, {failed} failed",
  noTasks: "No task matches",
  loading: "Loading…",
  filedAt: "Filed",
  sla: "SLA",
  slaLeft: "{t} left",
  slaOver: "{t} overdue",
  slaNone: "—",
  team: "Team",
  assignee: "Assignee",
  back: "Back to the queue",
  violations: "Violations",
  rule: "Rule",
  clause: "Clause",
  subject: "Subject",
  startedAt: "Started",
  value: "Value",
  limit: "Limit",
  readings: "Readings",
  readingsNone: "No readings in this period",
  nightShaded: "Shaded: night (22:00–06:00)",
  limitLine: "limit",
  audit: "Audit trail",
  evidence: "Evidence",
  evidenceNone: "No evidence package yet",
  evidenceValid: "Verified: hash and signature valid",
  evidenceInvalid: "Verification failed",
  evidenceChecking: "Verifying…",
  verifyAgain: "Verify again",
  openDocument: "Open the printable document",
  packageNo: "Package {n}",
  hash: "SHA-256",
  key: "Signing key",
  actions: "Actions",
  noActions: "Nothing your roles may do in this state",
  readOnly: "Read only: your roles do not act on this kind of task",
  confirm: "Confirm",
  cancel: "Cancel",
  reason: "Reason",
  note: "Note",
  reasonRequired: "A reason is required",
  closureReason: "Closure reason",
  refused: "Refused ({status})",
  done: "Done",
  graduated: "Graduated response",
  deadline: "Rectify by",
  review: "Legal review",
  approve: "Approve",
  reject: "Reject",
  levelChange: "Change level",
  lowerTo: "Lower to",
  lift: "Lift the response",
  assignMe: "Assign to me",
  routing: "Routed to",
  handledBy: "Handled by",
  notFound: "No such task",
  device: "Device",
  quantity: "Quantity",
  mobileFilters: "Filters",
  clearFilters: "Clear filters",
  signedInAs: "{name} ({roles})",
  alarm: "Level {level} emergency",
  dismiss: "Dismiss",
  "t.dispatched": "Dispatch",
  "t.acknowledged": "Acknowledge",
  "t.in_progress": "Start work",
  "t.handled": "Mark handled",
  "t.verified": "Verify",
  "t.closed": "Close",
  "t.reopen": "Back to work",
  "s.filed": "Filed",
  "s.dispatched": "Dispatched",
  "s.acknowledged": "Acknowledged",
  "s.in_progress": "In progress",
  "s.handled": "Handled",
  "s.verified": "Verified",
  "s.closed": "Closed",
  "k.enforcement": "Enforcement",
  "k.emergency": "Emergency",
  "k.maintenance": "Maintenance",
  "k.environmental": "Environmental",
  "r.rectified": "Rectified",
  "r.false_positive": "False positive",
  "r.sensor_fault": "Sensor fault",
  "r.exempt": "Exempt",
  "g.warning": "Warning (first)",
  "g.referred": "Referred for penalty",
  "g.inspection": "Inspection needed",
  "rv.pending": "Pending",
  "rv.approved": "Approved",
  "rv.rejected": "Rejected",
  "role.admin": "Admin",
  "role.command_centre": "Command centre",
  "role.operator": "Operator",
  "role.emergency": "Emergency",
  "role.enforcement": "Enforcement",
  "role.legal_reviewer": "Legal reviewer",
  "role.viewer": "Viewer",
};

const CATALOGUES: Record<Lang, Record<Key, string>> = { "zh-CN": zh, en };

function stored(): Lang {
  try {
    return localStorage.getItem(KEY) === "en" ? "en" : "zh-CN";
  } catch {
    return "zh-CN";
  }
}

let current: Lang = stored();
const listeners = new Set<(lang: Lang) => void>();

export const lang = (): Lang => current;

export function setLang(next: Lang): void {
  current = next;
  try {
    localStorage.setItem(KEY, next);
  } catch {
    // A browser without storage keeps the choice for this page only.
  }
  document.documentElement.lang = next;
  for (const listener of listeners) listener(next);
}

/** A word of the current language; `{name}` placeholders are filled from `vars`. */
export function t(key: Key, vars: Record<string, string | number> = {}): string {
  const text = CATALOGUES[current][key];
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? `{${name}}`));
}

/** A word looked up by a key made at run time (a state, a kind); the key itself when unknown. */
export function tk(prefix: string, value: string): string {
  const key = `${prefix}.${value}`;
  return key in zh ? t(key as Key) : value;
}

/** Re-render on a language change. */
export function useLang(): Lang {
  const [value, set] = useState(current);
  useEffect(() => {
    listeners.add(set);
    return () => void listeners.delete(set);
  }, []);
  return value;
}

document.documentElement.lang = current;
