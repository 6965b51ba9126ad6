/*
 * CSV for the exports people open in spreadsheets and other systems import (the assessment
 * report, the credit record): RFC 4180, fields joined by commas, records ended by CRLF, a field
 * quoted when it holds a quote, comma, CR or LF or starts or ends with white space, quotes
 * doubled. Text that starts with `=`, `+`, `-`, `@`, a tab or a CR gets a leading `'` so a
 * spreadsheet shows it instead of running it as a formula (CSV injection).
 */

export type Cell = string | number | null;

/** One CSV field. */
export function csvField(value: Cell): string {
  if (value === null) return "";
  if (typeof value === "number") return String(value);
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Records as CSV: fields joined by commas, records ended by CRLF (RFC 4180 §2). */
export function toCsv(records: ReadonlyArray<readonly Cell[]>): string {
  return records.map((r) => `${r.map(csvField).join(",")}\r\n`).join("");
}
