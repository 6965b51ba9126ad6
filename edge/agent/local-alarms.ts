import { spawn } from "node:child_process";
import type { Logger } from "pino";
import type { LocalThreshold } from "../../contracts/index.js";

/**
 * Local alarms (docs/protocol.md 7.1, `localThresholds`): gas and water thresholds evaluated on
 * every sample at the edge, before and independently of the uplink, so a tunnel's methane or a
 * sump's level is signalled on site while the link is down.
 *
 * Each (device, quantity, side) is an alarm that is raised when the value crosses the threshold
 * (strictly above `above`, strictly below `below`) and cleared only once the value is back inside
 * by the hysteresis band (a fraction of the threshold's magnitude, at least 0.1): a value steady
 * near the limit does not raise and clear on every sample, and a steady value above it raises once.
 */

export interface AlarmEvent {
  readonly event: "raise" | "clear";
  readonly deviceId: string;
  readonly quantity: string;
  readonly side: "above" | "below";
  readonly value: number;
  readonly threshold: number;
  /** Epoch ms of the sample. */
  readonly ts: number;
}

/** Where alarm events go. Must not block or throw: the agent calls it on its sample path. */
export type AlarmOutput = (event: AlarmEvent) => void;

/** Alarm state of one device; thresholds may be replaced by remote configuration. */
export class LocalAlarms {
  private thresholds: readonly LocalThreshold[];
  /** `quantity:side` → raised. Only alarms of the current thresholds are kept. */
  private readonly active = new Map<string, AlarmEvent>();

  constructor(
    readonly deviceId: string,
    thresholds: readonly LocalThreshold[],
    private readonly hysteresis: number,
    private readonly output: AlarmOutput,
  ) {
    this.thresholds = thresholds;
  }

  thresholdsInForce(): readonly LocalThreshold[] {
    return this.thresholds;
  }

  /** Alarms currently raised. */
  raised(): AlarmEvent[] {
    return [...this.active.values()];
  }

  /**
   * New thresholds (remote configuration). Alarms whose threshold is gone or changed are cleared
   * (with an event), so nothing stays raised against a limit that no longer exists; the next
   * sample raises again if the new limit is crossed.
   */
  setThresholds(thresholds: readonly LocalThreshold[], ts: number): void {
    this.thresholds = thresholds;
    for (const [key, alarm] of this.active) {
      if (this.limitOf(alarm.quantity, alarm.side) !== alarm.threshold) {
        this.active.delete(key);
        this.output({ ...alarm, event: "clear", ts });
      }
    }
  }

  evaluate(ts: number, values: Readonly<Record<string, number | boolean>>): void {
    for (const t of this.thresholds) {
      const value = values[t.quantity];
      if (typeof value !== "number") continue;
      if (t.above !== undefined) this.check(t.quantity, "above", t.above, value, ts);
      if (t.below !== undefined) this.check(t.quantity, "below", t.below, value, ts);
    }
  }

  private limitOf(quantity: string, side: "above" | "below"): number | undefined {
    for (const t of this.thresholds)
      if (t.quantity === quantity && t[side] !== undefined) return t[side];
    return undefined;
  }

  private check(
    quantity: string,
    side: "above" | "below",
    threshold: number,
    value: number,
    ts: number,
  ): void {
    const key = `${quantity}:${side}`;
    const band = Math.max(0.1, Math.abs(threshold) * this.hysteresis);
    const raised = this.active.get(key);
    const event = { deviceId: this.deviceId, quantity, side, value, threshold, ts };
    if (raised === undefined) {
      const crossed = side === "above" ? value > threshold : value < threshold;
      if (!crossed) return;
      const alarm: AlarmEvent = { ...event, event: "raise" };
      this.active.set(key, alarm);
      this.output(alarm);
      return;
    }
    const back = side === "above" ? value <= threshold - band : value >= threshold + band;
    if (!back) return;
    this.active.delete(key);
    this.output({ ...event, event: "clear" });
  }
}

export interface AlarmCommand {
  readonly path: string;
  readonly args: readonly string[];
  readonly timeoutMs: number;
}

export interface AlarmCommandStats {
  readonly started: number;
  readonly failed: number;
  readonly dropped: number;
  readonly queued: number;
  readonly running: number;
}

/**
 * Runs a command for each alarm event (a siren, a relay, an SMS gateway script) with
 * `args + [event, deviceId, quantity, value, threshold, ts]`. At most `maxConcurrent` run at
 * once; further events wait in a queue of `maxQueued`; when it is full the OLDEST queued event is
 * dropped and counted (the newest state matters most), and the log line of every event was
 * already written. A command that runs longer than `timeoutMs` is killed. Never blocks the agent.
 */
export class AlarmCommandRunner {
  private readonly queue: AlarmEvent[] = [];
  private running = 0;
  private started = 0;
  private failed = 0;
  private dropped = 0;
  private readonly children = new Set<ReturnType<typeof spawn>>();

  constructor(
    private readonly command: AlarmCommand,
    private readonly limits: { maxConcurrent: number; maxQueued: number },
    private readonly log: Logger,
  ) {}

  readonly push: AlarmOutput = (event) => {
    if (this.queue.length >= this.limits.maxQueued) {
      const lost = this.queue.shift();
      this.dropped++;
      this.log.warn(
        { dropped: lost, total: this.dropped },
        "alarm command queue full: oldest event dropped",
      );
    }
    this.queue.push(event);
    this.next();
  };

  stats(): AlarmCommandStats {
    return {
      started: this.started,
      failed: this.failed,
      dropped: this.dropped,
      queued: this.queue.length,
      running: this.running,
    };
  }

  /** Kills commands still running; queued events are logged as not run. */
  stop(): void {
    if (this.queue.length > 0)
      this.log.warn({ queued: this.queue.length }, "alarm commands not run at stop");
    this.queue.length = 0;
    for (const child of this.children) child.kill("SIGKILL");
  }

  private next(): void {
    while (this.running < this.limits.maxConcurrent) {
      const event = this.queue.shift();
      if (event === undefined) return;
      this.run(event);
    }
  }

  private run(event: AlarmEvent): void {
    const args = [
      ...this.command.args,
      event.event,
      event.deviceId,
      event.quantity,
      String(event.value),
      String(event.threshold),
      new Date(event.ts).toISOString(),
    ];
    this.running++;
    this.started++;
    const child = spawn(this.command.path, args, {
      stdio: "ignore",
      timeout: this.command.timeoutMs,
      killSignal: "SIGKILL",
    });
    this.children.add(child);
    let done = false;
    const finish = (problem?: string) => {
      if (done) return;
      done = true;
      this.children.delete(child);
      this.running--;
      if (problem !== undefined) {
        this.failed++;
        this.log.error(
          { command: this.command.path, alarm: event, problem },
          "alarm command failed",
        );
      }
      this.next();
    };
    child.once("error", (error) => finish(error.message));
    child.once("exit", (code, signal) =>
      finish(code === 0 ? undefined : `exited with ${code ?? signal ?? "?"}`),
    );
  }
}

/** The log line every alarm event gets: warn on raise, info on clear. */
export function logAlarm(log: Logger): AlarmOutput {
  return (event) => {
    const fields = { alarm: { ...event, ts: new Date(event.ts).toISOString() } };
    if (event.event === "raise") log.warn(fields, "local alarm raised");
    else log.info(fields, "local alarm cleared");
  };
}
