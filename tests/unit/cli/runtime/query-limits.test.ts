import { describe, expect, it } from "vitest";
import { callerKey } from "../../../../cli/runtime/query-limits.js";

/*
 * Whose readings queries count against one caller's bound (cli/runtime/query-limits.ts): screens
 * of a command centre behind one NAT address, each signed in with its own session, must not share
 * one bound of four queries.
 */

const request = (headers: Record<string, string>, ip = "203.0.113.7") => ({ headers, ip });

describe("callerKey", () => {
  it("counts a bearer token as its own caller, whatever the address", () => {
    expect(callerKey(request({ authorization: "Bearer a" }))).toBe("Bearer a");
    expect(callerKey(request({ authorization: "Bearer a", cookie: "cw_session=s1" }))).toBe(
      "Bearer a",
    );
  });

  it("counts two sessions behind one address apart", () => {
    const one = callerKey(request({ cookie: "lang=zh; cw_session=s1" }));
    const two = callerKey(request({ cookie: "cw_session=s2" }));
    expect(one).not.toBe(two);
    expect(one).toBe(callerKey(request({ cookie: "cw_session=s1" }, "198.51.100.1")));
  });

  it("falls back to the address without a token or session", () => {
    expect(callerKey(request({ cookie: "lang=zh" }))).toBe("address 203.0.113.7");
    expect(callerKey(request({}, "198.51.100.1"))).toBe("address 198.51.100.1");
  });
});
