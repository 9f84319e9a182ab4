-- How many times each step has paused. A Retry / Skip / Abort names the pause it answers, so a
-- stale or repeated click cannot act on a later pause of the same step (a step that pauses
-- before its plugin runs, e.g. for a missing secret, pauses again at the same attempt number).
ALTER TABLE step_results ADD COLUMN pauses INTEGER NOT NULL DEFAULT 0;
