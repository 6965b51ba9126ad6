import net from "node:net";
import type { Logger } from "pino";
import type { SensorKind } from "../../contracts/index.js";
import { SplitReassembler } from "../hj212/split.js";
import type { DeadLetterSink, Driver, DriverSink } from "./types.js";
import { zeroCounts, type Hj212Counts } from "./hj212-counts.js";
import { Hj212Intake } from "./hj212-intake.js";
import { Hj212DriverOptions } from "./hj212-options.js";
import { ProblemLog } from "./hj212-problems.js";
import { Hj212Session } from "./hj212-session.js";

/**
 * The HJ 212 TCP server driver: monitors connect to it as to their platform and push frames
 * (docs/hj212.md). Per connection: framer → CRC → segment → split reassembly → mapping → sink → reply
 * (hj212-session.ts, hj212-intake.ts). This file owns the sockets and their bounds: at most
 * `maxConnections` at once, a fixed read buffer each, an idle timeout, and a cap on replies
 * queued to a peer that does not read.
 */

/** What the driver takes from the agent (a subset of edge/drivers/index.ts DriverDeps). */
export interface Hj212DriverDeps {
  readonly log: Logger;
  /** The agent's devices: when given, every device the mapping feeds must be one of them, of its kind. */
  readonly devices?: readonly { readonly deviceId: string; readonly kind: SensorKind }[];
  /** Where refusals are recorded (the agent's dead-letter log). */
  readonly deadLetters?: DeadLetterSink;
}

/** How often split packets pending too long are given up (and delivered piece by piece). */
const SPLIT_SWEEP_MS = 1_000;
/** At stop, connections get this long to flush their last replies before they are cut. */
const STOP_GRACE_MS = 1_000;

export class Hj212Server implements Driver {
  private readonly log: Logger;
  private readonly problems: ProblemLog;
  private readonly counts: Hj212Counts = zeroCounts();
  private readonly sockets = new Set<net.Socket>();
  private server: net.Server | undefined;
  private sweep: NodeJS.Timeout | undefined;
  private intake: Hj212Intake | undefined;
  private boundPort: number | undefined;

  constructor(
    private readonly options: Hj212DriverOptions,
    deps: Hj212DriverDeps,
  ) {
    this.log = deps.log.child({ module: "hj212", port: options.port });
    this.problems = new ProblemLog(
      this.log,
      options.problemLogIntervalS * 1_000,
      Date.now,
      deps.deadLetters === undefined
        ? undefined
        : { driver: () => this.name, sink: deps.deadLetters },
    );
  }

  get name(): string {
    return `hj212:${this.options.host}:${this.boundPort ?? this.options.port}`;
  }

  /** The port listened on (the OS-chosen one when the options say 0); undefined before start. */
  get port(): number | undefined {
    return this.boundPort;
  }

  async start(sink: DriverSink): Promise<void> {
    if (this.server !== undefined) throw new Error(`${this.name} is already started`);
    const { split } = this.options;
    const intake = new Hj212Intake({
      mapping: this.options.mapping,
      dataCns: new Set(this.options.dataCns),
      sink,
      split: new SplitReassembler({
        maxPendingGroups: split.maxPendingGroups,
        maxPieces: split.maxPieces,
        timeoutMs: split.timeoutS * 1_000,
      }),
      counts: this.counts,
      problems: this.problems,
      log: this.log,
      now: Date.now,
    });
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket, intake));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: this.options.host, port: this.options.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (error) => this.log.error({ err: error }, "HJ 212 server error"));
    const address = server.address();
    this.boundPort = typeof address === "object" && address !== null ? address.port : undefined;
    this.server = server;
    this.intake = intake;
    this.sweep = setInterval(() => intake.expire(), SPLIT_SWEEP_MS);
    this.sweep.unref();
    this.log.info({ host: this.options.host, port: this.boundPort }, "HJ 212 server listening");
  }

  /**
   * Stops accepting, lets open connections flush their replies (cut after a grace period), then
   * delivers the split packets still pending piece by piece: their pieces were answered.
   */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    clearInterval(this.sweep);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroySoon();
    const cut = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, STOP_GRACE_MS);
    await closed;
    clearTimeout(cut);
    this.intake?.flush();
    this.intake = undefined;
    this.log.info(this.stats(), "HJ 212 server stopped");
  }

  stats(): Readonly<Record<string, number>> {
    return { ...this.counts, connectionsOpen: this.sockets.size };
  }

  private accept(socket: net.Socket, intake: Hj212Intake): void {
    const remote = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
    if (this.sockets.size >= this.options.maxConnections || this.server === undefined) {
      this.counts.connectionsRefused++;
      this.problems.refuse(
        "HJ212_TOO_MANY_CONNECTIONS",
        { remote, maxConnections: this.options.maxConnections },
        "HJ 212 connection refused: maxConnections reached",
      );
      socket.destroy();
      return;
    }
    this.counts.connections++;
    this.sockets.add(socket);
    const session = new Hj212Session(this.options, {
      intake,
      counts: this.counts,
      problems: this.problems,
      remote,
    });
    this.log.debug({ remote }, "HJ 212 monitor connected");
    socket.setTimeout(this.options.idleTimeoutS * 1_000, () => {
      this.counts.idleTimeouts++;
      this.log.info(
        { remote, idleTimeoutS: this.options.idleTimeoutS },
        "HJ 212 connection idle, closed",
      );
      socket.destroy();
    });
    // The frame timeout: armed while bytes of a partial frame are held, or by a read that brought
    // refused bytes and no frame; disarmed when a frame completes with nothing held. A peer that
    // sends bytes but no frame is closed when it fires; CR LF after a frame arms nothing.
    let frameTimer: NodeJS.Timeout | undefined;
    const frameTimeoutMs = this.options.frameTimeoutS * 1_000;
    socket.on("data", (chunk: Buffer) => {
      const before = session.framesSeen;
      const refusedBefore = this.refusedBytes();
      for (const reply of session.receive(chunk)) this.write(socket, reply, remote);
      const framed = session.framesSeen !== before;
      const held = session.bufferedBytes > 0;
      const refusedOnly = !framed && this.refusedBytes() !== refusedBefore;
      if (!held && !refusedOnly) {
        if (framed) {
          clearTimeout(frameTimer);
          frameTimer = undefined;
        }
      } else if (framed || frameTimer === undefined) {
        clearTimeout(frameTimer);
        frameTimer = setTimeout(() => {
          this.counts.frameTimeouts++;
          this.problems.refuse(
            "HJ212_FRAME_TIMEOUT",
            { remote, frameTimeoutS: this.options.frameTimeoutS, held: session.bufferedBytes },
            "HJ 212 connection sent no complete frame in frameTimeoutS; closed",
            {
              reason: `no complete frame within ${this.options.frameTimeoutS} s (${session.bufferedBytes} bytes of a partial frame held)`,
            },
          );
          socket.destroy();
        }, frameTimeoutMs);
      }
    });
    socket.on("error", (error) => {
      this.counts.socketErrors++;
      this.log.debug({ remote, err: error }, "HJ 212 socket error");
    });
    socket.once("close", () => {
      clearTimeout(frameTimer);
      this.sockets.delete(socket);
      session.end();
      this.log.debug({ remote }, "HJ 212 monitor disconnected");
    });
  }

  /** Bytes refused by the framer so far (garbage, lying or over-long length fields). */
  private refusedBytes(): number {
    const c = this.counts;
    return c.garbageBytes + c.badLength + c.frameTooLong + c.bufferOverflows;
  }

  /** Writes a reply, or closes a peer that has left too many replies unread. */
  private write(socket: net.Socket, reply: string, remote: string): void {
    if (socket.destroyed) return;
    if (socket.writableLength + reply.length > this.options.maxReplyBacklogBytes) {
      this.counts.replyBacklogOverflows++;
      this.problems.refuse(
        "HJ212_REPLY_BACKLOG",
        { remote, queuedBytes: socket.writableLength },
        "HJ 212 peer does not read its replies; connection closed",
      );
      socket.destroy();
      return;
    }
    socket.write(reply);
  }
}

/** The factory the agent registers (edge/drivers/index.ts): `drivers: [{ type: hj212, … }]`. */
export const hj212DriverFactory = {
  type: "hj212",
  options: Hj212DriverOptions,
  /** Throws an Error naming the first device the mapping feeds that the agent does not serve. */
  create(options: Hj212DriverOptions, deps: Hj212DriverDeps): Hj212Server {
    if (deps.devices !== undefined) {
      const served = new Map(deps.devices.map((d) => [d.deviceId, d.kind]));
      for (const [mn, devices] of Object.entries(options.mapping.devices)) {
        for (const device of devices) {
          const kind = options.mapping.models[device.model]?.kind;
          const servedKind = served.get(device.deviceId);
          if (servedKind === undefined || servedKind !== kind) {
            throw new Error(
              `mapping.devices.${mn}: device ${device.deviceId} (${kind ?? "?"}) is not one of the agent's devices` +
                (servedKind === undefined ? "" : ` (the agent serves it as ${servedKind})`),
            );
          }
        }
      }
    }
    return new Hj212Server(options, deps);
  },
} as const;
