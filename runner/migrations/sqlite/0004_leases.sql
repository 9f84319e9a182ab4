-- Leases: the process driving a run holds it until `lease_until` (unix milliseconds) and
-- renews it while it works. A run whose lease ran out (its process died) is taken over by
-- another; every step write checks the lease, so a process that lost it stops.
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until INTEGER;
CREATE INDEX runs_lease ON runs (status, lease_until);

-- When the last reminder about a paused run went to its Slack thread.
ALTER TABLE runs ADD COLUMN reminded_at TEXT;
