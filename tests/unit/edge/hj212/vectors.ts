import { formatHj212Crc, hj212Crc } from "../../../../edge/hj212/crc.js";

/** The public HJ 212 test vectors (HJ 212-2017 Appendix A, and an air-quality minute frame; docs/hj212.md). */
export const VECTOR_1062 =
  "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
export const VECTOR_1062_FRAME = `##0101${VECTOR_1062}1C80\r\n`;

export const VECTOR_2051 =
  "QN=20220513162608370;ST=22;CN=2051;PW=123456;MN=JLYP01_AIR01_0001;Flag=4;CP=&&DataTime=20220513162600;a21004-Avg=4,a21004-Flag=N;a05024-Avg=63,a05024-Flag=N;a21026-Avg=6,a21026-Flag=N;a21005-Avg=0.427,a21005-Flag=N;a34004-Avg=14,a34004-Flag=N;a34002-Avg=31,a34002-Flag=N;a01007-Avg=1,a01007-Flag=N;a01008-Avg=11,a01008-Flag=N;a01001-Avg=17,a01001-Flag=N;a01002-Avg=85,a01002-Flag=N;a01006-Avg=95,a01006-Flag=N&&";
export const VECTOR_2051_FRAME = `##0411${VECTOR_2051}D641\r\n`;

/** Frames a segment the way a device would; `crc` and `tail` let a test imitate the quirks. */
export function frameOf(
  segment: string,
  options: { crc?: string; tail?: string; lowercase?: boolean } = {},
): string {
  const length = String(Buffer.byteLength(segment, "utf8")).padStart(4, "0");
  let crc = options.crc ?? formatHj212Crc(hj212Crc(segment));
  if (options.lowercase === true) crc = crc.toLowerCase();
  return `##${length}${segment}${crc}${options.tail ?? "\r\n"}`;
}

/** mulberry32: a small seeded generator, so a failure can be replayed from its seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
