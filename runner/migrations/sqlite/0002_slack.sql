-- Slack front door: who may ask, what was asked, where each run is reported, replay guard.

-- People who may request runs and decide on paused steps (Slack user ids).
CREATE TABLE approvers (
    user_id         TEXT PRIMARY KEY,
    added_by        TEXT NOT NULL,
    added_at        TEXT NOT NULL
);

-- A `/offboard` request waiting for Start (and, under a two-person rule, for approvals).
CREATE TABLE run_requests (
    id              TEXT PRIMARY KEY,       -- carried in the Start / Cancel button values
    pipeline        TEXT NOT NULL,          -- pipeline name (file stem)
    pipeline_hash   TEXT NOT NULL,          -- what the requester saw; Start refuses if it changed
    inputs          TEXT NOT NULL,          -- JSON object of the raw key=value inputs
    subject         TEXT NOT NULL,
    requested_by    TEXT NOT NULL,          -- Slack user id
    channel_id      TEXT,                   -- where the command was typed
    approvals_needed INTEGER NOT NULL DEFAULT 0,
    allow_self      INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('pending','started','cancelled')),
    decided_by      TEXT,
    run_id          TEXT,                   -- set when it starts (before the run is created)
    message_channel TEXT,                   -- the channel post asking for approval, if any
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

-- The one channel message each run is reported in (updated in place).
CREATE TABLE run_messages (
    run_id          TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    ts              TEXT NOT NULL,
    request_id      TEXT
);

-- Signatures of Slack requests already handled, for replay protection (kept ~10 minutes).
CREATE TABLE seen_signatures (
    signature       TEXT PRIMARY KEY,
    seen_at         INTEGER NOT NULL        -- unix seconds
);
CREATE INDEX seen_signatures_at ON seen_signatures (seen_at);
