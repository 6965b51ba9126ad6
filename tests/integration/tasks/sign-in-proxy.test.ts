import { afterEach, describe, expect, it } from "vitest";
import type { ApiDeps } from "../../../cli/runtime/api.js";
import { openTaskApi, type TaskApi } from "../../support/task-api.js";

/*
 * Sign-in throttling per client address behind a reverse proxy (http.trustProxy): the address
 * counted is the one the trusted proxy reports in X-Forwarded-For; without a trusted proxy the
 * header is ignored, so a guesser cannot dodge the per-address bound by writing it.
 */

const PROXY = "10.9.0.1";
let t: TaskApi | undefined;

afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function open(trustProxy: ApiDeps["trustProxy"]): Promise<TaskApi> {
  t = await openTaskApi("cw-proxy-", { trustProxy });
  return t;
}

/** A failed sign-in of a user name nobody has, through the proxy for `client`. */
const guess = (api: TaskApi, n: number, client: string) =>
  api.app.inject({
    method: "POST",
    url: "/api/v1/session",
    payload: { username: `nobody.${n}`, password: "not a password at all" },
    remoteAddress: PROXY,
    headers: { "x-forwarded-for": client },
  });

describe("sign-in throttling behind a proxy (http.trustProxy)", () => {
  it("counts the address the trusted proxy reports: one client is stopped, its neighbour is not", async () => {
    const api = await open([PROXY]);
    for (let i = 0; i < 20; i++) expect((await guess(api, i, "203.0.113.7")).statusCode).toBe(401);
    expect((await guess(api, 20, "203.0.113.7")).statusCode).toBe(429);
    expect((await guess(api, 21, "203.0.113.8")).statusCode).toBe(401);
  });

  it("trusts a hop count the same way", async () => {
    const api = await open(1);
    for (let i = 0; i < 20; i++) await guess(api, i, "198.51.100.3");
    expect((await guess(api, 20, "198.51.100.3")).statusCode).toBe(429);
    expect((await guess(api, 21, "198.51.100.4")).statusCode).toBe(401);
  });

  it("ignores X-Forwarded-For from an untrusted peer: a forged header does not reset the count", async () => {
    const api = await open(false);
    for (let i = 0; i < 20; i++) await guess(api, i, `192.0.2.${i}`);
    const forged = await guess(api, 20, "192.0.2.200");
    expect(forged.statusCode).toBe(429);
  });
});
