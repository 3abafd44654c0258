-- The claim walks the queue in order and, for each candidate, probes its session for a running
-- task (tasks_one_running_per_session) and an older queued one (tasks_queued_by_session): one
-- step each. But tasks_queued (seq) and tasks_leased (lease_expires_at), both partial on the
-- state alone, could serve those probes too, as a walk of every queued or running task with a
-- filter on the session; on the estimates of a nearly empty queue the planner took tasks_queued,
-- and a claim in a burst of 2,000 invokes went quadratic (192 tasks in 460 ms). Each index now
-- names a condition that is true of all its rows and that only its own users state (the claim's
-- scan says seq > 0; the reaper's lease_expires_at < now() implies IS NOT NULL), so the
-- probes cannot take them.
-- Both built before either old one is dropped: a DROP INDEX locks the table against reads until
-- the migration commits, which must not last through a build.
CREATE INDEX tasks_queue_order ON tasks (seq) WHERE state = 'queued' AND seq > 0;
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE state = 'running' AND lease_expires_at IS NOT NULL;
DROP INDEX tasks_queued;
DROP INDEX tasks_leased;
