import type { EvidencePackageV2 } from "../contracts/model/evidence.js";

/*
 * The value of an evidence package recomputed from the package alone: its usable readings, its
 * window and its method's parts (computation.conditionType, quantity, aggregate, deviceId, …).
 * Independent of the rules engine (no import from rules/): the sealer fills
 * `computation.recomputed` with it, and a verifier (tasks/evidence-seal.ts, `citywatch evidence
 * verify`, anyone with the package) calls it to check that the stated value follows from the
 * readings. Sums run over the readings in time order, as the engine's do, so an energy mean or a
 * mean recomputed is the engine's value to the last bit.
 */

/** What recomputation reads of a package (a sealed package or a body before sealing). */
export type Recomputable = Pick<EvidencePackageV2, "computation" | "readings" | "devices"> & {
  readonly vote?: EvidencePackageV2["vote"] | undefined;
};

type Reading = EvidencePackageV2["readings"][number];

/** The aggregate of numbers, oldest first, as the engine reduces a window (rules/engine/reduce.ts). */
export function aggregateOf(aggregate: string, values: readonly number[]): number | null {
  if (values.length === 0) return null;
  switch (aggregate) {
    case "latest":
      return values[values.length - 1] as number;
    case "max":
      return values.reduce((a, b) => (b > a ? b : a), Number.NEGATIVE_INFINITY);
    case "min":
      return values.reduce((a, b) => (b < a ? b : a), Number.POSITIVE_INFINITY);
    case "energy_mean": {
      let sum = 0;
      for (const v of values) sum += 10 ** (v / 10);
      return 10 * Math.log10(sum / values.length);
    }
    case "mean": {
      let sum = 0;
      for (const v of values) sum += v;
      return sum / values.length;
    }
    default:
      return null;
  }
}

const ms = (iso: string): number => Date.parse(iso);

/** Usable readings of `deviceId` (any device when null) holding `quantity`, oldest first. */
function usableOf(
  readings: readonly Reading[],
  deviceId: string | null | undefined,
  quantity: string,
): Reading[] {
  return readings
    .filter(
      (r) =>
        r.usable &&
        (deviceId === null || deviceId === undefined || r.deviceId === deviceId) &&
        typeof r.values[quantity] === "number",
    )
    .sort((a, b) => ms(a.ts) - ms(b.ts));
}

/** A device's value over the window `(from, to]` (a point rule: its newest reading there). */
function windowValue(
  readings: readonly Reading[],
  deviceId: string | null | undefined,
  quantity: string,
  aggregate: string,
  from: number,
  to: number,
): number | null {
  const inWindow = usableOf(readings, deviceId, quantity).filter((r) => {
    const t = ms(r.ts);
    return t > from && t <= to;
  });
  return aggregateOf(
    aggregate,
    inWindow.map((r) => r.values[quantity] as number),
  );
}

/**
 * The deciding value recomputed from the package's usable readings, by condition type:
 * threshold and k_of_n — the aggregate (energy mean, mean, max, min, latest) of the deciding
 * device's readings in `(windowStart, windowEnd]`; rate_of_rise — newest minus oldest there;
 * state — whether each term's newest reading has the state, all or any of them; deadman — the
 * silence in ms from the device's last reading to `windowEnd` (the decision); quality — whether
 * the newest reading carries one of the flags, or (calibrationExpired) a device's calibration had
 * expired. null: the package does not hold what it needs.
 */
export function recompute(body: Recomputable): number | boolean | null {
  const c = body.computation;
  const readings = body.readings;
  const from = ms(c.windowStart);
  const to = ms(c.windowEnd);
  switch (c.conditionType) {
    case "threshold":
    case "k_of_n":
      if (c.quantity === null || c.aggregate === null) return null;
      return windowValue(readings, c.deviceId, c.quantity, c.aggregate, from, to);
    case "rate_of_rise": {
      if (c.quantity === null) return null;
      const q = c.quantity;
      const used = usableOf(readings, c.deviceId, q).filter(
        (r) => ms(r.ts) > from && ms(r.ts) <= to,
      );
      const first = used[0];
      const last = used[used.length - 1];
      if (first === undefined || last === undefined) return null;
      return (last.values[q] as number) - (first.values[q] as number);
    }
    case "state": {
      if (c.terms === undefined || c.terms.length === 0) return null;
      const holds = c.terms.map((t) => {
        const newest = usableOf(readings, c.deviceId, t.quantity)
          .filter((r) => ms(r.ts) <= to)
          .at(-1);
        // Switch states are recorded as 1 (on) and 0 (off).
        return newest !== undefined && newest.values[t.quantity] === (t.is ? 1 : 0);
      });
      return c.match === "any" ? holds.some(Boolean) : holds.every(Boolean);
    }
    case "deadman": {
      const last = readings
        .filter((r) => c.deviceId == null || r.deviceId === c.deviceId)
        .map((r) => ms(r.ts))
        .filter((t) => t <= to)
        .sort((a, b) => a - b)
        .at(-1);
      return last === undefined ? null : to - last;
    }
    case "quality": {
      const newest = readings
        .filter((r) => c.deviceId == null || r.deviceId === c.deviceId)
        .filter((r) => ms(r.ts) <= to)
        .sort((a, b) => ms(a.ts) - ms(b.ts))
        .at(-1);
      const flagged = newest !== undefined && (c.flags ?? []).includes(newest.quality);
      const expired =
        c.calibrationExpired === true &&
        body.devices.some(
          (d) => (c.deviceId == null || d.id === c.deviceId) && d.calibration === "expired",
        );
      if (newest === undefined && c.calibrationExpired !== true) return null;
      return flagged || expired;
    }
    default:
      return null;
  }
}

/**
 * k-of-n packages: each device's value recomputed from its own readings in the package (a
 * latest vote: its newest reading; a windowed vote: its window ending at the decider's), to
 * hold against `vote.devices[].value`. Devices without a vote (value null) get null.
 */
export function recomputeVotes(body: Recomputable): Map<string, number | null> {
  const out = new Map<string, number | null>();
  const c = body.computation;
  if (body.vote === null || body.vote === undefined) return out;
  if (c.quantity === null || c.aggregate === null) return out;
  const to = ms(c.windowEnd);
  for (const d of body.vote.devices) {
    if (d.value === null) {
      out.set(d.deviceId, null);
      continue;
    }
    const own = usableOf(body.readings, d.deviceId, c.quantity);
    const from = c.windowMs === null ? Number.NEGATIVE_INFINITY : to - c.windowMs;
    const end = c.windowMs === null ? Number.POSITIVE_INFINITY : to;
    out.set(
      d.deviceId,
      aggregateOf(
        c.aggregate,
        own
          .filter((r) => ms(r.ts) > from && ms(r.ts) <= end)
          .map((r) => r.values[c.quantity!] as number),
      ),
    );
  }
  return out;
}
