-- Found by `make bench`: the claimer's "no earlier queued task in this session" check and the
-- history window walked every task of a session, so both slowed down as sessions grew.

-- A session's queued tasks in order: the claimer's check is one index probe.
CREATE INDEX tasks_queued_by_session ON tasks (tenant_id, user_id, session_id, seq) WHERE state = 'queued';
