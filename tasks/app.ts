import { join } from "node:path";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { TasksConfig } from "../contracts/config/tasks.js";
import { asyncTokenStore, type AsyncTokenStore } from "./auth/store-port.js";
import { TokenStore } from "./auth/tokens.js";
import { TokenWatch } from "./auth/watch.js";
import { mqttTarget, type Publisher } from "./notify/mqtt.js";
import { Outbox, type OutboxTarget } from "./notify/outbox.js";
import { TaskStream } from "./notify/stream.js";
import { evidenceLinkOf, postSigned, webhookDelivery } from "./notify/webhook.js";
import type { Recheck } from "../contracts/model/alarms.js";
import { EvidenceKeyring, evidenceKeyFile } from "./evidence-keys.js";
import { evidenceLinkKeyFile, EvidenceLinks } from "./evidence-links.js";
import { taskMetrics, type TaskMetrics } from "./metrics.js";
import { notifyMetrics, type NotifyMetrics } from "./notify/metrics.js";
import { TaskService } from "./service.js";
import { AttachmentFiles } from "./attachments.js";
import { TaskStore } from "./store.js";
import { asyncTaskStore, type AsyncTaskStore } from "./store-port.js";
import { AssessmentSchedule, announcementKey } from "./assessment-schedule.js";
import { calendarOf } from "./calendar/working-time.js";
import { ContactRetention, complaintTargets } from "./complaints.js";
import type { RegistryLookup } from "./types.js";

/*
 * The task system of the ingest: store, service, outbox (webhooks, MQTT task topics), live stream
 * and API tokens, built from one dependency object. start() delivers what a previous run left in
 * the outbox; stop() stops timers, waits for deliveries in flight and closes the databases.
 */

export interface TaskSystemDeps {
  readonly log: Logger;
  readonly config: TasksConfig;
  readonly dataDir: string;
  readonly registry: RegistryLookup;
  /** The ingest's metrics registry (one /metrics per process). */
  readonly metricsRegistry: Registry;
  readonly now: () => number;
  /** MQTT publisher for the task topics; absent: no MQTT target. */
  readonly publish?: Publisher | undefined;
  /** Re-check of graduated response at the rectification deadline. */
  readonly recheck?: Recheck | undefined;
  readonly random?: () => number;
  /**
   * The evidence signing keys; absent: opened from `tasks.evidence.keyFile` (default
   * `{dataDir}/evidence-keys.json`), created with a first key when there is none.
   */
  readonly keyring?: EvidenceKeyring | undefined;
  /**
   * Where recipients reach this API when `tasks.evidence.publicUrl` is not set (the process's
   * `http://{http.host}:{http.port}`), for signed links to printable evidence. Absent with no
   * `publicUrl`: no signed links (webhooks carry none, the link route answers unavailable).
   */
  readonly httpBase?: string | undefined;
}

/**
 * The state a node of a cluster shares with the others (docs/cluster.md): the task store and the
 * users-and-tokens store on PostgreSQL (their pool is the caller's, ended by the caller).
 */
export interface SharedTaskState {
  readonly tasks: AsyncTaskStore;
  readonly tokens: AsyncTokenStore;
  /** Names this node in the outbox's delivery leases (the node id); absent: host, pid, random. */
  readonly holder?: string | undefined;
}

/** What the HTTP API needs to serve the task routes (tasks/http). */
export interface TaskApiDeps {
  readonly service: TaskService;
  readonly store: AsyncTaskStore;
  /** The data directory (the party routes open its registry). */
  readonly dataDir: string;
  /** Users, sessions and API tokens, as the API authenticates with them (asynchronous). */
  readonly tokens: AsyncTokenStore;
  /** Tells the bearer cache and the stream of revocations at once. */
  readonly tokenWatch?: TokenWatch | undefined;
  readonly stream: TaskStream;
  readonly tokenCacheMs: number;
  readonly now: () => number;
  /** The evidence keys: served public, used to verify packages. */
  readonly keyring: EvidenceKeyring;
  /** Language of the printable document when a request names none (`tasks.evidence.language`). */
  readonly evidenceLanguage: "zh-CN" | "en";
  /** Attachment files under `{dataDir}/attachments`, and the largest accepted. */
  readonly attachments: { readonly files: AttachmentFiles; readonly maxBytes: number };
}

/** The task system on any stores: what a node of a cluster runs (buildSharedTaskSystem). */
export interface SharedTaskSystem {
  readonly service: TaskService;
  /** The task store as the service, the outbox and the API use it (asynchronous). */
  readonly shared: AsyncTaskStore;
  /** Users, sessions and tokens as the API uses them (asynchronous). */
  readonly sharedTokens: AsyncTokenStore;
  readonly tokenWatch: TokenWatch;
  readonly outbox: Outbox;
  readonly stream: TaskStream;
  readonly metrics: TaskMetrics & NotifyMetrics;
  readonly keyring: EvidenceKeyring;
  /** What the HTTP API needs to serve the task routes (`buildApi`'s `tasks`). */
  readonly api: TaskApiDeps;
  start(): void;
  stop(): Promise<void>;
}

/** The task system of one process on its data directory's embedded files (`citywatch start`). */
export interface TaskSystem extends SharedTaskSystem {
  /** The embedded tasks.db itself (synchronous; tests and local tools read it directly). */
  readonly store: TaskStore;
  /** The embedded tokens.db itself (synchronous; the CLI and tests write it directly). */
  readonly tokens: TokenStore;
}

/**
 * The task system on `{dataDir}/tasks.db` and `{dataDir}/tokens.db`, each behind its
 * asynchronous interface (the service, the outbox and the API use those; their users take turns
 * on the file).
 */
export function buildTaskSystem(deps: TaskSystemDeps): TaskSystem {
  const store = new TaskStore(join(deps.dataDir, "tasks.db"));
  let tokens: TokenStore;
  try {
    tokens = new TokenStore(join(deps.dataDir, "tokens.db"), deps.now);
  } catch (error) {
    store.close();
    throw error;
  }
  const shared = asyncTaskStore(store);
  const sharedTokens = asyncTokenStore(tokens);
  try {
    const system = assemble(deps, { tasks: shared, tokens: sharedTokens }, true);
    return {
      ...system,
      store,
      tokens,
      async stop() {
        await system.stop();
        // After the calls under way (each adapter's turn).
        await shared.close();
        await sharedTokens.close();
      },
    };
  } catch (error) {
    store.close();
    tokens.close();
    throw error;
  }
}

/**
 * The task system of a cluster node on the shared stores (PostgreSQL): the service, the outbox
 * (its targets delivered by one node at a time, under delivery leases), the live stream and the
 * API's authentication. Nothing of it is kept in the data directory but the evidence keys, the
 * evidence link key, the attachment files and the monthly reports. stop() leaves the stores open.
 */
export function buildSharedTaskSystem(
  deps: TaskSystemDeps,
  state: SharedTaskState,
): SharedTaskSystem {
  return assemble(deps, state, false);
}

/**
 * The parts on the given stores. `askEveryUse`: requests and stream events ask the token store
 * whether anything changed before they use what the caches hold (tokens.db: the ask reads shared
 * memory); otherwise the watch only polls (PostgreSQL: an ask is a round trip).
 */
function assemble(
  deps: TaskSystemDeps,
  state: SharedTaskState,
  askEveryUse: boolean,
): SharedTaskSystem {
  const log = deps.log.child({ module: "tasks" });
  const { config, now } = deps;
  const metrics = { ...taskMetrics(deps.metricsRegistry), ...notifyMetrics(deps.metricsRegistry) };
  // Before any database: a key file that is unreadable, malformed or not owner-only stops the start.
  const keyring =
    deps.keyring ??
    EvidenceKeyring.open(evidenceKeyFile(config, deps.dataDir), { log, now, create: true });
  const baseUrl = config.evidence.publicUrl ?? deps.httpBase;
  const evidenceLinks =
    baseUrl === undefined
      ? undefined
      : EvidenceLinks.open(evidenceLinkKeyFile(deps.dataDir), {
          ttlMs: config.evidence.linkTtlMs,
          baseUrl,
          language: config.evidence.language,
          now,
          log,
        });
  const shared = state.tasks;
  const sharedTokens = state.tokens;
  const evidenceLink =
    evidenceLinks === undefined ? undefined : evidenceLinkOf(evidenceLinks, shared);
  const targets: OutboxTarget[] = config.webhooks.map((hook) => ({
    name: hook.name,
    kinds: hook.kinds,
    deliver: webhookDelivery(hook, { timeoutMs: config.outbox.timeoutMs, now, evidenceLink }),
  }));
  if (deps.publish !== undefined) targets.push(mqttTarget(deps.publish));
  // Hotline platforms hear of their complaints' outcomes (only those events: OutboxTarget.accepts).
  targets.push(
    ...complaintTargets(config.complaints.platforms, { timeoutMs: config.outbox.timeoutMs, now }),
  );
  const outbox = new Outbox({
    store: shared,
    targets,
    options: config.outbox,
    metrics,
    log,
    now,
    ...(deps.random === undefined ? {} : { random: deps.random }),
    ...(state.holder === undefined ? {} : { holder: state.holder }),
  });
  // tokens.db's change count is shared memory: requests and events ask too. PostgreSQL's is a
  // round trip: polled only (another node's change is seen within watchMs).
  const tokenWatch = new TokenWatch(sharedTokens, {
    intervalMs: config.tokens.watchMs,
    log,
    everyUse: askEveryUse,
  });
  const stream = new TaskStream(config.stream, {
    metrics,
    log,
    check: () => tokenWatch.beforeUse(),
  });
  // A revoked token's streams close at once (the watch polls; requests and events ask too).
  tokenWatch.onChange(() => stream.revalidate((id) => sharedTokens.isActive(id)));
  const service = new TaskService({
    log,
    config,
    store: shared,
    registry: deps.registry,
    metrics,
    now,
    recheck: deps.recheck,
    enqueue: (event, tx) => outbox.enqueue(event, tx),
    keyring,
  });
  service.onEvent((event) => {
    stream.publish(event);
    outbox.kick();
  });
  // The assessment report (API, monthly run): the SLA limits and the working calendar.
  const assessment = { sla: config.sla, calendar: calendarOf(config.calendar) };
  const assessments = new AssessmentSchedule({
    store: shared,
    settings: assessment,
    dataDir: deps.dataDir,
    log,
    now,
    intervalMs: config.tickMs,
    // Announced to every webhook that takes all events, signed and retried like the outbox.
    receivers: config.webhooks
      .filter((hook) => hook.kinds === undefined)
      .map((hook) => ({
        name: hook.name,
        deliver: ({ month, body }) =>
          postSigned(
            hook,
            { event: "assessment.published", key: announcementKey(month), body },
            { timeoutMs: config.outbox.timeoutMs, now },
          ),
      })),
    backoff: { baseMs: config.outbox.backoffBaseMs, maxMs: config.outbox.backoffMaxMs },
    ...(deps.random === undefined ? {} : { random: deps.random }),
  });
  // Complainants' contacts are erased once their task has been closed long enough.
  const contacts = new ContactRetention({
    store: shared,
    retentionMs: config.complaints.contactRetentionMs,
    intervalMs: Math.min(3_600_000, Math.max(config.tickMs, 60_000)),
    now,
    log,
  });
  return {
    service,
    shared,
    sharedTokens,
    tokenWatch,
    outbox,
    stream,
    metrics,
    keyring,
    api: {
      service,
      store: shared,
      dataDir: deps.dataDir,
      tokens: sharedTokens,
      tokenWatch,
      stream,
      tokenCacheMs: config.tokens.cacheMs,
      now,
      keyring,
      evidenceLinks,
      evidenceLanguage: config.evidence.language,
      attachments: {
        files: new AttachmentFiles(join(deps.dataDir, "attachments")),
        maxBytes: config.attachments.maxBytes,
      },
      assessment,
    },
    start() {
      tokenWatch.start();
      void outbox.start();
      service.start();
      assessments.start();
      contacts.start();
    },
    async stop() {
      await service.stop();
      contacts.stop();
      await tokenWatch.stop();
      stream.close();
      await Promise.all([outbox.stop(), assessments.stop()]);
    },
  };
}
