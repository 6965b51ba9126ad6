import { z } from "zod";

const EARLIEST = Date.UTC(2000, 0, 1);
const LATEST = Date.UTC(2100, 0, 1);

/**
 * An instant as an RFC 3339 timestamp with an explicit offset (`Z` or `+08:00`).
 * Devices in China usually send local time; the offset makes it unambiguous.
 * Years outside 2000–2099 are refused as clock faults (an unset RTC reads 1970 or 2000-01-01
 * on many loggers, but a real reading from before 2000 cannot arrive today).
 * Freshness relative to now (too far in the future, too old) is the ingest's decision, not the schema's.
 */
export const Timestamp = z.iso
  .datetime({
    offset: true,
    error: "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-27T08:00:00+08:00",
  })
  .refine(
    (value) => {
      const ms = Date.parse(value);
      return ms >= EARLIEST && ms < LATEST;
    },
    { error: "timestamp is outside 2000-01-01..2099-12-31 (device clock not set?)" },
  );
export type Timestamp = z.infer<typeof Timestamp>;

/** A calendar date, `YYYY-MM-DD`. */
export const CalendarDate = z.iso.date({ error: "must be a date, YYYY-MM-DD" });
export type CalendarDate = z.infer<typeof CalendarDate>;
