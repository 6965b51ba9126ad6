import type { Provided, ServiceHandle } from "./provide.js";

/**
 * The service for a suite, or undefined so the suite can `describe.runIf(service)`. With
 * CITYWATCH_REQUIRE_SERVICES=1 (CI) a missing service throws instead, so it cannot pass by skipping.
 */
export async function requireService(
  suite: string,
  provideService: () => Promise<Provided>,
): Promise<ServiceHandle | undefined> {
  const provided = await provideService();
  if (provided.ok) return provided.service;
  if (process.env["CITYWATCH_REQUIRE_SERVICES"] === "1") {
    throw new Error(`${suite}: ${provided.reason} (required because CITYWATCH_REQUIRE_SERVICES=1)`);
  }
  process.stderr.write(`[skip] ${suite}: ${provided.reason}\n`);
  return undefined;
}
