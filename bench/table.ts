/** Plain-text tables for bench output: fixed-width columns, text left-aligned, figures right. */

export type Align = "left" | "right";

export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly Align[] = [],
): string {
  // A row shorter than the header is a label and free text (a reason instead of figures): its
  // last cell runs on and does not widen the columns.
  const isFree = (row: readonly string[]) => row.length < headers.length;
  const widths = headers.map((header, col) =>
    Math.max(
      header.length,
      ...rows.map((row) => (isFree(row) && col >= row.length - 1 ? 0 : (row[col] ?? "").length)),
    ),
  );
  const line = (cells: readonly string[]): string =>
    isFree(cells)
      ? cells
          .map((cell, col) => (col < cells.length - 1 ? cell.padEnd(widths[col] ?? 0) : cell))
          .join("  ")
      : widths
          .map((width, col) => {
            const cell = cells[col] ?? "";
            return (align[col] ?? (col === 0 ? "left" : "right")) === "left"
              ? cell.padEnd(width)
              : cell.padStart(width);
          })
          .join("  ")
          .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(headers), rule, ...rows.map(line)].join("\n");
}

/** 12345.6 → "12,346". */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const upper = sorted[mid] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[mid - 1] ?? Number.NaN) + upper) / 2;
}
