import { z } from "zod";

/**
 * Data-quality flag carried by every reading.
 *
 * The values follow the HJ 212 data flags (HJ 212-2017 §6.6.3): N normal, M maintenance,
 * C calibration, D fault, T over range, B communication fault, F stopped, S manual entry.
 * Only `normal` is usable as enforcement evidence; every other flag is stored and marked.
 */
export const QualityFlag = z.enum([
  "normal",
  "maintenance",
  "calibration",
  "fault",
  "over_range",
  "comm_fault",
  "stopped",
  "manual",
]);
export type QualityFlag = z.infer<typeof QualityFlag>;

/** HJ 212 data-flag letter for each quality flag, and back. */
export const HJ212_FLAG_BY_QUALITY = {
  normal: "N",
  maintenance: "M",
  calibration: "C",
  fault: "D",
  over_range: "T",
  comm_fault: "B",
  stopped: "F",
  manual: "S",
} as const satisfies Record<QualityFlag, string>;
