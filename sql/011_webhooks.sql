-- Webhooks (issue 16): a tenant's endpoints told when a task waits for a human or ends, each
-- delivery a row that any process sends, retried with backoff, every attempt recorded.

CREATE TABLE webhooks (
    tenant_id  text        NOT NULL DEFAULT 'default',
    webhook_id text        NOT NULL,
    url        text        NOT NULL,
    -- The signing secret, sealed under AGENTD_SECRETS_KEY (SecretBox), never stored plain.
    secret     text        NOT NULL,
    events     text[]      NOT NULL CHECK (cardinality(events) > 0 AND events <@ ARRAY['interrupt', 'completed', 'error', 'cancelled']),
    -- Only tasks of this agent; NULL: every task of the tenant.
    agent_id   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, webhook_id)
);

-- One event for one webhook. delivery_id is the idempotency id receivers deduplicate on: a
-- delivery is sent by one process at a time (claimed until next_attempt_at), and sent again
-- only when no 2xx was recorded for it.
CREATE TABLE webhook_deliveries (
    tenant_id       text        NOT NULL,
    delivery_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
    webhook_id      text        NOT NULL,
    event           text        NOT NULL CHECK (event IN ('interrupt', 'completed', 'error', 'cancelled')),
    -- The body's "data": the task and what became of it.
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, delivery_id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, webhook_id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (tenant_id, webhook_id, created_at);

CREATE TABLE webhook_attempts (
    tenant_id    text             NOT NULL,
    delivery_id  uuid             NOT NULL,
    attempt      integer          NOT NULL,
    attempted_at timestamptz      NOT NULL DEFAULT now(),
    -- NULL when no answer came (refused, unreachable, timed out: see error).
    status_code  integer,
    latency_ms   double precision NOT NULL,
    error        text,
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, delivery_id) ON DELETE CASCADE
);

-- Deliveries are written by the statement that changes the task, whichever it is (a step, a
-- cancel, the lease reaper, if_busy=interrupt), in its transaction: an event is delivered if
-- and only if its change committed. The WHEN clause keeps every other update of a task (leases,
-- steps) from calling the function; a tenant without webhooks pays one index probe per event.
CREATE FUNCTION agentd_task_webhooks() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event text := CASE NEW.state WHEN 'interrupted' THEN 'interrupt' ELSE NEW.state END;
    queued integer;
BEGIN
    INSERT INTO webhook_deliveries (tenant_id, webhook_id, event, payload)
    SELECT w.tenant_id, w.webhook_id, event,
           jsonb_build_object(
               'user_id', NEW.user_id, 'session_id', NEW.session_id, 'task_id', NEW.task_id,
               'agent_id', NEW.agent_id, 'agent_version', NEW.agent_version, 'status', NEW.state,
               'message', NEW.message, 'interrupt_data', NEW.interrupt_data)
    FROM webhooks w
    WHERE w.tenant_id = NEW.tenant_id AND event = ANY (w.events) AND (w.agent_id IS NULL OR w.agent_id = NEW.agent_id);
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('agentd_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER task_webhooks AFTER UPDATE OF state ON tasks
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state AND NEW.state IN ('interrupted', 'completed', 'error', 'cancelled'))
    EXECUTE FUNCTION agentd_task_webhooks();

GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks, webhook_deliveries, webhook_attempts TO agentd_service;

SELECT agentd_isolate_tenant_table('webhooks');
SELECT agentd_isolate_tenant_table('webhook_deliveries');
SELECT agentd_isolate_tenant_table('webhook_attempts');
