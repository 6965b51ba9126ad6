import type { Logger } from "pino";
import { QUANTITIES, type QuantitySpec, type SensorKind } from "../../contracts/index.js";
import type { Driver, DriverSink } from "./types.js";
import { registerValue, WORDS_OF } from "./modbus-decode.js";
import { ModbusExceptionError, SerialModbusLink, type ModbusLink } from "./modbus-link.js";
import { ModbusDriverOptions, type ModbusDevice } from "./modbus-options.js";
import { planReads, type PlannedRead } from "./modbus-plan.js";

/**
 * The Modbus polling driver: each device's registers are read every `pollIntervalMs` and handed
 * to the sink as one `sample` (the agent aggregates samples into interval readings). One request
 * is in flight per line at a time; devices due together are polled in turn.
 *
 * Failures (documented in docs/edge-drivers.md, "Modbus: when a poll fails"):
 * - the line fails (refused, reset, no answer in `timeoutMs`): the device's poll gives no sample
 *   (`pollFailures`), and it is next polled after a backoff that doubles per failure in a row
 *   (`backoff.minMs` … `backoff.maxMs`, with jitter) instead of its interval. No sample is made
 *   up: the silence is what the rules' no-data condition sees. A warning when a device starts
 *   failing, an info line when it answers again.
 * - the whole line is down (every device on it failing): the backoff is the line's, one count of
 *   failures for all its units, and the first unit that answers again wakes every failing unit
 *   of the line at once (`lineRecoveries`): no unit stays blind for its own backoff while its
 *   neighbour on the same gateway already answers. A single silent unit on a line that works
 *   keeps its own backoff, so it does not hold the bus with a timeout per poll.
 * - the device answers a request with a Modbus exception (illegal address…): a configuration
 *   problem, not a line problem; the registers of that request are left out (`exceptions`),
 *   the others are sent; warned once per request until it succeeds.
 * - a value that is NaN or infinite (a float register of a sensor not ready), or outside the
 *   quantity's plausible range (contracts/model/sensors.ts): left out of the sample, counted
 *   (`badValues`, `outOfRange`) and logged at debug.
 * - a poll still running when the next is due: the due slot is skipped, not queued
 *   (`pollsSkipped`), so a slow line never builds a backlog.
 */

/** What the driver takes from the agent (a subset of edge/drivers/index.ts DriverDeps). */
export interface ModbusDriverDeps {
  readonly log: Logger;
  /** The agent's devices: when given, every polled device must be one of them, of its kind. */
  readonly devices?: readonly { readonly deviceId: string; readonly kind: SensorKind }[];
}

interface DeviceState {
  readonly device: ModbusDevice;
  readonly reads: readonly PlannedRead[];
  nextDueMs: number;
  failuresInRow: number;
  /** Requests (by index in `reads`) answered with an exception, warned about once. */
  readonly warnedExceptions: Set<number>;
}

const COUNTERS = [
  "polls",
  "pollFailures",
  "pollsSkipped",
  "requests",
  "exceptions",
  "badValues",
  "outOfRange",
  "samples",
  "sinkRefused",
  "lineRecoveries",
] as const;
type Counter = (typeof COUNTERS)[number];

export class ModbusDriver implements Driver {
  readonly name: string;
  private readonly log: Logger;
  private readonly link: ModbusLink;
  private readonly devices: DeviceState[];
  private readonly counts = Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<
    Counter,
    number
  >;
  private running = false;
  /** Failed polls in a row while every device of the line fails: the line's shared backoff count. */
  private lineFailures = 0;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly options: ModbusDriverOptions,
    deps: ModbusDriverDeps,
  ) {
    const connection = options.connection;
    this.name =
      connection.transport === "tcp"
        ? `modbus:tcp:${connection.host}:${connection.port}`
        : `modbus:rtu:${connection.path}`;
    this.log = deps.log.child({ module: "modbus", line: this.name });
    this.link = new SerialModbusLink(connection, options.timeoutMs);
    this.devices = options.devices.map((device) => ({
      device,
      reads: planReads(device.registers),
      nextDueMs: 0,
      failuresInRow: 0,
      warnedExceptions: new Set(),
    }));
  }

  start(sink: DriverSink): Promise<void> {
    if (this.running) return Promise.reject(new Error(`${this.name} is already started`));
    this.running = true;
    const now = Date.now();
    for (const state of this.devices) state.nextDueMs = now;
    this.loop = this.run(sink);
    this.log.info(
      { devices: this.devices.map((s) => s.device.deviceId) },
      "Modbus polling started",
    );
    return Promise.resolve();
  }

  /** Stops polling: a request in flight is finished (at most `timeoutMs`), then the line is closed. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.link.close();
    this.log.info(this.stats(), "Modbus polling stopped");
  }

  stats(): Readonly<Record<string, number>> {
    return {
      ...this.counts,
      connections: this.link.opened,
      devicesFailing: this.devices.filter((s) => s.failuresInRow > 0).length,
    };
  }

  private async run(sink: DriverSink): Promise<void> {
    while (this.running) {
      const next = this.devices.reduce((a, b) => (b.nextDueMs < a.nextDueMs ? b : a));
      const waitMs = next.nextDueMs - Date.now();
      if (waitMs > 0) {
        await this.sleep(waitMs);
        continue;
      }
      await this.poll(next, sink);
    }
  }

  /** Waits for the next due poll; `stop()` cuts the wait short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private async poll(state: DeviceState, sink: DriverSink): Promise<void> {
    const { device } = state;
    const startedMs = Date.now();
    this.counts.polls++;
    const values: Record<string, number> = {};
    for (const [index, read] of state.reads.entries()) {
      let words: number[];
      try {
        this.counts.requests++;
        words = await this.link.read(read.function, device.unitId, read.address, read.count);
      } catch (error) {
        if (error instanceof ModbusExceptionError) {
          this.exception(state, index, error);
          this.lineAnswers(state);
          continue;
        }
        this.failed(state, startedMs, error);
        return;
      }
      state.warnedExceptions.delete(index);
      this.collect(device, read, words, values);
    }
    if (state.failuresInRow > 0) {
      this.log.info(
        { deviceId: device.deviceId, failuresInRow: state.failuresInRow },
        "Modbus device answers again",
      );
      state.failuresInRow = 0;
    }
    this.lineAnswers(state);
    this.schedule(state, startedMs + device.pollIntervalMs);
    if (Object.keys(values).length === 0) return;
    try {
      sink({
        deviceId: device.deviceId,
        kind: device.kind,
        ts: startedMs,
        quality: "normal",
        values,
        form: "sample",
      });
      this.counts.samples++;
    } catch (error) {
      this.counts.sinkRefused++;
      this.log.warn(
        { deviceId: device.deviceId, values, err: error },
        "the agent refused a Modbus sample",
      );
    }
  }

  /** Decodes a response into `values`, leaving out what is not a plausible number. */
  private collect(
    device: ModbusDevice,
    read: PlannedRead,
    words: readonly number[],
    values: Record<string, number>,
  ): void {
    const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[device.kind];
    for (const { register, at } of read.entries) {
      const spec = specs[register.quantity];
      const raw = registerValue(register, words.slice(at, at + WORDS_OF[register.type]));
      const value = spec?.type === "boolean" ? (raw !== 0 ? 1 : 0) : raw;
      if (!Number.isFinite(value)) {
        this.counts.badValues++;
        this.log.debug(
          { deviceId: device.deviceId, quantity: register.quantity, value },
          "Modbus value is not a number",
        );
        continue;
      }
      if (spec?.type === "number" && (value < spec.min || value > spec.max)) {
        this.counts.outOfRange++;
        this.log.debug(
          {
            deviceId: device.deviceId,
            quantity: register.quantity,
            value,
            min: spec.min,
            max: spec.max,
          },
          "Modbus value outside the plausible range",
        );
        continue;
      }
      values[register.quantity] = value;
    }
  }

  private exception(state: DeviceState, index: number, error: ModbusExceptionError): void {
    this.counts.exceptions++;
    const read = state.reads[index];
    if (state.warnedExceptions.has(index) || read === undefined) return;
    state.warnedExceptions.add(index);
    this.log.warn(
      {
        deviceId: state.device.deviceId,
        unitId: state.device.unitId,
        function: read.function,
        address: read.address,
        count: read.count,
        quantities: read.entries.map((e) => e.register.quantity),
        exceptionCode: error.exceptionCode,
        err: error,
      },
      "Modbus device refused a read; check the register map",
    );
  }

  /**
   * A unit answered (with values or a Modbus exception: the line works). If the whole line was
   * down, every unit still failing is polled at once, in turn, instead of after its backoff.
   */
  private lineAnswers(answered: DeviceState): void {
    if (this.lineFailures === 0) return;
    this.lineFailures = 0;
    const now = Date.now();
    const woken = this.devices.filter((s) => s !== answered && s.failuresInRow > 0);
    for (const state of woken) state.nextDueMs = Math.min(state.nextDueMs, now);
    this.counts.lineRecoveries++;
    this.log.info(
      { deviceId: answered.device.deviceId, woken: woken.map((s) => s.device.deviceId) },
      "Modbus line answers again; its failing units are polled at once",
    );
  }

  private failed(state: DeviceState, startedMs: number, error: unknown): void {
    this.counts.pollFailures++;
    state.failuresInRow++;
    // The whole line down: one backoff for all its units (the count of the line's failures).
    const lineDown = this.devices.every((s) => s.failuresInRow > 0);
    if (lineDown) this.lineFailures++;
    const inRow = lineDown ? Math.max(this.lineFailures, state.failuresInRow) : state.failuresInRow;
    const { minMs, maxMs } = this.options.backoff;
    const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(inRow - 1, 30));
    // Jitter in [ceiling/2, ceiling]: devices behind one gateway spread their retries.
    const delayMs = Math.max(
      state.device.pollIntervalMs,
      ceiling / 2 + (Math.random() * ceiling) / 2,
    );
    const fields = {
      deviceId: state.device.deviceId,
      unitId: state.device.unitId,
      failuresInRow: state.failuresInRow,
      retryInMs: Math.round(delayMs),
      err: error,
    };
    if (state.failuresInRow === 1) this.log.warn(fields, "Modbus poll failed; backing off");
    else this.log.debug(fields, "Modbus poll failed again");
    this.schedule(state, startedMs + delayMs);
  }

  /** Sets the next poll. Slots that passed while the line was busy are skipped (counted), not run back to back. */
  private schedule(state: DeviceState, dueMs: number): void {
    const now = Date.now();
    if (dueMs > now) {
      state.nextDueMs = dueMs;
      return;
    }
    this.counts.pollsSkipped += Math.floor((now - dueMs) / state.device.pollIntervalMs);
    state.nextDueMs = now;
  }
}

/** The factory the agent registers (edge/drivers/index.ts): `drivers: [{ type: modbus, … }]`. */
export const modbusDriverFactory = {
  type: "modbus",
  options: ModbusDriverOptions,
  /** Throws an Error naming the first polled device the agent does not serve. */
  create(options: ModbusDriverOptions, deps: ModbusDriverDeps): ModbusDriver {
    if (deps.devices !== undefined) {
      const served = new Map(deps.devices.map((d) => [d.deviceId, d.kind]));
      options.devices.forEach((device, i) => {
        const servedKind = served.get(device.deviceId);
        if (servedKind !== device.kind) {
          throw new Error(
            `devices.${i}: device ${device.deviceId} (${device.kind}) is not one of the agent's devices` +
              (servedKind === undefined ? "" : ` (the agent serves it as ${servedKind})`),
          );
        }
      });
    }
    return new ModbusDriver(options, deps);
  },
} as const;
