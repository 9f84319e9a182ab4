-- A batch: one request for many runs (a layoff day's list of leavers), with who asked and who
-- approved; each of its runs names it.
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approved_by TEXT,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN batch_id TEXT REFERENCES batches (id);
CREATE INDEX runs_batch ON runs (batch_id);
