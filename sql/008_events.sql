-- Live runs (issue 14): every task's stored event stream, replayed by GET /agent/events/...

-- The migration reads and writes every tenant's rows (the backfill below), whatever role runs it.
SET LOCAL agentd.scope = 'system';

-- How many events the task has stored: the seq of its latest. A statement that stores events
-- takes their numbers from this column in the same UPDATE that locks the task's row, so
-- concurrent writers queue on the row and the numbers are gap-free and strictly increasing.
ALTER TABLE tasks ADD COLUMN events integer NOT NULL DEFAULT 0;

-- One row per stored event. Each is inserted by the statement that makes the change it
-- describes, so it commits with its step: no event without its step, no step without its event.
-- Message texts and results are not copied: a message event names its position in the turn
-- (the text is in messages), and task.completed's result is the task's result column.
CREATE TABLE task_events (
    tenant_id  text        NOT NULL DEFAULT 'default',
    user_id    text        NOT NULL,
    session_id text        NOT NULL,
    task_id    text        NOT NULL,
    seq        integer     NOT NULL CHECK (seq > 0),
    type       text        NOT NULL CHECK (type IN ('task.queued', 'task.running', 'message', 'tool.result', 'interrupt',
                                                    'decision', 'task.completed', 'task.error', 'task.cancelled')),
    -- message and tool.result: the message's position in the task's turn.
    position   integer,
    -- The type's other fields (attempt, reason, interrupt_data, decision, error message, who cancelled).
    data       jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, user_id, session_id, task_id, seq),
    FOREIGN KEY (tenant_id, user_id, session_id, task_id)
        REFERENCES tasks (tenant_id, user_id, session_id, task_id) ON DELETE CASCADE
);
ALTER TABLE task_events SET (autovacuum_vacuum_insert_scale_factor = 0.05);

GRANT SELECT, INSERT, DELETE ON task_events TO agentd_service;
ALTER TABLE task_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON task_events
    USING (tenant_id = current_setting('agentd.tenant_id', true) OR current_setting('agentd.scope', true) = 'system')
    WITH CHECK (tenant_id = current_setting('agentd.tenant_id', true) OR current_setting('agentd.scope', true) = 'system');

-- Tasks stored before this migration get the events their rows tell: queued, each model message
-- and tool result, then where the task is now. Decisions and re-queues of the past were not
-- recorded anywhere and are not invented.
WITH implied AS (
    SELECT tenant_id, user_id, session_id, task_id, 0 AS part, 0 AS k, 'task.queued' AS type, NULL::integer AS position,
           '{"reason": "invoked"}'::jsonb AS data, created_at
    FROM tasks
    UNION ALL
    SELECT tenant_id, user_id, session_id, task_id, 1, position, CASE type WHEN 'tool' THEN 'tool.result' ELSE 'message' END,
           position, '{}', created_at
    FROM messages
    WHERE position > 0
    UNION ALL
    SELECT tenant_id, user_id, session_id, task_id, 2, 0,
           CASE state WHEN 'completed' THEN 'task.completed' WHEN 'error' THEN 'task.error' WHEN 'cancelled' THEN 'task.cancelled'
                      WHEN 'interrupted' THEN 'interrupt' ELSE 'task.running' END,
           NULL,
           CASE state WHEN 'error' THEN jsonb_build_object('message', message)
                      WHEN 'interrupted' THEN jsonb_build_object('interrupt_data', interrupt_data)
                      WHEN 'running' THEN jsonb_build_object('attempt', attempts)
                      ELSE '{}' END,
           updated_at
    FROM tasks
    WHERE state <> 'queued'
), stored AS (
    INSERT INTO task_events (tenant_id, user_id, session_id, task_id, seq, type, position, data, created_at)
    SELECT tenant_id, user_id, session_id, task_id,
           row_number() OVER (PARTITION BY tenant_id, user_id, session_id, task_id ORDER BY part, k),
           type, position, data, created_at
    FROM implied
    RETURNING tenant_id, user_id, session_id, task_id, seq
)
UPDATE tasks SET events = stored.latest
FROM (SELECT tenant_id, user_id, session_id, task_id, max(seq) AS latest FROM stored GROUP BY 1, 2, 3, 4) AS stored
WHERE tasks.tenant_id = stored.tenant_id AND tasks.user_id = stored.user_id
  AND tasks.session_id = stored.session_id AND tasks.task_id = stored.task_id;

-- The agentd processes that serve, for the model's text as it is written (message.delta): it is
-- never stored, so a stream on one process asks the process that runs the task (tasks.lease_owner)
-- for it, at url, with that process's secret. Written when a process starts listening and again
-- every hour (seen_at), removed when it stops; a row left by a crashed process only costs a
-- refused connection, and goes after a day.
CREATE TABLE agentd_peers (
    owner   text        PRIMARY KEY,
    url     text        NOT NULL,
    secret  text        NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON agentd_peers TO agentd_service;

-- A cancelled task that was running keeps its lease_owner (the worker may still record the result
-- of a tool it had started: tool_calls, never a step); nothing else reads that column once the
-- task has ended.
COMMENT ON COLUMN tasks.message IS
    'Error text when state = error; who cancelled and when when state = cancelled; a note such as queued otherwise';
