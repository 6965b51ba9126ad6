/**
 * The fleet bench's side of one child process (the system under test, or a device process):
 * forks it, sends requests with an id and waits for the answer with that id, and stops it (by
 * IPC, then SIGKILL by pid when it does not exit). Children still running when the bench exits
 * are killed by pid.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { z } from "zod";
import { awaitExitOrKill, killOnBenchExit } from "./child-exit.js";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const STOP_GRACE_MS = 10_000;

/** What every answer carries: its type, and the id of the request it answers. */
type Answer = { type: string; id?: number | undefined };

export class FleetChild<M extends Answer> {
  private readonly pending = new Map<number | "ready", (message: M | Error) => void>();
  private nextId = 1;
  private readonly exited: Promise<void>;
  private exitReason: string | undefined;

  private constructor(
    readonly label: string,
    private readonly child: ChildProcess,
    schema: z.ZodType<M>,
  ) {
    killOnBenchExit(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitReason = signal === null ? `exited with code ${code}` : `killed by ${signal}`;
        const error = new Error(`${label} ${this.exitReason}`);
        for (const settle of this.pending.values()) settle(error);
        this.pending.clear();
        resolve();
      });
    });
    // Sending to a child that has just exited is reported to the request (send's callback).
    child.on("error", () => undefined);
    child.on("message", (raw: unknown) => {
      const parsed = schema.safeParse(raw);
      if (!parsed.success) return;
      const message = parsed.data;
      // An answer without an id is the first message: ready, or the failure to start.
      const key = message.id ?? "ready";
      const settle = this.pending.get(key);
      this.pending.delete(key);
      if (message.type === "failed") {
        const text = (message as { message?: unknown }).message;
        settle?.(new Error(`${label}: ${String(text)}`));
      } else settle?.(message);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Fork `script` (a path relative to this file) under tsx with `execArgv` before it. */
  static fork<M extends Answer>(
    label: string,
    script: string,
    args: readonly string[],
    execArgv: readonly string[],
    schema: z.ZodType<M>,
  ): FleetChild<M> {
    const proc = fork(fileURLToPath(new URL(script, import.meta.url)), [...args], {
      cwd: REPO_ROOT,
      execArgv: [...execArgv, "--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    return new FleetChild(label, proc, schema);
  }

  private wait(key: number | "ready", what: string, timeoutMs: number): Promise<M> {
    if (this.exitReason !== undefined) {
      return Promise.reject(new Error(`${this.label} ${this.exitReason}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new Error(`${this.label}: no answer to ${what} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(key, (message) => {
        clearTimeout(timer);
        if (message instanceof Error) reject(message);
        else resolve(message);
      });
    });
  }

  /** The child's first message (its "ready"). */
  ready(timeoutMs: number): Promise<M> {
    return this.wait("ready", "start", timeoutMs);
  }

  private async send(type: string, body: Record<string, unknown>, timeoutMs: number): Promise<M> {
    const id = this.nextId++;
    const answer = this.wait(id, type, timeoutMs);
    // A child gone (killed, crashed) fails the request instead of throwing an unhandled error.
    const failed = (error: Error | null) => {
      if (error === null) return;
      const settle = this.pending.get(id);
      this.pending.delete(id);
      settle?.(new Error(`${this.label}: ${type} not sent (${error.message})`));
    };
    if (this.child.connected) this.child.send({ type, id, ...body }, failed);
    else failed(new Error(this.exitReason ?? "its IPC channel is closed"));
    return answer;
  }

  /** Send `{ type, id, ...body }` and wait for the answer of the same type. */
  async ask<T extends M["type"]>(
    type: T,
    body: Record<string, unknown> = {},
    timeoutMs = 30_000,
  ): Promise<Extract<M, { type: T }>> {
    const message = await this.send(type, body, timeoutMs);
    if (message.type !== type)
      throw new Error(`${this.label} answered ${type} with ${message.type}`);
    return message as Extract<M, { type: T }>;
  }

  /** Send `{ type, id, ...body }` and wait for its `ok`. */
  async command(
    type: string,
    body: Record<string, unknown> = {},
    timeoutMs = 30_000,
  ): Promise<void> {
    const message = await this.send(type, body, timeoutMs);
    if (message.type !== "ok")
      throw new Error(`${this.label} answered ${type} with ${message.type}`);
  }

  /** Ask the child to stop (`{ type }`, no answer) and wait for its exit; SIGKILL after a grace. */
  async stop(type: "stop" | "close"): Promise<void> {
    if (this.exitReason !== undefined) return;
    if (this.child.connected) this.child.send({ type });
    await awaitExitOrKill(this.child, this.exited, STOP_GRACE_MS);
  }
}
