import { Counter, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import {
  lateBound,
  metricValue,
  scrapedGauge,
  scrapedLabelledGauge,
} from "../../../infra/metrics.js";

describe("gauges read at scrape time", () => {
  it("reads a late-bound source at every scrape, its default until bound", async () => {
    const registry = new Registry();
    const { read, observe } = lateBound({ depth: (): number => 7, other: (): number => 1 });
    scrapedGauge(registry, { name: "t_depth", help: "h" }, () => read.depth());
    expect(await registry.getMetricsAsJSON()).toMatchObject([{ values: [{ value: 7 }] }]);
    let depth = 3;
    observe({ depth: () => depth });
    expect(await metricValue(registry.getSingleMetric("t_depth"))).toBe(3);
    depth = 5;
    expect(await metricValue(registry.getSingleMetric("t_depth"))).toBe(5);
    expect(read.other()).toBe(1); // an unbound source keeps its default
  });

  it("rebuilds a labelled gauge from its rows, forgetting label sets that are gone", async () => {
    const registry = new Registry();
    let rows: Array<readonly [{ target: string }, number]> = [
      [{ target: "a" }, 1],
      [{ target: "b" }, 2],
    ];
    const gauge = scrapedLabelledGauge(
      registry,
      { name: "t_outbox", help: "h", labelNames: ["target"] },
      () => rows,
    );
    expect((await gauge.get()).values.map((v) => [v.labels.target, v.value])).toEqual([
      ["a", 1],
      ["b", 2],
    ]);
    rows = [[{ target: "b" }, 4]];
    expect((await gauge.get()).values.map((v) => [v.labels.target, v.value])).toEqual([["b", 4]]);
  });
});

describe("metricValue", () => {
  it("sums the series whose labels match, 0 for none or a missing metric", async () => {
    const registry = new Registry();
    const counter = new Counter({
      name: "t_total",
      help: "h",
      labelNames: ["action", "principal"] as const,
      registers: [registry],
    });
    counter.inc({ action: "publish", principal: "device" }, 2);
    counter.inc({ action: "publish", principal: "operator" }, 3);
    counter.inc({ action: "subscribe", principal: "device" });
    expect(await metricValue(counter)).toBe(6);
    expect(await metricValue(counter, { action: "publish" })).toBe(5);
    expect(await metricValue(counter, { action: "publish", principal: "device" })).toBe(2);
    expect(await metricValue(counter, { action: "unsubscribe" })).toBe(0);
    expect(await metricValue(registry.getSingleMetric("t_missing"))).toBe(0);
  });
});
