import type { FastifyRequest } from "fastify";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { bearerAuth } from "../../../../tasks/auth/bearer.js";
import type { AsyncTokenStore } from "../../../../tasks/auth/store-port.js";
import type { TokenRecord } from "../../../../tasks/auth/tokens.js";
import { TokenWatch } from "../../../../tasks/auth/watch.js";

/*
 * The token watch on an asynchronous store (tasks/auth/watch.ts): asks never overlap, a call made
 * during an ask hears of what is newer than the call, listeners are waited for, and one that
 * failed hears of the change again. And the bearer cache behind it (tasks/auth/bearer.ts): a
 * lookup that was under way when a change emptied the cache is not kept.
 */

const log = pino({ level: "silent" });

/** A promise resolved from outside. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A `changed()` answered by hand, counting asks and how many were in flight at once. */
function manualStore() {
  const pending: Array<(changed: boolean) => void> = [];
  let inFlight = 0;
  const seen = { asks: 0, mostAtOnce: 0 };
  return {
    seen,
    store: {
      changed: () => {
        seen.asks++;
        inFlight++;
        seen.mostAtOnce = Math.max(seen.mostAtOnce, inFlight);
        const d = deferred<boolean>();
        pending.push(d.resolve);
        return d.promise.finally(() => inFlight--);
      },
    },
    /** Answer the oldest ask. */
    answer: async (changed: boolean) => {
      const next = pending.shift();
      if (next === undefined) throw new Error("no ask in flight");
      next(changed);
      await new Promise((r) => setTimeout(r, 0));
    },
  };
}

const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setTimeout(r, 0));
  return done;
};

describe("TokenWatch", () => {
  it("asks one at a time: calls during an ask share one more ask, begun after it", async () => {
    const m = manualStore();
    const watch = new TokenWatch(m.store, { intervalMs: 60_000, log });
    let heard = 0;
    watch.onChange(() => heard++);
    const first = watch.check();
    const second = watch.check();
    const third = watch.check();
    expect(m.seen.asks).toBe(1);
    await m.answer(false);
    expect(await settled(first)).toBe(true);
    // The first ask may have been read before what the later callers wait to hear of.
    expect(await settled(second)).toBe(false);
    expect(m.seen.asks).toBe(2);
    await m.answer(true);
    expect([await settled(second), await settled(third)]).toEqual([true, true]);
    expect(heard).toBe(1);
    expect(m.seen.mostAtOnce).toBe(1);
  });

  it("waits for the listeners on a change; one that failed hears of it again at the next ask", async () => {
    const m = manualStore();
    const watch = new TokenWatch(m.store, { intervalMs: 60_000, log });
    const slow = deferred<void>();
    let calls = 0;
    watch.onChange(() => slow.promise);
    watch.onChange(() => {
      calls++;
      if (calls === 1) throw new Error("not now");
    });
    const asked = watch.check();
    await m.answer(true);
    expect(await settled(asked)).toBe(false);
    slow.resolve();
    expect(await settled(asked)).toBe(true);
    expect(calls).toBe(1);
    // Nothing changed since, but the failed listener is told again.
    const again = watch.check();
    await m.answer(false);
    await again;
    expect(calls).toBe(2);
    const quiet = watch.check();
    await m.answer(false);
    await quiet;
    expect(calls).toBe(2);
  });

  it("takes a store that does not answer as no change, and sees the change after it", async () => {
    let fail = true;
    let version = 0;
    let seen = 0;
    const watch = new TokenWatch(
      {
        changed: () => {
          if (fail) return Promise.reject(new Error("connection refused"));
          const changed = version !== seen;
          seen = version;
          return Promise.resolve(changed);
        },
      },
      { intervalMs: 60_000, log },
    );
    let heard = 0;
    watch.onChange(() => heard++);
    version++;
    await watch.check();
    expect(heard).toBe(0);
    fail = false;
    await watch.check();
    expect(heard).toBe(1);
  });

  it("polls every interval without overlapping a slow ask, and stop waits for the ask in flight", async () => {
    let inFlight = 0;
    let mostAtOnce = 0;
    let asks = 0;
    const watch = new TokenWatch(
      {
        changed: async () => {
          asks++;
          inFlight++;
          mostAtOnce = Math.max(mostAtOnce, inFlight);
          await new Promise((r) => setTimeout(r, 25));
          inFlight--;
          return false;
        },
      },
      { intervalMs: 5, log },
    );
    watch.start();
    // Requests asking meanwhile, as with the embedded store.
    const requests = setInterval(() => void watch.beforeUse(), 3);
    await new Promise((r) => setTimeout(r, 200));
    clearInterval(requests);
    await watch.stop();
    expect(inFlight).toBe(0);
    expect(mostAtOnce).toBe(1);
    expect(asks).toBeGreaterThan(2);
    const after = asks;
    await new Promise((r) => setTimeout(r, 50));
    expect(asks).toBe(after);
  });

  it("asks on use only when told to (everyUse)", async () => {
    let asks = 0;
    const changed = () => {
      asks++;
      return Promise.resolve(false);
    };
    await new TokenWatch({ changed }, { intervalMs: 60_000, log }).beforeUse();
    expect(asks).toBe(1);
    await new TokenWatch({ changed }, { intervalMs: 60_000, log, everyUse: false }).beforeUse();
    expect(asks).toBe(1);
  });
});

describe("the bearer cache on an asynchronous store", () => {
  it("does not keep a lookup that was under way when a change emptied the cache", async () => {
    const record: TokenRecord = {
      id: "t1",
      name: "console",
      role: "viewer",
      createdAt: new Date(0).toISOString(),
    };
    let revoked = false;
    let changed = false;
    let lookups = 0;
    const answers: Array<ReturnType<typeof deferred<TokenRecord | undefined>>> = [];
    const store = {
      changed: () => {
        const was = changed;
        changed = false;
        return Promise.resolve(was);
      },
      authenticate: () => {
        lookups++;
        const d = deferred<TokenRecord | undefined>();
        answers.push(d);
        return d.promise;
      },
      users: { get: () => Promise.resolve(undefined) },
    } as unknown as AsyncTokenStore;
    const watch = new TokenWatch(store, { intervalMs: 60_000, log, everyUse: false });
    const auth = bearerAuth(store, { cacheMs: 60_000, now: Date.now, watch });
    const request = () =>
      ({
        method: "GET",
        headers: { authorization: "Bearer cwt_console" },
      }) as unknown as FastifyRequest;

    // A lookup reads the token active, then the token is revoked and the watch hears of it
    // before the lookup's answer arrives.
    const inFlight = auth.authenticate(request());
    await new Promise((r) => setTimeout(r, 0));
    revoked = true;
    changed = true;
    await watch.check();
    answers[0]?.resolve(record);
    await inFlight; // in flight before the revocation: accepted

    const next = auth.authenticate(request());
    await new Promise((r) => setTimeout(r, 0));
    expect(lookups).toBe(2);
    answers[1]?.resolve(revoked ? undefined : record);
    await expect(next).rejects.toMatchObject({ message: "unknown or revoked token" });

    // Cached from here: the refusal too, no third lookup.
    await expect(auth.authenticate(request())).rejects.toMatchObject({
      message: "unknown or revoked token",
    });
    expect(lookups).toBe(2);
  });
});
