import type { Logger } from "pino";
import type { GateInbox } from "./gate.js";
import type { PostgresIngestState } from "./state-postgres.js";

/*
 * The receiving side of a cluster node: the broker's publish gate (gate.ts) writes device data to
 * the inbox the nodes share in PostgreSQL (PostgresIngestState.append) before the PUBACK, each
 * message tagged with its partition, and the owner of the partition handles it (ClusterPipeline),
 * whichever node that is.
 *
 * The bound (ingest.inboxMaxMessages) is the whole shared inbox's, all partitions, every node's
 * messages: what the owners have not handled yet. A count of the table on every publish would cost
 * a query per message, so the depth is read at most every DEPTH_EVERY_MS (one `count(*)`, in the
 * background) and the messages this node appended since are added to it. The bound is therefore
 * kept to within what the other nodes append in that time; the gate's own hold (no PUBACK while
 * full) is as for the embedded inbox.
 */

/** The shared inbox's depth is read at most this often. */
const DEPTH_EVERY_MS = 250;

export interface ClusterInboxDeps {
  readonly log: Logger;
  readonly state: PostgresIngestState;
  /** The work partition of a data topic's message (its device's site; cli/runtime wires it). */
  readonly partitionOfTopic: (topic: string) => number;
  readonly now: () => number;
}

export class ClusterInbox implements GateInbox {
  /** The table's count when last read, plus what this node appended since. */
  #depth = 0;
  #readAt = Number.NEGATIVE_INFINITY;
  #reading = false;

  constructor(private readonly deps: ClusterInboxDeps) {}

  /** The last depth read, and what was appended here since; starts a new read when due. */
  depth(): number {
    const now = this.deps.now();
    if (!this.#reading && now - this.#readAt >= DEPTH_EVERY_MS) {
      this.#reading = true;
      this.#readAt = now;
      this.deps.state.depth().then(
        (n) => {
          this.#depth = n;
          this.#reading = false;
        },
        (error: unknown) => {
          // The count stays as it was; an append that fails refuses its publishers anyway.
          this.#reading = false;
          this.deps.log.warn(
            { err: (error as Error).message },
            "shared inbox depth not read; the bound uses the last count",
          );
        },
      );
    }
    return this.#depth;
  }

  /** Read the depth now (at start, so that a full inbox holds publishers from the first one). */
  async refresh(): Promise<number> {
    this.#depth = await this.deps.state.depth();
    this.#readAt = this.deps.now();
    return this.#depth;
  }

  async appendMany(
    group: ReadonlyArray<{ topic: string; payload: Buffer; receivedMs: number }>,
  ): Promise<void> {
    await this.deps.state.append(
      group.map((m) => ({ ...m, partition: this.deps.partitionOfTopic(m.topic) })),
    );
    this.#depth += group.length;
  }
}
