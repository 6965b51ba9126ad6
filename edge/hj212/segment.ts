/**
 * Parser of the HJ 212 data segment (docs/hj212.md, Data segment):
 * `QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;[PNUM=…;PNO=…;]CP=&&…&&`.
 *
 * Tolerant where field devices deviate (QN, Flag and PW may be missing, header fields may come in
 * any order, MN has no fixed shape, DataTime may have 17 digits) and precise where a value would
 * be guessed: a malformed segment is returned as an error with a reason, never thrown.
 */

/** Protocol edition from `Flag >> 2` (0 = 2005, 1 = 2017, 2 = 2025); 2005 devices omit Flag. */
export type Hj212Version = "2005" | "2017" | "2025" | "unknown";

/** One monitoring factor of the CP: `a34004-Avg=14,a34004-Flag=N` → `{ code: "a34004", fields: { Avg: "14", Flag: "N" } }`. */
export interface Factor {
  /** The factor code, the part of the field name before the first `-` (`a34004`, `LA`, `a50001`). */
  readonly code: string;
  /** Values by suffix (`Rtd`, `Min`, `Avg`, `Max`, `ZsRtd`, `Cou`, `Flag`, `SampleTime`, …), as sent. */
  readonly fields: Readonly<Record<string, string>>;
}

/** The command parameters, `CP=&&…&&`. */
export interface CommandParameters {
  /** `DataTime` as 14 digits `YYYYMMDDhhmmss` (the 2005 17-digit form cut to its first 14). */
  readonly dataTime?: string;
  /** Fields without a factor code (`DataTime`, `RtdInterval`, `QnRtn`, `SystemTime`, …), as sent. */
  readonly params: Readonly<Record<string, string>>;
  /** Factors in the order they first appear; unknown codes are kept. */
  readonly factors: readonly Factor[];
}

export interface DataSegment {
  /** Request id `YYYYMMDDhhmmsszzz`; 2005 devices often omit it. */
  readonly qn?: string;
  /** System code (22 air quality, 23 noise, 39 construction dust, 91 system interaction, …). */
  readonly st: string;
  /** Command code (2011 real-time, 2051 minute, 2061 hourly, 2031 daily data, 9014 data answered, …). */
  readonly cn: string;
  readonly pw?: string;
  /** Device id as sent; not validated (real devices send many shapes, docs/hj212.md). */
  readonly mn: string;
  /** The Flag number as sent; 2005 devices often omit it. */
  readonly flag?: number;
  /** Flag bit 0 (A): the receiver must acknowledge. */
  readonly ackRequested: boolean;
  readonly version: Hj212Version;
  /** Present on a piece of a split packet (Flag bit 1, D): PNUM pieces, this one is PNO (1-based). */
  readonly packet?: { readonly count: number; readonly index: number };
  /** Header fields this parser does not know, kept as sent. */
  readonly extra: Readonly<Record<string, string>>;
  readonly cp: CommandParameters;
}

export interface SegmentError {
  readonly code: "HJ212_BAD_SEGMENT";
  readonly reason: string;
}

export type SegmentResult =
  | { readonly ok: true; readonly segment: DataSegment }
  | { readonly ok: false; readonly error: SegmentError };

export type CommandParametersResult =
  | { readonly ok: true; readonly cp: CommandParameters }
  | { readonly ok: false; readonly error: SegmentError };

const FLAG_ACK = 0b01;
const FLAG_SPLIT = 0b10;
const VERSIONS: Readonly<Record<number, Hj212Version>> = { 0: "2005", 1: "2017", 2: "2025" };
const CP_OPEN = "CP=&&";
const CP_CLOSE = "&&";

/** A record without a prototype, so codes such as `__proto__` or `constructor` are plain keys. */
function emptyRecord(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

function bad(reason: string): { ok: false; error: SegmentError } {
  return { ok: false, error: { code: "HJ212_BAD_SEGMENT", reason } };
}

function show(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

function splitPair(text: string): [string, string] | undefined {
  const eq = text.indexOf("=");
  return eq <= 0 ? undefined : [text.slice(0, eq), text.slice(eq + 1)];
}

/** Parses the text between `CP=&&` and the closing `&&`. */
export function parseCommandParameters(text: string): CommandParametersResult {
  const params = emptyRecord();
  const factors = new Map<string, Record<string, string>>();
  for (const item of text.split(";")) {
    for (const field of item.split(",")) {
      if (field === "") continue;
      const pair = splitPair(field);
      if (pair === undefined) return bad(`CP field ${show(field)} is not name=value`);
      const [name, value] = pair;
      const dash = name.indexOf("-");
      if (dash === -1) {
        if (name in params) return bad(`CP field ${name} appears twice`);
        params[name] = value;
        continue;
      }
      const code = name.slice(0, dash);
      const suffix = name.slice(dash + 1);
      if (code === "" || suffix === "") {
        return bad(`CP field name ${show(name)} is not factor-suffix`);
      }
      let fields = factors.get(code);
      if (fields === undefined) {
        fields = emptyRecord();
        factors.set(code, fields);
      }
      if (suffix in fields) return bad(`CP field ${name} appears twice`);
      fields[suffix] = value;
    }
  }
  const cp = {
    params,
    factors: [...factors].map(([code, fields]) => ({ code, fields })),
  };
  const dataTime = params["DataTime"];
  if (dataTime === undefined) return { ok: true, cp };
  // HJ 212-2017 §6.3: YYYYMMDDhhmmss; 2005 devices sometimes append milliseconds (17 digits).
  if (!/^\d{14}(\d{3})?$/.test(dataTime)) {
    return bad(
      `DataTime ${show(dataTime)} is not YYYYMMDDhhmmss (14 digits, or 17 in the 2005 form)`,
    );
  }
  return { ok: true, cp: { ...cp, dataTime: dataTime.slice(0, 14) } };
}

const HEADER_FIELDS = new Set(["QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO"]);

function parseHeader(
  text: string,
):
  | { ok: true; fields: Record<string, string>; extra: Record<string, string> }
  | ReturnType<typeof bad> {
  const fields = emptyRecord();
  const extra = emptyRecord();
  for (const item of text.split(";")) {
    if (item === "") continue;
    const pair = splitPair(item);
    if (pair === undefined) return bad(`header field ${show(item)} is not name=value`);
    const [name, value] = pair;
    const target = HEADER_FIELDS.has(name) ? fields : extra;
    if (name in target) return bad(`header field ${name} appears twice`);
    target[name] = value;
  }
  return { ok: true, fields, extra };
}

function packetNumber(name: string, value: string): number | string {
  if (!/^\d{1,4}$/.test(value) || Number(value) < 1) {
    return `${name} ${show(value)} is not a positive integer of at most 4 digits`;
  }
  return Number(value);
}

/** Parses a data segment, from `QN=`/`ST=` up to and including the final `&&`. Never throws. */
export function parseSegment(text: string): SegmentResult {
  // The CP is last and may itself hold `;`, so the header ends at the first `CP=&&` that starts
  // a field.
  const cpAt = text.startsWith(CP_OPEN) ? 0 : text.indexOf(`;${CP_OPEN}`) + 1;
  if (cpAt === 0 && !text.startsWith(CP_OPEN)) return bad("no CP=&&…&& in the segment");
  const bodyAt = cpAt + CP_OPEN.length;
  if (!text.endsWith(CP_CLOSE) || text.length - CP_CLOSE.length < bodyAt) {
    return bad("the segment does not end with the CP's closing &&");
  }

  const header = parseHeader(text.slice(0, cpAt));
  if (!header.ok) return header;
  const { fields, extra } = header;

  const { ST: st, CN: cn, MN: mn, QN: qn, PW: pw, Flag: flagText } = fields;
  if (st === undefined) return bad("ST is missing");
  if (!/^\d{1,4}$/.test(st)) return bad(`ST ${show(st)} is not a system code`);
  if (cn === undefined) return bad("CN is missing");
  if (!/^\d{4}$/.test(cn)) return bad(`CN ${show(cn)} is not a 4-digit command code`);
  if (mn === undefined || mn === "") return bad("MN is missing");
  if (qn !== undefined && !/^\d{1,20}$/.test(qn)) return bad(`QN ${show(qn)} is not digits`);

  let flag: number | undefined;
  if (flagText !== undefined) {
    if (!/^\d{1,3}$/.test(flagText) || Number(flagText) > 255) {
      return bad(`Flag ${show(flagText)} is not a number 0..255`);
    }
    flag = Number(flagText);
  }

  let packet: { count: number; index: number } | undefined;
  const { PNUM: pnumText, PNO: pnoText } = fields;
  if (pnumText !== undefined || pnoText !== undefined) {
    if (pnumText === undefined || pnoText === undefined) {
      return bad("PNUM and PNO come together: one of them is missing");
    }
    const count = packetNumber("PNUM", pnumText);
    if (typeof count === "string") return bad(count);
    const index = packetNumber("PNO", pnoText);
    if (typeof index === "string") return bad(index);
    if (index > count) return bad(`PNO ${index} is beyond PNUM ${count}`);
    packet = { count, index };
  } else if (flag !== undefined && (flag & FLAG_SPLIT) !== 0) {
    return bad("Flag marks a split packet (D) but PNUM and PNO are missing");
  }

  const cp = parseCommandParameters(text.slice(bodyAt, text.length - CP_CLOSE.length));
  if (!cp.ok) return cp;

  const segment: DataSegment = {
    st,
    cn,
    mn,
    ackRequested: flag !== undefined && (flag & FLAG_ACK) !== 0,
    version: flag === undefined ? "2005" : (VERSIONS[flag >> 2] ?? "unknown"),
    extra,
    cp: cp.cp,
    ...(qn === undefined ? {} : { qn }),
    ...(pw === undefined ? {} : { pw }),
    ...(flag === undefined ? {} : { flag }),
    ...(packet === undefined ? {} : { packet }),
  };
  return { ok: true, segment };
}
