-- Found by `make bench`: the claimer's "no earlier queued task in this session" check and the
-- history window walked every task of a session, so both slowed down as sessions grew.

-- A session's queued tasks in order: the claimer's check is one index probe.
CREATE INDEX tasks_queued_by_session ON tasks (tenant_id, user_id, session_id, seq) WHERE state = 'queued';

-- Every claim leaves a dead entry at the front of the queued-tasks indexes (the claimed row's
-- old version), and the claimer's scan in seq order walks them until vacuum removes them: with
-- the default thresholds (20% of a table that only grows) that is rarely. Vacuum the queue
-- table after a fixed number of changes instead.
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                       autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 2000);
