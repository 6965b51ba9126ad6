/**
 * Parent side of the ingest bench's process under test: forks bench/ingest-server.ts, waits for
 * its "ready", asks it for CPU time and counters, and stops it (by IPC, then by pid if it does
 * not exit).
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  ChildMessage,
  type ParentMessage,
  type ReadyMessage,
  type SampleMessage,
  type ServerArgs,
  type StatsMessage,
} from "./ingest-protocol.js";
import { awaitExitOrKill, killOnBenchExit } from "./child-exit.js";

const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 10_000;

const SERVER_SCRIPT = fileURLToPath(new URL("./ingest-server.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Pending {
  resolve(message: ChildMessage): void;
  reject(error: Error): void;
}

export class IngestChild {
  private readonly pending = new Map<number | "ready", Pending>();
  private nextId = 1;
  private readonly exited: Promise<void>;
  private exitReason: string | undefined;

  private constructor(
    readonly label: string,
    private readonly child: ChildProcess,
  ) {
    killOnBenchExit(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitReason = signal === null ? `exited with code ${code}` : `killed by ${signal}`;
        for (const waiter of this.pending.values()) {
          waiter.reject(new Error(`${label} child ${this.exitReason}`));
        }
        this.pending.clear();
        resolve();
      });
    });
    child.on("message", (raw: unknown) => {
      const parsed = ChildMessage.safeParse(raw);
      if (!parsed.success) return;
      const message = parsed.data;
      // A failure without an id is the child's failure to start.
      const key = "id" in message && message.id !== undefined ? message.id : "ready";
      const waiter = this.pending.get(key);
      this.pending.delete(key);
      if (message.type === "failed") waiter?.reject(new Error(`${label}: ${message.message}`));
      else waiter?.resolve(message);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(
    label: string,
    args: ServerArgs,
    options: { cpuProfileDir?: string | undefined } = {},
  ): Promise<{ child: IngestChild; ready: ReadyMessage }> {
    // As `npm start` and bin/citywatch.js run the process (see bin/citywatch.js for why).
    const execArgv = ["--max-semi-space-size=64", "--import", "tsx"];
    if (options.cpuProfileDir !== undefined) {
      execArgv.push("--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`);
    }
    const proc = fork(SERVER_SCRIPT, [JSON.stringify(args)], {
      cwd: REPO_ROOT,
      execArgv,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const child = new IngestChild(label, proc);
    try {
      const message = await child.wait("ready", "start", START_TIMEOUT_MS);
      if (message.type !== "ready") throw new Error(`${label} child sent ${message.type} first`);
      return { child, ready: message };
    } catch (error) {
      await child.stop();
      throw error;
    }
  }

  private wait(key: number | "ready", what: string, timeoutMs: number): Promise<ChildMessage> {
    if (this.exitReason !== undefined) {
      return Promise.reject(new Error(`${this.label} child ${this.exitReason}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new Error(`${this.label} child: no answer to ${what} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(key, {
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  private async request(type: "sample" | "stats"): Promise<ChildMessage> {
    const id = this.nextId++;
    const answer = this.wait(id, type, REQUEST_TIMEOUT_MS);
    this.child.send({ type, id } satisfies ParentMessage);
    return answer;
  }

  /** CPU time so far and the ingest's readings_stored / messages_received counters. */
  async sample(): Promise<SampleMessage> {
    const message = await this.request("sample");
    if (message.type !== "sample") throw new Error(`${this.label} child answered ${message.type}`);
    return message;
  }

  /** Inbox depth, dead letters, duplicates and store writes (SQLite queries in the child). */
  async stats(): Promise<StatsMessage> {
    const message = await this.request("stats");
    if (message.type !== "stats") throw new Error(`${this.label} child answered ${message.type}`);
    return message;
  }

  /** Ask the child to stop and exit; SIGKILL (by pid) if it has not after a grace period. */
  async stop(): Promise<void> {
    if (this.exitReason !== undefined) return;
    if (this.child.connected) this.child.send({ type: "stop" } satisfies ParentMessage);
    await awaitExitOrKill(this.child, this.exited, STOP_GRACE_MS);
  }
}
