/*
 * Canonical JSON, RFC 8785 (JSON Canonicalization Scheme): object members sorted by their names
 * as UTF-16 code units, no whitespace, strings escaped as ECMAScript JSON.stringify escapes them,
 * numbers in ECMAScript Number-to-string form. JSON.stringify already does the last two (RFC 8785
 * §3.2.2.2, §3.2.2.3 are defined by it), so only the member order and the layout are ours.
 * Evidence hashes are over this text, so a third party with any RFC 8785 library can verify.
 */

/** The canonical text of a JSON value. Refuses what JSON cannot carry (NaN, Infinity, undefined in arrays). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value
      .map((item: unknown) => {
        if (item === undefined) throw new TypeError("undefined in an array has no JSON form");
        return canonicalJson(item);
      })
      .join(",")}]`;
  }
  if (typeof value === "object") {
    // Default sort compares UTF-16 code units, which is what RFC 8785 §3.2.3 asks for.
    const members = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
    return `{${members.join(",")}}`;
  }
  throw new TypeError(`a ${typeof value} has no JSON form`);
}
