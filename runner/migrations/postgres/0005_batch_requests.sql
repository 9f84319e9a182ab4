-- A request for several people at once (`/offboard a@x b@x …`, `POST /api/runs`): the people and
-- each one's inputs, as a JSON array of {"subject", "inputs"}; once started, the batch it made.
ALTER TABLE run_requests ADD COLUMN batch JSONB;
ALTER TABLE run_requests ADD COLUMN batch_id TEXT;
-- The request a batch came from, and the one channel message it is reported in.
ALTER TABLE batches ADD COLUMN request_id TEXT;
ALTER TABLE batches ADD COLUMN message_channel TEXT;
ALTER TABLE batches ADD COLUMN message_ts TEXT;
