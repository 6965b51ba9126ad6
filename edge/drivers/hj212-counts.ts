/**
 * The HJ 212 driver's counters, reported by `stats()` (docs/edge-drivers.md lists what each
 * means). Every refused byte, frame, factor and sample lands in one of them.
 */
export const HJ212_COUNTERS = [
  // Connections (hj212-server.ts)
  "connections",
  "connectionsRefused",
  "idleTimeouts",
  "frameTimeouts",
  "socketErrors",
  "replyBacklogOverflows",
  "bytesIn",
  // Framing (hj212-session.ts)
  "frames",
  "lenientCrcFrames",
  "crcMismatches",
  "garbage",
  "garbageBytes",
  "badLength",
  "frameTooLong",
  "truncated",
  "bufferOverflows",
  // Frames to samples (hj212-intake.ts)
  "badSegments",
  "commands",
  "dataFrames",
  "ignoredData",
  "splitPieces",
  "splitDuplicates",
  "splitUnassembled",
  "unknownMn",
  "badDataTime",
  "unmappedFactors",
  "badValues",
  "clampedValues",
  "duplicateFrames",
  "samples",
  "sinkRefused",
  "replies9014",
  "replies9011",
] as const;
export type Hj212Counter = (typeof HJ212_COUNTERS)[number];
export type Hj212Counts = Record<Hj212Counter, number>;

export function zeroCounts(): Hj212Counts {
  return Object.fromEntries(HJ212_COUNTERS.map((name) => [name, 0])) as Hj212Counts;
}
