import { formatHj212Crc, hj212Crc } from "./crc.js";
import type { DataSegment } from "./segment.js";

/**
 * Replies of the platform to a device (docs/hj212.md, Commands and replies): a reply keeps the request's QN, uses
 * ST=91 (system interaction) and Flag=4 (2017 edition, no acknowledgement asked). 9014 (data
 * answered) carries `CP=&&&&`; 9011 (request answered) carries the QnRtn in its CP.
 */

/** QnRtn values of 9011 (HJ 212-2017, table "请求命令返回表"). */
export const QN_RTN = {
  ready: 1,
  rejected: 2,
  badPassword: 3,
  badMn: 4,
  badSt: 5,
  badFlag: 6,
  badQn: 7,
  badCn: 8,
  badCrc: 9,
  unknown: 100,
} as const;
export type QnRtn = (typeof QN_RTN)[keyof typeof QN_RTN];

export const REPLY_ST = "91";
export const REPLY_FLAG = 4;

/** The length field holds 4 decimal digits. */
const MAX_SEGMENT_BYTES = 9_999;

const utf8 = new TextEncoder();

/** Whom a reply goes to: the request's QN (if it had one), password and device id. */
export interface ReplyTarget {
  readonly qn?: string;
  readonly pw?: string;
  readonly mn: string;
}

/**
 * Wraps a data segment into a frame: `##` + byte length + segment + CRC + CR LF.
 * Throws a RangeError for a segment longer than the length field can state (a programming error:
 * replies are short).
 */
export function encodeFrame(segment: string): string {
  const bytes = utf8.encode(segment);
  if (bytes.length > MAX_SEGMENT_BYTES) {
    throw new RangeError(
      `a data segment holds at most ${MAX_SEGMENT_BYTES} bytes, got ${bytes.length}`,
    );
  }
  return `##${String(bytes.length).padStart(4, "0")}${segment}${formatHj212Crc(hj212Crc(bytes))}\r\n`;
}

function replySegment(to: ReplyTarget, cn: string, cp: string): string {
  const fields = [
    ...(to.qn === undefined ? [] : [`QN=${to.qn}`]),
    `ST=${REPLY_ST}`,
    `CN=${cn}`,
    ...(to.pw === undefined ? [] : [`PW=${to.pw}`]),
    `MN=${to.mn}`,
    `Flag=${REPLY_FLAG}`,
    `CP=&&${cp}&&`,
  ];
  return fields.join(";");
}

/** 9014, data answered: the device may drop the data from its resend queue. */
export function dataAnsweredReply(to: ReplyTarget): string {
  return encodeFrame(replySegment(to, "9014", ""));
}

/** 9011, request answered, with the QnRtn saying whether the request will be executed. */
export function requestAnsweredReply(to: ReplyTarget, qnRtn: QnRtn): string {
  return encodeFrame(replySegment(to, "9011", `QnRtn=${qnRtn}`));
}

export type ReplyPlan =
  | { readonly reply: "none"; readonly reason: string }
  | { readonly reply: "9014" }
  | { readonly reply: "9011"; readonly qnRtn: QnRtn };

/**
 * Which reply a parsed frame asks for. Only Flag bit A asks for one (2005 devices without Flag
 * get none). Uploads (CN 2xxx: 2011, 2051, 2061, 2031, …) are answered 9014. Replies (CN 9xxx)
 * are never answered. Any other command is a request the gateway does not execute: 9011 with
 * QnRtn 2 (rejected), so the device stops retrying instead of waiting for an execution result.
 */
export function planReply(segment: Pick<DataSegment, "cn" | "ackRequested">): ReplyPlan {
  if (!segment.ackRequested) return { reply: "none", reason: "Flag bit A is not set" };
  if (segment.cn.startsWith("9")) {
    return { reply: "none", reason: `CN ${segment.cn} is itself a reply` };
  }
  if (segment.cn.startsWith("2")) return { reply: "9014" };
  return { reply: "9011", qnRtn: QN_RTN.rejected };
}

/** The frame to send back for a parsed frame, or undefined when it asks for none. */
export function replyFor(segment: DataSegment): string | undefined {
  const plan = planReply(segment);
  switch (plan.reply) {
    case "none":
      return undefined;
    case "9014":
      return dataAnsweredReply(segment);
    case "9011":
      return requestAnsweredReply(segment, plan.qnRtn);
  }
}

/**
 * The reply to a frame refused before it could be parsed (a CRC mismatch, or a segment that does
 * not parse): 9011 with the given QnRtn (`badCrc` for a CRC mismatch). The header is read from the
 * untrusted text best-effort; the reply is sent only when that text asks for acknowledgement
 * (Flag bit A) and names a plausible MN, so no device gets a frame it did not ask for. Never a
 * 9014: that would tell the device its data arrived, and it would stop resending it.
 */
export function rejectionReply(segmentText: string, qnRtn: QnRtn): string | undefined {
  const cpAt = segmentText.indexOf("CP=");
  const header = cpAt === -1 ? segmentText : segmentText.slice(0, cpAt);
  const fields = new Map<string, string>();
  for (const item of header.split(";")) {
    const eq = item.indexOf("=");
    if (eq > 0 && !fields.has(item.slice(0, eq))) fields.set(item.slice(0, eq), item.slice(eq + 1));
  }
  const flag = fields.get("Flag");
  if (flag === undefined || !/^\d{1,3}$/.test(flag) || (Number(flag) & 1) === 0) return undefined;
  // Echoed into the reply, so nothing that could break the frame (CR, LF, `;`, `&`, `#`).
  const safe = /^[\x21-\x22\x24-\x25\x27-\x3a\x3c-\x7e]{1,64}$/;
  const mn = fields.get("MN");
  if (mn === undefined || !safe.test(mn)) return undefined;
  const qn = fields.get("QN");
  const pw = fields.get("PW");
  return requestAnsweredReply(
    {
      mn,
      ...(qn !== undefined && /^\d{1,20}$/.test(qn) ? { qn } : {}),
      ...(pw !== undefined && safe.test(pw) ? { pw } : {}),
    },
    qnRtn,
  );
}
