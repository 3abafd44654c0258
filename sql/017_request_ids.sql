-- The x-request-id of the request that queued the task (its invoke, or the resume that queued it
-- again), so that the worker that runs it, in whichever process, logs the same id.
ALTER TABLE tasks ADD COLUMN request_id text CHECK (length(request_id) <= 128);
