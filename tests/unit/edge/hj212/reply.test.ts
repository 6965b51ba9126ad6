import { describe, expect, it } from "vitest";
import { checkCrc } from "../../../../edge/hj212/crc.js";
import { Hj212Framer } from "../../../../edge/hj212/framer.js";
import {
  dataAnsweredReply,
  encodeFrame,
  planReply,
  QN_RTN,
  rejectionReply,
  replyFor,
  requestAnsweredReply,
} from "../../../../edge/hj212/reply.js";
import { parseSegment, type DataSegment } from "../../../../edge/hj212/segment.js";
import { frameOf, VECTOR_1062, VECTOR_1062_FRAME, VECTOR_2051 } from "./vectors.js";

function parsed(text: string): DataSegment {
  const result = parseSegment(text);
  if (!result.ok) throw new Error(result.error.reason);
  return result.segment;
}

/** Reads a reply back the way a device would: framer (CRC checked in strict mode), then parser. */
function readBack(frame: string): DataSegment {
  const events = new Hj212Framer().push(frame);
  const [event] = events;
  if (events.length !== 1 || event?.type !== "frame") {
    throw new Error(`not one valid frame: ${JSON.stringify(events)}`);
  }
  return parsed(event.segment);
}

const UPLOAD =
  "QN=20220513162608370;ST=22;CN=2051;PW=123456;MN=JLYP01_AIR01_0001;Flag=5;CP=&&DataTime=20220513162600;a34002-Avg=31,a34002-Flag=N&&";

describe("HJ 212 replies", () => {
  it("encodes a frame the way the test vectors are framed", () => {
    expect(encodeFrame(VECTOR_1062)).toBe(VECTOR_1062_FRAME);
  });

  it("counts UTF-8 bytes in the length field", () => {
    const segment = "ST=91;CN=9014;MN=工地;Flag=4;CP=&&&&";
    expect(segment.length).toBe(34); // UTF-16 units; 工地 is 6 bytes in UTF-8
    expect(encodeFrame(segment).slice(0, 6)).toBe("##0038");
  });

  it("answers data with 9014: QN kept, ST=91, Flag=4, CP=&&&&, a CRC that verifies", () => {
    const reply = dataAnsweredReply(parsed(UPLOAD));
    const segment =
      "QN=20220513162608370;ST=91;CN=9014;PW=123456;MN=JLYP01_AIR01_0001;Flag=4;CP=&&&&";
    expect(reply.startsWith(`##${String(segment.length).padStart(4, "0")}${segment}`)).toBe(true);
    expect(reply.endsWith("\r\n")).toBe(true);
    expect(checkCrc(segment, reply.slice(-6, -2))).toEqual({ ok: true, algorithm: "hj212" });
    expect(readBack(reply)).toMatchObject({
      qn: "20220513162608370",
      st: "91",
      cn: "9014",
      flag: 4,
      ackRequested: false,
      mn: "JLYP01_AIR01_0001",
    });
  });

  it("answers a request with 9011 and its QnRtn", () => {
    const reply = requestAnsweredReply(parsed(VECTOR_1062), QN_RTN.ready);
    const back = readBack(reply);
    expect(back).toMatchObject({ qn: "20160801085857223", st: "91", cn: "9011", flag: 4 });
    expect({ ...back.cp.params }).toEqual({ QnRtn: "1" });
  });

  it("leaves out QN and PW when the device sent none (2005)", () => {
    const reply = dataAnsweredReply({ mn: "88888880000001" });
    expect(reply).toMatch(/^##\d{4}ST=91;CN=9014;MN=88888880000001;Flag=4;CP=&&&&[0-9A-F]{4}\r\n$/);
    expect(readBack(reply).qn).toBeUndefined();
  });

  it("plans the reply by Flag bit A and CN", () => {
    expect(planReply({ cn: "2051", ackRequested: false })).toEqual({
      reply: "none",
      reason: "Flag bit A is not set",
    });
    for (const cn of ["2011", "2051", "2061", "2031"]) {
      expect(planReply({ cn, ackRequested: true })).toEqual({ reply: "9014" });
    }
    expect(planReply({ cn: "9014", ackRequested: true })).toMatchObject({ reply: "none" });
    expect(planReply({ cn: "1062", ackRequested: true })).toEqual({
      reply: "9011",
      qnRtn: QN_RTN.rejected,
    });
  });

  it("gives the frame to send, or none", () => {
    expect(replyFor(parsed(VECTOR_2051))).toBeUndefined(); // Flag=4: no answer asked
    const reply = replyFor(parsed(UPLOAD));
    expect(reply).toBeDefined();
    expect(readBack(reply ?? "")).toMatchObject({ cn: "9014", qn: "20220513162608370" });
  });

  it("answers a bad-CRC frame that asks for an answer with 9011 QnRtn=9, never 9014", () => {
    const [event] = new Hj212Framer().push(frameOf(UPLOAD, { crc: "0000" }));
    expect(event).toMatchObject({ code: "HJ212_CRC_MISMATCH" });
    if (event?.type !== "error" || event.code !== "HJ212_CRC_MISMATCH") return;
    const reply = rejectionReply(event.segment, QN_RTN.badCrc);
    const back = readBack(reply ?? "");
    expect(back).toMatchObject({ cn: "9011", qn: "20220513162608370", mn: "JLYP01_AIR01_0001" });
    expect(back.cp.params["QnRtn"]).toBe("9");
  });

  it("sends no rejection when the frame asked for no answer or names no usable MN", () => {
    expect(rejectionReply(VECTOR_2051, QN_RTN.badCrc)).toBeUndefined(); // Flag=4
    expect(rejectionReply("ST=22;CN=2011;MN=X;CP=&&&&", QN_RTN.badCrc)).toBeUndefined(); // no Flag
    expect(rejectionReply("QN=1;ST=22;CN=2011;Flag=5;CP=&&&&", QN_RTN.badCrc)).toBeUndefined();
    expect(
      rejectionReply("QN=1;ST=22;CN=2011;MN=A##0099;Flag=5;CP=&&&&", QN_RTN.badCrc),
    ).toBeUndefined();
    expect(rejectionReply("\u0000\u00ff", QN_RTN.badCrc)).toBeUndefined();
  });

  it("drops an unusable QN or PW from a rejection rather than echo it", () => {
    const reply = rejectionReply("QN=12ab;ST=22;CN=2011;PW=a&b;MN=X;Flag=5;CP=&&&&", QN_RTN.badCrc);
    const back = readBack(reply ?? "");
    expect(back.qn).toBeUndefined();
    expect(back.pw).toBeUndefined();
  });
});
