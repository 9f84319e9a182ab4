-- offramp results store, PostgreSQL flavour: the same tables as the SQLite store
-- (runner/migrations/sqlite, 0001 to 0003), with JSONB for JSON and real booleans.
-- Timestamps are RFC 3339 UTC text, as in SQLite, so both stores answer alike and sort alike.
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    pipeline_name   TEXT NOT NULL,
    pipeline_hash   TEXT NOT NULL,
    plan            JSONB NOT NULL,
    subject         TEXT NOT NULL,
    inputs          JSONB NOT NULL,
    requested_by    TEXT NOT NULL,
    dry_run         BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL CHECK (status IN ('pending','running','paused','succeeded','failed','aborted')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    finished_at     TEXT
);
CREATE INDEX runs_created ON runs (created_at DESC);
CREATE INDEX runs_status ON runs (status);

CREATE TABLE step_results (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id         TEXT NOT NULL,
    position        BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending','running','succeeded','unchanged','failed','skipped','paused')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    pauses          BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL,
    output          JSONB,
    error           TEXT,
    resolution      TEXT,
    log             JSONB,
    requests        JSONB,
    started_at      TEXT,
    finished_at     TEXT,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE events (
    id              BIGSERIAL PRIMARY KEY,
    run_id          TEXT,
    step_id         TEXT,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    detail          JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX events_run ON events (run_id, id);

-- The event log is append-only.
CREATE FUNCTION offramp_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION offramp_events_append_only();

CREATE TABLE approvers (
    user_id         TEXT PRIMARY KEY,
    added_by        TEXT NOT NULL,
    added_at        TEXT NOT NULL
);

CREATE TABLE run_requests (
    id              TEXT PRIMARY KEY,
    pipeline        TEXT NOT NULL,
    pipeline_hash   TEXT NOT NULL,
    inputs          JSONB NOT NULL,
    subject         TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    channel_id      TEXT,
    approvals_needed BIGINT NOT NULL DEFAULT 0,
    allow_self      BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL CHECK (status IN ('pending','started','cancelled')),
    decided_by      TEXT,
    run_id          TEXT,
    message_channel TEXT,
    message_ts      TEXT,
    created_at      TEXT NOT NULL,
    decided_at      TEXT
);

CREATE TABLE request_approvals (
    request_id      TEXT NOT NULL REFERENCES run_requests (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL,
    at              TEXT NOT NULL,
    PRIMARY KEY (request_id, user_id)
);

CREATE TABLE run_messages (
    run_id          TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    ts              TEXT NOT NULL,
    request_id      TEXT
);

CREATE TABLE seen_signatures (
    signature       TEXT PRIMARY KEY,
    seen_at         BIGINT NOT NULL
);
CREATE INDEX seen_signatures_at ON seen_signatures (seen_at);
