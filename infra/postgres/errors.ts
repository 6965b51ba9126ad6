/**
 * PostgreSQL refused a statement for its data (SQLSTATE class 22, data exception, or 23,
 * integrity constraint violation): sent again as it is, it would be refused again. A server error
 * (pg's DatabaseError carries a severity), not a connection's.
 */
export function isDataRefusal(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (
    error instanceof Error && "severity" in error && typeof code === "string" && /^2[23]/.test(code)
  );
}
