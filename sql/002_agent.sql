-- What the agent did: each human approval asked and answered, each tool call, each model call.
-- These are the tables operators report on (see 003_reports.sql).

-- One row per approval the agent asked for; the decision columns are filled by /agent/resume.
CREATE TABLE interrupts (
    tenant_id      text        NOT NULL DEFAULT 'default',
    user_id        text        NOT NULL,
    session_id     text        NOT NULL,
    task_id        text        NOT NULL,
    tool_call_id   text        NOT NULL,
    tool_name      text        NOT NULL,
    tool_args      jsonb       NOT NULL,
    -- What the client was shown (LangGraph's HumanInterrupt shape).
    interrupt_data jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    decision       text        CHECK (decision IN ('accept', 'edit', 'reject', 'response')),
    -- The args of the decision as the client sent them (edit: new tool args; response: the text).
    decision_args  jsonb,
    decided_at     timestamptz,
    PRIMARY KEY (tenant_id, user_id, session_id, task_id, tool_call_id),
    FOREIGN KEY (tenant_id, user_id, session_id, task_id)
        REFERENCES tasks (tenant_id, user_id, session_id, task_id) ON DELETE CASCADE
);
CREATE INDEX interrupts_by_time ON interrupts (tenant_id, created_at);

-- One row per tool call the agent made or was refused; the primary key makes a second
-- execution of the same call impossible to record.
CREATE TABLE tool_calls (
    tenant_id    text        NOT NULL DEFAULT 'default',
    user_id      text        NOT NULL,
    session_id   text        NOT NULL,
    task_id      text        NOT NULL,
    tool_call_id text        NOT NULL,
    tool_name    text        NOT NULL,
    args         jsonb       NOT NULL,
    output       text        NOT NULL,
    -- ok: ran and returned; failed: ran and raised; rejected / responded: a human answered instead.
    status       text        NOT NULL CHECK (status IN ('ok', 'failed', 'rejected', 'responded')),
    -- The human decision that let it run (accept/edit), or null when no approval was needed.
    decision     text,
    duration_ms  double precision NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, session_id, task_id, tool_call_id),
    FOREIGN KEY (tenant_id, user_id, session_id, task_id)
        REFERENCES tasks (tenant_id, user_id, session_id, task_id) ON DELETE CASCADE
);
CREATE INDEX tool_calls_by_time ON tool_calls (tenant_id, created_at);

-- One row per model call. No foreign key: usage stays reportable after a session is deleted,
-- and it holds no conversation text.
CREATE TABLE llm_calls (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         text        NOT NULL DEFAULT 'default',
    user_id           text        NOT NULL,
    session_id        text        NOT NULL,
    task_id           text        NOT NULL,
    model             text        NOT NULL,
    prompt_tokens     integer,
    completion_tokens integer,
    latency_ms        double precision NOT NULL,
    outcome           text        NOT NULL CHECK (outcome IN ('ok', 'error')),
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_calls_by_time ON llm_calls (tenant_id, created_at);
CREATE INDEX llm_calls_by_task ON llm_calls (tenant_id, user_id, session_id, task_id);
