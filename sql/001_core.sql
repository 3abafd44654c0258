-- Core tables of agentd: sessions, their tasks, the messages of each task, and long-term memories.
-- Every table carries tenant_id first in its keys, so one database serves many tenants.
-- Identifiers that clients choose (user_id, session_id, task_id) are text.

-- Text search for memories that works for Chinese as well as English. PostgreSQL's parsers
-- do not split Chinese (no spaces between words), so every run of CJK characters becomes its
-- overlapping two-character pieces ("靠窗座位" → "靠窗 窗座 座位"); other text is left to the
-- english configuration, which stems it ("hotels" → "hotel"). Documents and queries go
-- through the same two functions.
CREATE FUNCTION agentd_search_text(input text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    cjk constant text := '[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+';
    result text := regexp_replace(input, cjk, ' ', 'g');
    run text;
BEGIN
    FOR run IN SELECT (regexp_matches(input, cjk, 'g'))[1] LOOP
        IF char_length(run) = 1 THEN
            result := result || ' ' || run;
        ELSE
            FOR i IN 1 .. char_length(run) - 1 LOOP
                result := result || ' ' || substr(run, i, 2);
            END LOOP;
        END IF;
    END LOOP;
    RETURN result;
END
$$;

CREATE FUNCTION agentd_search_document(input text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN to_tsvector('english', agentd_search_text(input));

-- Any shared word or two-character piece matches (OR); ranking puts the best first.
CREATE FUNCTION agentd_search_query(input text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery
    FROM unnest(tsvector_to_array(agentd_search_document(input))) AS lexeme
);

CREATE TABLE sessions (
    tenant_id  text        NOT NULL DEFAULT 'default',
    user_id    text        NOT NULL,
    session_id text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every task submitted to the session: "the most recently updated session".
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, session_id)
);
-- GET /agent/active/sessionid/{user_id}: the user's latest session.
CREATE INDEX sessions_by_recency ON sessions (tenant_id, user_id, updated_at DESC);

CREATE TABLE tasks (
    tenant_id        text        NOT NULL DEFAULT 'default',
    user_id          text        NOT NULL,
    session_id       text        NOT NULL,
    task_id          text        NOT NULL,
    -- Global submission order; a session's tasks run in this order.
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    query            text        NOT NULL,
    system_message   text,
    -- queued → running → (interrupted ⇄ queued/running)* → completed | error | cancelled
    state            text        NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'interrupted', 'completed', 'error', 'cancelled')),
    -- Error text when state = 'error'; a note such as 'queued' otherwise.
    message          text,
    -- The last AgentResponse parts: result for completed, interrupt_data for interrupted.
    result           jsonb,
    interrupt_data   jsonb,
    attempts         integer     NOT NULL DEFAULT 0,
    -- Lease of the worker that runs the task; expired leases are put back in the queue.
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Last time the task entered the queue (invoke or resume); claimed_at - queued_at is dispatch latency.
    queued_at        timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (tenant_id, user_id, session_id, task_id),
    UNIQUE (seq),
    FOREIGN KEY (tenant_id, user_id, session_id)
        REFERENCES sessions (tenant_id, user_id, session_id) ON DELETE CASCADE
);
-- The claimer's scan: queued tasks in submission order.
CREATE INDEX tasks_queued ON tasks (seq) WHERE state = 'queued';
-- The reaper's scan: running tasks by lease expiry.
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE state = 'running';
-- One running task per session, enforced by the database as well as by the claimer.
CREATE UNIQUE INDEX tasks_one_running_per_session ON tasks (tenant_id, user_id, session_id) WHERE state = 'running';
-- A session's tasks in order (history, one-running-per-session check, task lists).
CREATE INDEX tasks_by_session ON tasks (tenant_id, user_id, session_id, seq);

CREATE TABLE messages (
    tenant_id    text        NOT NULL DEFAULT 'default',
    user_id      text        NOT NULL,
    session_id   text        NOT NULL,
    task_id      text        NOT NULL,
    -- Position within the task's turn, from 0 (the user's query).
    position     integer     NOT NULL,
    -- LangChain message types: human, ai, tool, system.
    type         text        NOT NULL CHECK (type IN ('human', 'ai', 'tool', 'system')),
    content      text        NOT NULL DEFAULT '',
    -- ai: [{"id", "name", "args"}]; tool: the tool's name and the call it answers.
    tool_calls   jsonb,
    name         text,
    tool_call_id text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, session_id, task_id, position),
    FOREIGN KEY (tenant_id, user_id, session_id, task_id)
        REFERENCES tasks (tenant_id, user_id, session_id, task_id) ON DELETE CASCADE
);

CREATE TABLE memories (
    tenant_id   text        NOT NULL DEFAULT 'default',
    user_id     text        NOT NULL,
    memory_id   uuid        NOT NULL DEFAULT gen_random_uuid(),
    memory_info text        NOT NULL,
    search      tsvector    NOT NULL GENERATED ALWAYS AS (agentd_search_document(memory_info)) STORED,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, memory_id)
);
-- The same text written twice for one user is stored once. Hashed, because a btree entry
-- cannot hold a long text.
CREATE UNIQUE INDEX memories_dedup ON memories (tenant_id, user_id, md5(memory_info));
CREATE INDEX memories_search ON memories USING gin (search);
CREATE INDEX memories_by_recency ON memories (tenant_id, user_id, created_at DESC);
