import type { Migration } from "./migrate.js";

/*
 * citywatch's PostgreSQL schema, as one ordered list of migrations (run by migrate() on start).
 * Append only: a released entry is never edited, removed or renumbered, because databases record
 * each version's checksum and refuse code that disagrees (see migrate.ts). The list lives in
 * infra/ so that every component that keeps state in PostgreSQL can add its tables here without
 * importing another component.
 */
export const CITYWATCH_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "cluster nodes and partition leases",
    // cluster/leases.ts: which node owns which work partition, until when, under which fencing
    // token. Tokens come from one sequence, so none is ever issued twice and each acquisition
    // gets a larger one than every earlier acquisition. A partition that nobody has held yet
    // has no owner and a lease that expired at -infinity.
    sql: `
CREATE SEQUENCE partition_lease_token AS bigint;

CREATE TABLE cluster_nodes (
  node_id    text PRIMARY KEY,
  started_at timestamptz NOT NULL,
  last_seen  timestamptz NOT NULL
);

CREATE TABLE partition_leases (
  partition   integer PRIMARY KEY CHECK (partition >= 0),
  owner       text,
  token       bigint,
  acquired_at timestamptz,
  expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);
`,
  },
  {
    version: 2,
    name: "alarm states",
    // rules/alarm-store-postgres.ts: the alarm state of every (rule, subject), as the embedded
    // store keeps it in alarms.db. partition: the work partition whose lease covers the
    // subject's writes (null: written by a node that does not partition its work); a node taking
    // partitions over reads their states by it.
    sql: `
CREATE TABLE alarm_states (
  rule_id    text NOT NULL,
  subject    text NOT NULL,
  partition  integer CHECK (partition >= 0),
  state      jsonb NOT NULL,
  updated_ms bigint NOT NULL,
  PRIMARY KEY (rule_id, subject)
);

CREATE INDEX alarm_states_partition ON alarm_states (partition);
`,
  },
  {
    version: 3,
    name: "ingest inbox, commit ledger and dead letters",
    // ingest/state-postgres.ts: the embedded ingest.db's tables, shared by the nodes. Any node
    // appends a message it received to ingest_inbox (with the partition of the device's site)
    // before its PUBACK; the partition's owner takes the partition's rows and, in one fenced
    // transaction, records the handled seqs (ingest_progress, ingest_processed), adds the dead
    // letters and deletes the rows. Seqs and times are bigint (int8): pg hands them to
    // JavaScript as strings, which the store converts.
    sql: `
CREATE TABLE ingest_inbox (
  id          bigserial PRIMARY KEY,
  partition   integer NOT NULL CHECK (partition >= 0),
  received_ms bigint NOT NULL,
  topic       text NOT NULL,
  payload     bytea NOT NULL
);

CREATE INDEX ingest_inbox_partition ON ingest_inbox (partition, id);

CREATE TABLE ingest_progress (
  device_id     text PRIMARY KEY,
  partition     integer NOT NULL CHECK (partition >= 0),
  committed_seq bigint NOT NULL CHECK (committed_seq >= 0),
  last_seq      bigint NOT NULL,
  last_seen_ms  bigint NOT NULL,
  committed_ms  bigint NOT NULL,
  generation    integer NOT NULL DEFAULT 1
);

CREATE INDEX ingest_progress_partition ON ingest_progress (partition);

CREATE TABLE ingest_processed (
  device_id text NOT NULL,
  seq       bigint NOT NULL,
  at_ms     bigint NOT NULL,
  PRIMARY KEY (device_id, seq)
);

CREATE TABLE ingest_dead_letters (
  id          bigserial PRIMARY KEY,
  partition   integer CHECK (partition >= 0),
  received_ms bigint NOT NULL,
  topic       text NOT NULL,
  device_id   text,
  seq         bigint,
  reason      text NOT NULL,
  detail      text NOT NULL,
  payload     bytea NOT NULL
);

CREATE INDEX ingest_dead_letters_device ON ingest_dead_letters (device_id, id);
`,
  },
  {
    version: 4,
    name: "dead letter accounts",
    // ingest/dead-letters-postgres.ts: each source's bytes and letters (a device, '' for topics
    // naming none; missing_seq records apart), changed with the letters in one transaction, so
    // every node keeps the bounds at each insert without summing the letters.
    sql: `
CREATE TABLE ingest_dead_letter_accounts (
  source  text NOT NULL,
  missing boolean NOT NULL,
  bytes   bigint NOT NULL,
  letters bigint NOT NULL,
  PRIMARY KEY (source, missing)
);

INSERT INTO ingest_dead_letter_accounts (source, missing, bytes, letters)
SELECT coalesce(device_id, ''), reason = 'missing_seq',
       sum(length(payload) + octet_length(detail)), count(*)
  FROM ingest_dead_letters GROUP BY 1, 2;
`,
  },
];
