import { describe, expect, it } from "vitest";
import { parseSegment, type DataSegment } from "../../../../edge/hj212/segment.js";
import { VECTOR_1062, VECTOR_2051 } from "./vectors.js";

function parsed(text: string): DataSegment {
  const result = parseSegment(text);
  if (!result.ok) throw new Error(`expected ${text} to parse: ${result.error.reason}`);
  return result.segment;
}

function reason(text: string): string {
  const result = parseSegment(text);
  if (result.ok) throw new Error(`expected ${text} to be refused`);
  expect(result.error.code).toBe("HJ212_BAD_SEGMENT");
  return result.error.reason;
}

describe("parseSegment", () => {
  it("parses the air-quality minute-data vector into its factors and values", () => {
    const segment = parsed(VECTOR_2051);
    expect(segment).toMatchObject({
      qn: "20220513162608370",
      st: "22",
      cn: "2051",
      pw: "123456",
      mn: "JLYP01_AIR01_0001",
      flag: 4,
      ackRequested: false,
      version: "2017",
    });
    expect(segment.packet).toBeUndefined();
    expect(segment.cp.dataTime).toBe("20220513162600");
    expect({ ...segment.cp.params }).toEqual({ DataTime: "20220513162600" });
    expect(segment.cp.factors.map((f) => [f.code, { ...f.fields }])).toEqual([
      ["a21004", { Avg: "4", Flag: "N" }],
      ["a05024", { Avg: "63", Flag: "N" }],
      ["a21026", { Avg: "6", Flag: "N" }],
      ["a21005", { Avg: "0.427", Flag: "N" }],
      ["a34004", { Avg: "14", Flag: "N" }],
      ["a34002", { Avg: "31", Flag: "N" }],
      ["a01007", { Avg: "1", Flag: "N" }],
      ["a01008", { Avg: "11", Flag: "N" }],
      ["a01001", { Avg: "17", Flag: "N" }],
      ["a01002", { Avg: "85", Flag: "N" }],
      ["a01006", { Avg: "95", Flag: "N" }],
    ]);
  });

  it("parses the Appendix A vector: Flag 5 asks for an answer, CP without factors", () => {
    const segment = parsed(VECTOR_1062);
    expect(segment).toMatchObject({ cn: "1062", flag: 5, ackRequested: true, version: "2017" });
    expect({ ...segment.cp.params }).toEqual({ RtdInterval: "30" });
    expect(segment.cp.factors).toEqual([]);
    expect(segment.cp.dataTime).toBeUndefined();
  });

  it("takes a 2005 frame without QN and Flag", () => {
    const segment = parsed(
      "ST=32;CN=2011;PW=123456;MN=88888880000001;CP=&&DataTime=20040516020111;B01-Rtd=36.91;011-Rtd=231.0,011-Flag=N&&",
    );
    expect(segment.qn).toBeUndefined();
    expect(segment.flag).toBeUndefined();
    expect(segment).toMatchObject({ ackRequested: false, version: "2005", mn: "88888880000001" });
    expect(segment.cp.factors.map((f) => f.code)).toEqual(["B01", "011"]);
  });

  it("takes the 17-digit 2005 DataTime by its first 14 digits", () => {
    const segment = parsed("ST=32;CN=2011;MN=X;CP=&&DataTime=20040516020111000;a01001-Rtd=1&&");
    expect(segment.cp.dataTime).toBe("20040516020111");
    expect(segment.cp.params["DataTime"]).toBe("20040516020111000");
  });

  it("reads the edition from Flag >> 2", () => {
    expect(parsed("ST=22;CN=2011;MN=X;Flag=0;CP=&&&&").version).toBe("2005");
    expect(parsed("ST=22;CN=2011;MN=X;Flag=5;CP=&&&&").version).toBe("2017");
    expect(parsed("ST=22;CN=2011;MN=X;Flag=9;CP=&&&&")).toMatchObject({
      version: "2025",
      ackRequested: true,
    });
    expect(parsed("ST=22;CN=2011;MN=X;Flag=12;CP=&&&&").version).toBe("unknown");
  });

  it("reads PNUM and PNO of a split packet", () => {
    const segment = parsed(
      "QN=1;ST=22;CN=2051;MN=X;Flag=7;PNUM=3;PNO=2;CP=&&DataTime=20220513162600;a34002-Avg=31&&",
    );
    expect(segment.packet).toEqual({ count: 3, index: 2 });
    expect(segment.ackRequested).toBe(true);
  });

  it("keeps unknown factors, odd codes and header fields", () => {
    const segment = parsed(
      "ST=22;CN=2011;MN=X;Vendor=7;CP=&&DataTime=20220513162600;zz999-Rtd=1,zz999-Info=ok;__proto__-Rtd=2;LA-Rtd=55.1&&",
    );
    expect(segment.cp.factors.map((f) => [f.code, { ...f.fields }])).toEqual([
      ["zz999", { Rtd: "1", Info: "ok" }],
      ["__proto__", { Rtd: "2" }],
      ["LA", { Rtd: "55.1" }],
    ]);
    expect({ ...segment.extra }).toEqual({ Vendor: "7" });
  });

  it("merges the fields of one factor sent as separate items", () => {
    const segment = parsed(
      "ST=22;CN=2011;MN=X;CP=&&DataTime=20220513162600;a34004-Rtd=12;a34004-Flag=N;a34004-SampleTime=20220513162559&&",
    );
    expect(segment.cp.factors).toHaveLength(1);
    expect({ ...segment.cp.factors[0]?.fields }).toEqual({
      Rtd: "12",
      Flag: "N",
      SampleTime: "20220513162559",
    });
  });

  it("splits a suffix at the first dash only, and a value at the first =", () => {
    const segment = parsed("ST=22;CN=2011;MN=X;CP=&&a01-Day-Data=1=2&&");
    expect({ ...segment.cp.factors[0]?.fields }).toEqual({ "Day-Data": "1=2" });
  });

  it.each([
    ["QN=1;ST=22;CN=2011;MN=X;Flag=4", /no CP/],
    ["ST=22;CN=2011;MN=X;CP=&&a01-Rtd=1", /closing &&/],
    ["ST=22;CN=2011;MN=X;CP=&&&", /closing &&/],
    ["CN=2011;MN=X;CP=&&&&", /ST is missing/],
    ["ST=22;MN=X;CP=&&&&", /CN is missing/],
    ["ST=22;CN=2011;CP=&&&&", /MN is missing/],
    ["ST=22;CN=2011;MN=;CP=&&&&", /MN is missing/],
    ["ST=22;CN=20x1;MN=X;CP=&&&&", /CN "20x1" is not/],
    ["ST=2x;CN=2011;MN=X;CP=&&&&", /ST "2x"/],
    ["QN=abc;ST=22;CN=2011;MN=X;CP=&&&&", /QN "abc"/],
    ["ST=22;CN=2011;MN=X;Flag=A;CP=&&&&", /Flag "A"/],
    ["ST=22;CN=2011;MN=X;Flag=256;CP=&&&&", /Flag "256"/],
    ["ST=22;CN=2011;MN=X;Flag=6;CP=&&&&", /PNUM and PNO are missing/],
    ["ST=22;CN=2011;MN=X;Flag=6;PNUM=2;CP=&&&&", /one of them is missing/],
    ["ST=22;CN=2011;MN=X;Flag=6;PNUM=2;PNO=3;CP=&&&&", /PNO 3 is beyond PNUM 2/],
    ["ST=22;CN=2011;MN=X;Flag=6;PNUM=0;PNO=0;CP=&&&&", /PNUM "0"/],
    ["ST=22;CN=2011;MN=X;ST=23;CP=&&&&", /ST appears twice/],
    ["ST=22;CN;MN=X;CP=&&&&", /"CN" is not name=value/],
    ["ST=22;CN=2011;MN=X;CP=&&a01-Rtd&&", /"a01-Rtd" is not name=value/],
    ["ST=22;CN=2011;MN=X;CP=&&a01-Rtd=1,a01-Rtd=2&&", /a01-Rtd appears twice/],
    ["ST=22;CN=2011;MN=X;CP=&&-Rtd=1&&", /not factor-suffix/],
    ["ST=22;CN=2011;MN=X;CP=&&a01-=1&&", /not factor-suffix/],
    ["ST=22;CN=2011;MN=X;CP=&&DataTime=2022051316&&", /DataTime "2022051316"/],
    ["ST=22;CN=2011;MN=X;CP=&&DataTime=1;DataTime=2&&", /DataTime appears twice/],
  ])("refuses %s with a reason", (text, expected) => {
    expect(reason(text)).toMatch(expected);
  });
});
