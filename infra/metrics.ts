import { Gauge, type LabelValues, type Registry } from "prom-client";

/*
 * The shapes every component's Prometheus metrics repeat. A component keeps its own numbers (an
 * inbox depth, the open alarms, the clients connected) and its gauges read them when scraped,
 * rather than being set on every change; the component that holds the number often starts after
 * its metrics are made, so the reader is bound late.
 */

export interface MetricInfo {
  readonly name: string;
  readonly help: string;
}

/** A gauge that reads its value from `read` at every scrape. */
export function scrapedGauge(registry: Registry, info: MetricInfo, read: () => number): Gauge {
  return new Gauge({
    ...info,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/**
 * A labelled gauge rebuilt from `rows` at every scrape: one series per row, and a label set that
 * is no longer in the rows (a target removed, a device gone) is no longer reported.
 */
export function scrapedLabelledGauge<L extends string>(
  registry: Registry,
  info: MetricInfo & { readonly labelNames: readonly L[] },
  rows: () =>
    | Iterable<readonly [LabelValues<L>, number]>
    | Promise<Iterable<readonly [LabelValues<L>, number]>>,
): Gauge<L> {
  return new Gauge<L>({
    ...info,
    registers: [registry],
    async collect() {
      const read = await rows();
      this.reset();
      for (const [labels, value] of read) this.set(labels, value);
    },
  });
}

/**
 * Readers bound after the metrics are made: `read` holds each one's default until `observe` binds
 * it. Gauges call `read.x()` at scrape time, so they always see the latest binding.
 */
export function lateBound<T extends Record<string, () => unknown>>(
  defaults: T,
): { readonly read: T; readonly observe: (sources: Partial<T>) => void } {
  const read = { ...defaults };
  return {
    read,
    observe: (sources) => {
      for (const [key, source] of Object.entries(sources)) {
        if (source !== undefined) (read as Record<string, unknown>)[key] = source;
      }
    },
  };
}

/** What `metric.get()` gives (a counter's, a gauge's). */
export interface MetricReading {
  get(): Promise<{
    readonly values: ReadonlyArray<{
      readonly value: number;
      readonly labels: Readonly<Record<string, string | number | undefined>>;
    }>;
  }>;
}

/**
 * The value of a counter or gauge: the sum over its series whose labels include `labels` (all of
 * them when none are given); 0 for a metric that is missing or has no such series.
 */
export async function metricValue(
  metric: MetricReading | undefined,
  labels: Readonly<Record<string, string>> = {},
): Promise<number> {
  if (metric === undefined) return 0;
  const wanted = Object.entries(labels);
  let sum = 0;
  for (const { value, labels: own } of (await metric.get()).values) {
    if (wanted.every(([key, label]) => String(own[key]) === label)) sum += value;
  }
  return sum;
}
