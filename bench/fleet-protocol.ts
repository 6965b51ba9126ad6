import { z } from "zod";
import { BenchKind } from "./ingest-protocol.js";

/**
 * The IPC messages of the fleet bench (bench/fleet.ts, the parent) with its two kinds of child:
 * the system under test (bench/fleet-server.ts) and the device processes
 * (bench/fleet-devices.ts). Every message is a request with an `id` answered once with the same
 * `id`, or `failed`. Both ends parse with these schemas: an IPC message is `unknown` data.
 */

/** One registered device: its id, kind and secret (username = client id = device id). */
export const FleetDevice = z.strictObject({
  id: z.string().min(1),
  kind: BenchKind,
  password: z.string().min(1),
});
export type FleetDevice = z.infer<typeof FleetDevice>;

const Failed = z.strictObject({
  type: z.literal("failed"),
  id: z.number().int().optional(),
  message: z.string(),
});

// ---- The system under test.

/** What the server child builds; passed as JSON in its first argument. */
/**
 * `all-in-one`: what `citywatch start` runs (broker, ingest, rules, tasks in one process).
 * `broker`: the same broker and registry, with a publish gate that only counts in place of the
 * ingest, so the broker's own memory per connection is told apart.
 */
export const ServerVariant = z.enum(["all-in-one", "broker"]);
export type ServerVariant = z.infer<typeof ServerVariant>;

export const ServerArgs = z.strictObject({
  variant: ServerVariant,
  /** An empty directory for the registry, inbox and stores; the parent removes it after the child. */
  dataDir: z.string().min(1),
  devices: z.number().int().positive(),
  /** The devices' reporting interval, their registered expectedIntervalS. */
  intervalS: z.number().int().positive(),
  /**
   * The last this many devices are the warm-up's: they report once and go, so they are
   * registered with an expected interval of a day (no deadman task for them during the run).
   */
  warmup: z.number().int().min(0),
});
export type ServerArgs = z.infer<typeof ServerArgs>;

export const ServerRequest = z.discriminatedUnion("type", [
  /** CPU time, counters and memory as they are (no garbage collection): polled every second. */
  z.strictObject({ type: z.literal("sample"), id: z.number().int() }),
  /** Collect garbage (several passes), then heap and RSS. */
  z.strictObject({ type: z.literal("measure"), id: z.number().int() }),
  /** After the run: the store counted, the commit ledger, dead letters, duplicates. */
  z.strictObject({ type: z.literal("count"), id: z.number().int() }),
  z.strictObject({ type: z.literal("stop") }),
]);
export type ServerRequest = z.infer<typeof ServerRequest>;

export const ServerMessage = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("ready"),
    port: z.number().int().min(1).max(65_535),
    devices: z.array(FleetDevice),
    /** Milliseconds it took to register the devices (one transaction). */
    registerMs: z.number(),
  }),
  z.strictObject({
    type: z.literal("sample"),
    id: z.number().int(),
    /** process.cpuUsage(), user + system, µs. */
    cpuMicros: z.number(),
    rss: z.number(),
    heapUsed: z.number(),
    heapTotal: z.number(),
    /** Memory of C++ objects bound to JavaScript ones, buffers included (process.memoryUsage). */
    external: z.number(),
    connectedClients: z.number().int(),
    readingsStored: z.number(),
    messagesReceived: z.number(),
  }),
  /** The answer to `measure`. */
  z.strictObject({
    type: z.literal("measure"),
    id: z.number().int(),
    heapUsed: z.number(),
    rss: z.number(),
    connectedClients: z.number().int(),
  }),
  z.strictObject({
    type: z.literal("count"),
    id: z.number().int(),
    /** Rows in the embedded store's table of readings. */
    storeRows: z.number().int(),
    readingsStored: z.number(),
    duplicates: z.number(),
    deadLetters: z.number().int(),
    storeErrors: z.number(),
    inbox: z.number().int(),
    /** The commit ledger: each device's committed seq. */
    committed: z.record(z.string(), z.number().int()),
    /** Broker counters: connections accepted, refused by reason, refused at a limit. */
    connectionsAccepted: z.number(),
    authFailures: z.number(),
    limitRejections: z.number(),
    clientErrors: z.number(),
  }),
  Failed,
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

// ---- The device processes.

/** How a device knows a reading is safe: citywatch's commit, or (Mosquitto) the PUBACK. */
export const Confirm = z.enum(["commit", "puback"]);
export type Confirm = z.infer<typeof Confirm>;

export const DevicesSetup = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65_535),
  devices: z.array(FleetDevice),
  /** This process's first device's place in the whole fleet, and the fleet's size (phases). */
  firstIndex: z.number().int().min(0),
  fleetSize: z.number().int().positive(),
  confirm: Confirm,
  intervalMs: z.number().int().positive(),
  /** CONNECTs without their CONNACK yet, at most, in the first connect of the fleet. */
  connecting: z.number().int().positive(),
  /** Reconnect delays, drawn as the simulator draws them (simulators/fleet/device.ts). */
  reconnectMs: z.tuple([z.number().min(0), z.number().min(0)]),
  connectTimeoutMs: z.number().int().positive(),
  keepaliveS: z.number().int().positive(),
  seed: z.number().int(),
});
export type DevicesSetup = z.infer<typeof DevicesSetup>;

export const DevicesRequest = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("setup"), id: z.number().int(), setup: DevicesSetup }),
  /** Connect every device (at most `connecting` at once); each publishes one reading on connect. */
  z.strictObject({ type: z.literal("connect"), id: z.number().int() }),
  /** Produce a reading per device every interval from `t0` (epoch ms), each at its own phase. */
  z.strictObject({ type: z.literal("cadence"), id: z.number().int(), t0: z.number() }),
  /** Cut every connection at once (TCP reset, no DISCONNECT); each device reconnects on its own. */
  z.strictObject({ type: z.literal("cut"), id: z.number().int() }),
  /** Produce no more readings. */
  z.strictObject({ type: z.literal("quiet"), id: z.number().int() }),
  z.strictObject({ type: z.literal("sample"), id: z.number().int() }),
  /** Commit latencies (first send to confirmation) since the last call, and clear them. */
  z.strictObject({ type: z.literal("latencies"), id: z.number().int() }),
  /** Each device's last seq produced. */
  z.strictObject({ type: z.literal("seqs"), id: z.number().int() }),
  /** Reset every connection and exit. */
  z.strictObject({ type: z.literal("close") }),
]);
export type DevicesRequest = z.infer<typeof DevicesRequest>;

/** Milestones of the whole process: the latest time (epoch ms) its last device reached each. */
export const DevicesSample = z.strictObject({
  type: z.literal("sample"),
  id: z.number().int(),
  cpuMicros: z.number(),
  devices: z.number().int(),
  /** Devices with an accepted connection now, and of those, subscribed (SUBACK) now. */
  connected: z.number().int(),
  subscribed: z.number().int(),
  /** Readings produced, published for the first time, re-sent, and confirmed (commit or PUBACK). */
  produced: z.number().int(),
  sent: z.number().int(),
  resent: z.number().int(),
  confirmed: z.number().int(),
  /** Connection attempts, and the failed ones by why (timeout, refused code, closed, error). */
  attempts: z.number().int(),
  failures: z.record(z.string(), z.number().int()),
  /** Accepted connections that dropped without our cut. */
  drops: z.number().int(),
  /** Packets from the broker that made no sense here (a SUBACK failure, an unknown type). */
  oddities: z.number().int(),
  /**
   * Since the last connect or cut: devices that are up again and caught up (everything produced
   * before they were up confirmed), and the latest time one got there; the latest CONNACK and
   * SUBACK. Undefined until every device of this process has.
   */
  caughtUp: z.number().int(),
  lastConnackMs: z.number().optional(),
  lastSubackMs: z.number().optional(),
  lastCaughtUpMs: z.number().optional(),
});
export type DevicesSample = z.infer<typeof DevicesSample>;

export const DevicesMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("ok"), id: z.number().int() }),
  DevicesSample,
  z.strictObject({
    type: z.literal("latencies"),
    id: z.number().int(),
    /** Milliseconds, unsorted. */
    values: z.array(z.number()),
  }),
  z.strictObject({
    type: z.literal("seqs"),
    id: z.number().int(),
    last: z.record(z.string(), z.number().int()),
  }),
  Failed,
]);
export type DevicesMessage = z.infer<typeof DevicesMessage>;

/**
 * A child's side of the IPC: each request parsed with `schema` and answered with what `answer`
 * returns (nothing for a stop), or with `failed` carrying the request's id and the error.
 */
export function answerRequests<R extends { type: string }>(
  schema: z.ZodType<R>,
  answer: (request: R) => Promise<object | undefined> | object | undefined,
): void {
  process.on("message", (raw: unknown) => {
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      process.send?.({ type: "failed", message: `unexpected message: ${JSON.stringify(raw)}` });
      return;
    }
    const id = (parsed.data as { id?: number }).id;
    const fail = (error: unknown) =>
      process.send?.({
        type: "failed",
        ...(id !== undefined ? { id } : {}),
        message: error instanceof Error ? error.message : String(error),
      });
    new Promise<object | undefined>((resolve) => resolve(answer(parsed.data))).then((reply) => {
      if (reply !== undefined) process.send?.(reply);
    }, fail);
  });
}
