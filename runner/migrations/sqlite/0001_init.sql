-- offramp results store, SQLite flavour.
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    pipeline_name   TEXT NOT NULL,
    pipeline_hash   TEXT NOT NULL,
    plan            TEXT NOT NULL,          -- the validated plan (JSON) the run executes
    subject         TEXT NOT NULL,
    inputs          TEXT NOT NULL,          -- JSON object
    requested_by    TEXT NOT NULL,
    dry_run         INTEGER NOT NULL DEFAULT 0,
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
    position        INTEGER NOT NULL,       -- order in the pipeline file
    status          TEXT NOT NULL CHECK (status IN ('pending','running','succeeded','unchanged','failed','skipped','paused')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL,
    output          TEXT,                   -- JSON
    error           TEXT,                   -- last error, or why the step was skipped
    resolution      TEXT,                   -- for skipped/failed: condition | dependency | decision | failure | abort
    log             TEXT,                   -- JSON array of lines (last attempt)
    requests        TEXT,                   -- JSON array of request records (last attempt)
    started_at      TEXT,
    finished_at     TEXT,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          TEXT,
    step_id         TEXT,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_run ON events (run_id, id);

-- The event log is append-only.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
