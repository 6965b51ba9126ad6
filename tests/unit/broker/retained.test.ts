import type { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { filterMatches, indexRetained, type RetainedStore } from "../../../broker/retained.js";

describe("MQTT topic filters (MQTT 3.1.1 §4.7)", () => {
  it.each([
    ["sport/tennis/player1", "sport/tennis/player1", true],
    ["sport/tennis/player1", "sport/tennis/player2", false],
    ["sport/tennis/player1", "sport/tennis/player1/ranking", false],
    ["sport/tennis/player1/#", "sport/tennis/player1", true],
    ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
    ["sport/#", "sport", true],
    ["#", "sport/tennis", true],
    ["sport/tennis/+", "sport/tennis/player1", true],
    ["sport/tennis/+", "sport/tennis/player1/ranking", false],
    ["sport/+", "sport", false],
    ["sport/+", "sport/", true],
    ["+/+", "/finance", true],
    ["/+", "/finance", true],
    ["+", "/finance", false],
    ["citywatch/v1/devices/+/status", "citywatch/v1/devices/noise-1/status", true],
    ["citywatch/v1/devices/+/status", "citywatch/v1/devices/noise-1/commit", false],
    ["#", "$SYS/broker/clients", false],
    ["+/broker/clients", "$SYS/broker/clients", false],
    ["$SYS/#", "$SYS/broker/clients", true],
    ["$SYS/broker/+", "$SYS/broker/clients", true],
  ])("%s against %s: %s", (filter, topic, expected) => {
    expect(filterMatches(filter, topic)).toBe(expected);
  });
});

async function topics(stream: Readable): Promise<string[]> {
  const out: string[] = [];
  for await (const packet of stream) out.push((packet as { topic: string }).topic);
  return out;
}

function store(): RetainedStore {
  const refuse = () => {
    throw new Error("the original store must not be used");
  };
  const persistence: RetainedStore = {
    storeRetained: refuse,
    createRetainedStream: refuse,
    createRetainedStreamCombi: refuse,
  };
  indexRetained(persistence);
  return persistence;
}

const packet = (topic: string, payload = "x") => ({ topic, payload: Buffer.from(payload) });

describe("retained messages by topic (broker/retained.ts)", () => {
  it("answers a filter without wildcards with that topic's message only", async () => {
    const s = store();
    await s.storeRetained(packet("citywatch/v1/devices/a/commit", "1"));
    await s.storeRetained(packet("citywatch/v1/devices/b/commit", "2"));
    await s.storeRetained(packet("citywatch/v1/devices/a/status"));
    expect(
      await topics(
        s.createRetainedStreamCombi([
          "citywatch/v1/devices/a/commit",
          "citywatch/v1/devices/a/config",
        ]),
      ),
    ).toEqual(["citywatch/v1/devices/a/commit"]);
  });

  it("matches a filter with wildcards against every retained message, in the order retained", async () => {
    const s = store();
    for (const id of ["c", "a", "b"]) {
      await s.storeRetained(packet(`citywatch/v1/devices/${id}/status`));
      await s.storeRetained(packet(`citywatch/v1/devices/${id}/commit`));
    }
    expect(await topics(s.createRetainedStream("citywatch/v1/devices/+/status"))).toEqual([
      "citywatch/v1/devices/c/status",
      "citywatch/v1/devices/a/status",
      "citywatch/v1/devices/b/status",
    ]);
  });

  it("keeps the latest message of a topic, and forgets it on an empty payload", async () => {
    const s = store();
    await s.storeRetained(packet("t/1", "old"));
    await s.storeRetained(packet("t/1", "new"));
    const [latest] = (await s.createRetainedStream("t/1").toArray()) as Array<{ payload: Buffer }>;
    expect(latest?.payload.toString()).toBe("new");
    await s.storeRetained(packet("t/1", ""));
    expect(await topics(s.createRetainedStream("t/1"))).toEqual([]);
    expect(await topics(s.createRetainedStream("#"))).toEqual([]);
  });

  it("stores a copy, and calls back when given a callback", async () => {
    const s = store();
    const original = packet("t/2");
    const called = await new Promise<Error | null>((resolve) => s.storeRetained(original, resolve));
    expect(called).toBeNull();
    original.topic = "changed";
    expect(await topics(s.createRetainedStream("t/2"))).toEqual(["t/2"]);
  });

  it("yields each filter's matches in turn, as aedes-persistence does", async () => {
    const s = store();
    await s.storeRetained(packet("a/1"));
    await s.storeRetained(packet("b/1"));
    expect(await topics(s.createRetainedStreamCombi(["b/1", "a/+", "a/1"]))).toEqual([
      "b/1",
      "a/1",
      "a/1",
    ]);
  });
});
