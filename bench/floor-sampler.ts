/**
 * Parent side of the floor sampler (bench/floor-sampler-process.ts): the floor timed in short
 * bursts alongside a round, rather than on a quiet machine before it.
 *
 * Why: this machine's speed for the same work moves by more than half from one second to the
 * next. Back-to-back samples of the floor on a quiet machine read 3.7 to 6.8 µs per reading
 * (bimodal: about 3.8 or about 6.0), whether or not the other vCPU was busy: most likely the
 * host's other tenants. A round's CPU per reading held against a floor timed a few seconds earlier
 * takes on that swing; the sampler's bursts run at the same moments as the round, so the two are
 * timed on the same machine state.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  type SamplerMessage,
  SamplerMessage as Message,
  type SamplerArgs,
  type SamplerParentMessage,
} from "./ingest-protocol.js";

const SCRIPT = fileURLToPath(new URL("./floor-sampler-process.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const ANSWER_TIMEOUT_MS = 30_000;

export interface SamplerFigure {
  /** µs of CPU per reading over the bursts. */
  readonly micros: number;
  readonly readings: number;
  readonly bursts: number;
}

export class FloorSampler {
  private nextId = 1;
  /** Answers awaited, by request id; each is told of the answer, or of the process's end. */
  private readonly waiting = new Map<number | "ready", (outcome: SamplerMessage | Error) => void>();
  private exited = false;

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (raw: unknown) => {
      const parsed = Message.safeParse(raw);
      if (!parsed.success) return;
      const key = parsed.data.type === "ready" ? "ready" : parsed.data.id;
      this.waiting.get(key)?.(parsed.data);
      this.waiting.delete(key);
    });
    child.once("exit", (code, signal) => {
      this.exited = true;
      const error = new Error(`floor sampler exited (${signal ?? `code ${code}`})`);
      for (const tell of this.waiting.values()) tell(error);
      this.waiting.clear();
    });
  }

  /** Start the process; it times the floor over the same payloads as the bench (`args`). */
  static async start(args: SamplerArgs): Promise<FloorSampler> {
    const child = fork(SCRIPT, [JSON.stringify(args)], {
      cwd: REPO_ROOT,
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const sampler = new FloorSampler(child);
    process.once("exit", () => child.kill("SIGKILL"));
    try {
      await sampler.answer("ready");
    } catch (error) {
      sampler.close();
      throw error;
    }
    return sampler;
  }

  private answer(key: number | "ready"): Promise<SamplerMessage> {
    if (this.exited) return Promise.reject(new Error("floor sampler exited"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new Error(`floor sampler: no answer in ${ANSWER_TIMEOUT_MS} ms`));
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(key, (outcome) => {
        clearTimeout(timer);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      });
    });
  }

  private send(message: SamplerParentMessage): void {
    if (!this.exited && this.child.connected) this.child.send(message);
  }

  /** Bursts from now on. */
  begin(): void {
    this.send({ type: "start" });
  }

  /** Stop the bursts; the floor over them, or undefined if there were none. */
  async end(): Promise<SamplerFigure | undefined> {
    const id = this.nextId++;
    const answer = this.answer(id);
    this.send({ type: "stop", id });
    const message = await answer;
    if (message.type !== "result" || message.readings === 0) return undefined;
    return {
      micros: message.cpuMicros / message.readings,
      readings: message.readings,
      bursts: message.bursts,
    };
  }

  /** Ask it to exit; killed by pid if it does not within a second. */
  close(): void {
    this.send({ type: "exit" });
    const timer = setTimeout(() => {
      if (!this.exited) this.child.kill("SIGKILL");
    }, 1_000);
    timer.unref();
  }
}
