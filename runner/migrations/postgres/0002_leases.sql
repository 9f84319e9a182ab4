-- Leases: the replica driving a run holds it until `lease_until` (unix milliseconds) and
-- renews it while it works. A run whose lease ran out (its replica died) is claimed by another
-- with FOR UPDATE SKIP LOCKED; every step write checks the lease, so a replica that lost it stops.
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until BIGINT;
CREATE INDEX runs_lease ON runs (status, lease_until);

-- When the last reminder about a paused run went to its Slack thread.
ALTER TABLE runs ADD COLUMN reminded_at TEXT;
