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
  {
    version: 5,
    name: "tasks, audit trail, evidence, events and outbox",
    // tasks/store-postgres.ts: the embedded tasks.db's tables (tasks/store.ts), shared by the
    // nodes, each prefixed task_ in this shared schema. Documents (a task, an event, an evidence
    // package) are kept as the text written, not jsonb, so a document reads back byte for byte
    // (jsonb would reorder its keys). Keys that lists sort by are COLLATE "C": ties break in
    // byte order, as in SQLite, whatever the database's locale. The audit trail, evidence
    // packages and attachments are append-only, refused by triggers as in SQLite (TRUNCATE too).
    sql: `
CREATE TABLE task_counter (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO task_counter (name, value) VALUES ('task', 0);

CREATE TABLE task (
  id             text COLLATE "C" PRIMARY KEY,
  kind           text NOT NULL,
  state          text NOT NULL,
  open           boolean NOT NULL,
  rule_id        text COLLATE "C" NOT NULL,
  subject_type   text NOT NULL,
  subject_id     text COLLATE "C" NOT NULL,
  site_id        text COLLATE "C",
  district       text COLLATE "C",
  street         text COLLATE "C",
  grid_cell      text COLLATE "C",
  level          text,
  level_index    integer NOT NULL DEFAULT 0,
  sla_due_ms     bigint,
  sla_flagged    boolean NOT NULL DEFAULT false,
  party_key      text COLLATE "C",
  party_name     text,
  recheck_due_ms bigint,
  filed_ms       bigint NOT NULL,
  updated_ms     bigint NOT NULL,
  doc            text NOT NULL
);
CREATE UNIQUE INDEX task_one_open ON task (subject_type, subject_id, rule_id) WHERE open;
CREATE INDEX task_filed_id ON task (filed_ms, id);
CREATE INDEX task_party ON task (party_key, filed_ms) WHERE party_key IS NOT NULL;
CREATE INDEX task_open_party ON task (party_key, filed_ms) WHERE open AND party_key IS NOT NULL;
CREATE INDEX task_recheck ON task (recheck_due_ms) WHERE recheck_due_ms IS NOT NULL;
CREATE INDEX task_open_filed ON task (open, filed_ms, id);
CREATE INDEX task_open_level ON task (open, level_index, filed_ms, id);
CREATE INDEX task_open_sla ON task (open, (coalesce(sla_due_ms, 9007199254740991)), id);
CREATE INDEX task_site ON task (site_id, open, filed_ms);
CREATE INDEX task_district ON task (district, open, filed_ms);
CREATE INDEX task_street ON task (street, open, filed_ms) WHERE street IS NOT NULL;
CREATE INDEX task_grid ON task (grid_cell, open, filed_ms) WHERE grid_cell IS NOT NULL;

CREATE TABLE task_link (
  subject_type text NOT NULL,
  subject_id   text COLLATE "C" NOT NULL,
  rule_id      text COLLATE "C" NOT NULL,
  task_id      text COLLATE "C" NOT NULL,
  PRIMARY KEY (subject_type, subject_id, rule_id, task_id)
);

CREATE TABLE task_audit (
  id         bigserial PRIMARY KEY,
  task_id    text COLLATE "C" NOT NULL,
  at_ms      bigint NOT NULL,
  actor      text NOT NULL,
  action     text NOT NULL,
  from_state text,
  to_state   text,
  detail     text NOT NULL
);
CREATE INDEX task_audit_task ON task_audit (task_id, id);

CREATE TABLE task_evidence (
  task_id    text COLLATE "C" NOT NULL,
  sequence   integer NOT NULL,
  created_ms bigint NOT NULL,
  hash       text NOT NULL,
  package    text NOT NULL,
  PRIMARY KEY (task_id, sequence)
);

CREATE TABLE task_event (
  id      bigserial PRIMARY KEY,
  task_id text COLLATE "C" NOT NULL,
  at_ms   bigint NOT NULL,
  payload text NOT NULL
);

CREATE TABLE task_outbox (
  id         bigserial PRIMARY KEY,
  event_id   bigint NOT NULL,
  target     text COLLATE "C" NOT NULL,
  attempts   integer NOT NULL DEFAULT 0,
  next_ms    bigint NOT NULL,
  last_error text,
  created_ms bigint NOT NULL
);
CREATE INDEX task_outbox_target ON task_outbox (target, id);

CREATE TABLE task_outbox_dead (
  id         bigint PRIMARY KEY,
  event_id   bigint NOT NULL,
  target     text NOT NULL,
  attempts   integer NOT NULL,
  last_error text,
  created_ms bigint NOT NULL,
  dead_ms    bigint NOT NULL,
  why        text NOT NULL
);

CREATE TABLE task_complaint (
  platform     text NOT NULL,
  complaint_id text NOT NULL,
  task_id      text COLLATE "C" NOT NULL,
  received_ms  bigint NOT NULL,
  contact      text,
  created_ms   bigint NOT NULL,
  PRIMARY KEY (platform, complaint_id)
);

CREATE TABLE task_attachment (
  task_id  text COLLATE "C" NOT NULL,
  sha256   text COLLATE "C" NOT NULL,
  filename text NOT NULL,
  type     text NOT NULL,
  size     bigint NOT NULL,
  actor    text NOT NULL,
  at_ms    bigint NOT NULL,
  PRIMARY KEY (task_id, sha256)
);

CREATE FUNCTION task_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% append-only', TG_ARGV[0];
END
$$;
CREATE TRIGGER task_audit_append_only BEFORE UPDATE OR DELETE ON task_audit
  FOR EACH ROW EXECUTE FUNCTION task_refuse_change('the audit trail is');
CREATE TRIGGER task_audit_no_truncate BEFORE TRUNCATE ON task_audit
  FOR EACH STATEMENT EXECUTE FUNCTION task_refuse_change('the audit trail is');
CREATE TRIGGER task_evidence_append_only BEFORE UPDATE OR DELETE ON task_evidence
  FOR EACH ROW EXECUTE FUNCTION task_refuse_change('evidence packages are');
CREATE TRIGGER task_evidence_no_truncate BEFORE TRUNCATE ON task_evidence
  FOR EACH STATEMENT EXECUTE FUNCTION task_refuse_change('evidence packages are');
CREATE TRIGGER task_attachment_append_only BEFORE UPDATE OR DELETE ON task_attachment
  FOR EACH ROW EXECUTE FUNCTION task_refuse_change('attachments are');
CREATE TRIGGER task_attachment_no_truncate BEFORE TRUNCATE ON task_attachment
  FOR EACH STATEMENT EXECUTE FUNCTION task_refuse_change('attachments are');
`,
  },
  {
    version: 6,
    name: "registry: sites, devices, service accounts, parties",
    // registry/store-postgres.ts: the embedded registry.db's tables (registry/store.ts), shared
    // by the nodes, each prefixed registry_. Records and times (ISO 8601) are kept as the text
    // written, as the tasks' documents are; ids, names and keys that lists sort by are
    // COLLATE "C" (byte order, as in SQLite). Secrets only as their salted hashes
    // (registry/secrets.ts). A device's generation
    // outlives the device (registry_device_generation), so an id registered again never takes
    // an old generation. registry_party_site names sites without a foreign key, as in SQLite: a
    // party may list a site not registered yet, and a removed site's link stays.
    sql: `
CREATE TABLE registry_site (
  id   text COLLATE "C" PRIMARY KEY,
  type text NOT NULL,
  doc  text NOT NULL
);

CREATE TABLE registry_device (
  id          text COLLATE "C" PRIMARY KEY,
  kind        text NOT NULL,
  site_id     text COLLATE "C" NOT NULL REFERENCES registry_site (id),
  enabled     boolean NOT NULL,
  secret_hash text NOT NULL,
  doc         text NOT NULL,
  created_at  text NOT NULL
);
CREATE INDEX registry_device_site ON registry_device (site_id);

CREATE TABLE registry_device_generation (
  id            text COLLATE "C" PRIMARY KEY,
  generation    integer NOT NULL CHECK (generation >= 1),
  registered_at text NOT NULL
);

CREATE TABLE registry_service_account (
  name        text COLLATE "C" PRIMARY KEY,
  role        text NOT NULL,
  secret_hash text NOT NULL,
  doc         text NOT NULL,
  created_at  text NOT NULL
);

CREATE TABLE registry_party (
  key         text COLLATE "C" PRIMARY KEY,
  credit_code text UNIQUE,
  name        text COLLATE "C" NOT NULL,
  doc         text NOT NULL
);

CREATE TABLE registry_party_site (
  site_id   text COLLATE "C" PRIMARY KEY,
  party_key text COLLATE "C" NOT NULL REFERENCES registry_party (key) ON DELETE CASCADE
);
CREATE INDEX registry_party_site_party ON registry_party_site (party_key);
`,
  },
  {
    version: 7,
    name: "users, sessions and API tokens",
    // tasks/auth/store-postgres.ts: the embedded tokens.db's tables (tasks/auth/tokens.ts,
    // users.ts), shared by the nodes, each prefixed auth_. Secrets only as hashes: an API token's
    // and a session cookie's SHA-256, a password's scrypt hash (tasks/auth/password.ts). Times
    // are milliseconds (bigint); ids and names that lists sort by are COLLATE "C" (byte order, as
    // in SQLite). Sessions and tokens name their user without a foreign key, as in SQLite.
    // auth_change counts the changes of users, tokens and sessions ended: every statement that
    // changes auth_user or auth_api_token, or deletes sessions, adds one in its own transaction,
    // so a node that reads a new count knows the change is visible (TokenStore.changed: SQLite's
    // data_version).
    sql: `
CREATE TABLE auth_user (
  id         text COLLATE "C" PRIMARY KEY,
  name       text NOT NULL,
  badge      text,
  roles      text NOT NULL,
  scope      text NOT NULL,
  team       text,
  password   text,
  disabled   boolean NOT NULL DEFAULT false,
  created_ms bigint NOT NULL,
  updated_ms bigint NOT NULL
);

CREATE TABLE auth_session (
  hash       text COLLATE "C" PRIMARY KEY,
  user_id    text COLLATE "C" NOT NULL,
  csrf       text NOT NULL,
  created_ms bigint NOT NULL,
  last_ms    bigint NOT NULL,
  expires_ms bigint NOT NULL
);
CREATE INDEX auth_session_user ON auth_session (user_id);

CREATE TABLE auth_api_token (
  id         text COLLATE "C" PRIMARY KEY,
  name       text COLLATE "C" NOT NULL,
  role       text NOT NULL,
  hash       text COLLATE "C" NOT NULL UNIQUE,
  created_ms bigint NOT NULL,
  revoked_ms bigint,
  user_id    text COLLATE "C"
);
CREATE UNIQUE INDEX auth_api_token_active_name ON auth_api_token (name) WHERE revoked_ms IS NULL;

CREATE TABLE auth_change (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  version  bigint NOT NULL
);
INSERT INTO auth_change (version) VALUES (0);

CREATE FUNCTION auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE auth_change SET version = version + 1;
  RETURN NULL;
END
$$;
CREATE FUNCTION auth_sessions_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM ended) THEN
    UPDATE auth_change SET version = version + 1;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER auth_user_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth_user
  FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
CREATE TRIGGER auth_api_token_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
  ON auth_api_token FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
CREATE TRIGGER auth_session_ended AFTER DELETE ON auth_session REFERENCING OLD TABLE AS ended
  FOR EACH STATEMENT EXECUTE FUNCTION auth_sessions_ended();
`,
  },
  {
    version: 8,
    name: "outbox delivery leases",
    // tasks/store-postgres.ts, tasks/notify/outbox.ts: which node delivers a target's outbox
    // rows (a webhook's, mqtt), until when, under which fencing token. One row per target that
    // has been claimed; a released lease is deleted. Tokens come from their own sequence, so
    // none is issued twice and every takeover gets a larger one than all before it; expiry is
    // the database's clock (clock_timestamp()), never a node's.
    sql: `
CREATE SEQUENCE task_outbox_lease_token AS bigint;

CREATE TABLE task_outbox_lease (
  target     text PRIMARY KEY,
  holder     text NOT NULL,
  token      bigint NOT NULL,
  expires_at timestamptz NOT NULL
);
`,
  },
  {
    version: 9,
    name: "registry change count",
    // registry/watch-postgres.ts: each node keeps the registry in memory for its broker, ingest
    // and rules, and must hear of another node's (or the CLI's) change. registry_change counts
    // the statements that changed a registry table, in their own transaction, as auth_change
    // does for users and tokens (migration 7): a node that reads a new count reads the registry
    // again and sees the change; one read of one row per poll otherwise.
    sql: `
CREATE TABLE registry_change (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  version  bigint NOT NULL
);
INSERT INTO registry_change (version) VALUES (0);

CREATE FUNCTION registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE registry_change SET version = version + 1;
  RETURN NULL;
END
$$;
CREATE TRIGGER registry_site_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
  ON registry_site FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
CREATE TRIGGER registry_device_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
  ON registry_device FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
CREATE TRIGGER registry_device_generation_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
  ON registry_device_generation FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
CREATE TRIGGER registry_party_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
  ON registry_party FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
CREATE TRIGGER registry_party_site_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
  ON registry_party_site FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
`,
  },
];
