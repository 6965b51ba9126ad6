/**
 * Parent side of a broker under test: forks bench/broker-server.ts, waits for its "ready" line,
 * asks it for memory figures, and stops it (by IPC, then by pid if it does not exit).
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  ChildMessage,
  type MemoryMessage,
  type ParentMessage,
  type ReadyMessage,
  type ServerVariant,
} from "./broker-protocol.js";
import { awaitExitOrKill, killOnBenchExit } from "./child-exit.js";

const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

const SERVER_SCRIPT = fileURLToPath(new URL("./broker-server.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

export interface BrokerChildOptions {
  /** Devices registered (shipped) or client ids prepared (aedes) for the idle-connection test. */
  readonly idleDevices?: number;
  /** Directory for a V8 CPU profile of the child (`node --cpu-prof`), written when it stops. */
  readonly cpuProfileDir?: string | undefined;
}

export class BrokerChild {
  private waiter: { resolve(message: ChildMessage): void; reject(error: Error): void } | undefined;
  private readonly exited: Promise<void>;
  private exitReason: string | undefined;

  private constructor(
    readonly variant: ServerVariant,
    private readonly child: ChildProcess,
  ) {
    killOnBenchExit(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitReason = signal === null ? `exited with code ${code}` : `killed by ${signal}`;
        this.waiter?.reject(new Error(`broker child (${variant}) ${this.exitReason}`));
        this.waiter = undefined;
        resolve();
      });
    });
    child.on("message", (raw: unknown) => {
      const parsed = ChildMessage.safeParse(raw);
      const waiter = this.waiter;
      this.waiter = undefined;
      if (!parsed.success) waiter?.reject(new Error(`unexpected message from broker child`));
      else if (parsed.data.type === "failed") waiter?.reject(new Error(parsed.data.message));
      else waiter?.resolve(parsed.data);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(
    variant: ServerVariant,
    options: BrokerChildOptions = {},
  ): Promise<{ child: BrokerChild; ready: ReadyMessage }> {
    const execArgv = ["--import", "tsx", "--expose-gc"];
    if (options.cpuProfileDir !== undefined) {
      execArgv.push("--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`);
    }
    const proc = fork(SERVER_SCRIPT, [variant, String(options.idleDevices ?? 0)], {
      cwd: REPO_ROOT,
      execArgv,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const child = new BrokerChild(variant, proc);
    try {
      const message = await child.next("start", START_TIMEOUT_MS);
      if (message.type !== "ready") throw new Error(`broker child sent ${message.type} first`);
      return { child, ready: message };
    } catch (error) {
      await child.stop();
      throw error;
    }
  }

  private next(what: string, timeoutMs: number): Promise<ChildMessage> {
    if (this.exitReason !== undefined) {
      return Promise.reject(new Error(`broker child (${this.variant}) ${this.exitReason}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(
          new Error(`broker child (${this.variant}): no answer to ${what} in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.waiter = {
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  private send(message: ParentMessage): void {
    this.child.send(message);
  }

  /** Heap and RSS of the broker process after garbage collection. */
  async measure(): Promise<MemoryMessage> {
    const answer = this.next("measure", REQUEST_TIMEOUT_MS);
    this.send({ type: "measure" });
    const message = await answer;
    if (message.type !== "memory") throw new Error(`broker child answered ${message.type}`);
    return message;
  }

  /** CPU time (user + system) the broker process has used so far, in microseconds. */
  async cpuMicros(): Promise<number> {
    const answer = this.next("cpu", REQUEST_TIMEOUT_MS);
    this.send({ type: "cpu" });
    const message = await answer;
    if (message.type !== "cpu") throw new Error(`broker child answered ${message.type}`);
    return message.micros;
  }

  /** Ask the child to close its broker and exit; SIGKILL (by pid) if it has not after a grace period. */
  async stop(): Promise<void> {
    if (this.exitReason !== undefined) return;
    if (this.child.connected) this.send({ type: "stop" });
    await awaitExitOrKill(this.child, this.exited, STOP_GRACE_MS);
  }
}
