-- Approvals that expire (issue 16): how long an interrupt may wait, what the service decides
-- when it has waited that long, and who decided each one.
SET LOCAL agentd.scope = 'system';

-- Set when the interrupt is asked, from the agent's version or the environment, so that a
-- restart or a changed setting never moves the deadline of an approval already waiting.
ALTER TABLE interrupts ADD COLUMN expires_at timestamptz;
ALTER TABLE interrupts ADD COLUMN timeout_action text CHECK (timeout_action IN ('accept', 'reject'));
ALTER TABLE interrupts ADD CONSTRAINT interrupts_expiry_check CHECK ((expires_at IS NULL) = (timeout_action IS NULL));
-- 'human' (/agent/resume, its batch) or 'timeout' (the service); decided_by_key is the API key
-- of a human's decision (NULL for an open-mode client).
ALTER TABLE interrupts ADD COLUMN decided_by text CHECK (decided_by IN ('human', 'timeout'));
ALTER TABLE interrupts ADD COLUMN decided_by_key text;
UPDATE interrupts SET decided_by = 'human' WHERE decision IS NOT NULL;

-- Set when the task stops waiting without a decision (it was cancelled), so that an interrupt
-- waits for a human exactly while decision and withdrawn_at are both NULL: the inbox and the
-- expiry read interrupts alone, in index order, without asking each task whether it still waits.
ALTER TABLE interrupts ADD COLUMN withdrawn_at timestamptz;
UPDATE interrupts i SET withdrawn_at = now()
WHERE i.decision IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM tasks t
      WHERE t.tenant_id = i.tenant_id AND t.user_id = i.user_id AND t.session_id = i.session_id AND t.task_id = i.task_id
        AND t.state = 'interrupted' AND t.interrupt_data ->> 'tool_call_id' = i.tool_call_id);

-- Whatever cancels a waiting task (a cancel, a session's cancel, if_busy=interrupt) withdraws
-- its interrupt in the same statement. Resumes and expiry decide it in theirs; a delete takes it.
CREATE FUNCTION agentd_withdraw_interrupt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE interrupts SET withdrawn_at = now()
    WHERE tenant_id = NEW.tenant_id AND user_id = NEW.user_id AND session_id = NEW.session_id AND task_id = NEW.task_id
      AND decision IS NULL AND withdrawn_at IS NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_interrupt_withdrawn AFTER UPDATE OF state ON tasks
    FOR EACH ROW
    WHEN (OLD.state = 'interrupted' AND NEW.state NOT IN ('interrupted', 'queued'))
    EXECUTE FUNCTION agentd_withdraw_interrupt();

-- What the expiry and the inbox page through: the waiting interrupts only, a small part of the
-- table once approvals are answered. By tenant for tenant keys, across tenants for operators.
CREATE INDEX interrupts_expiring ON interrupts (expires_at) WHERE decision IS NULL AND withdrawn_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX interrupts_pending ON interrupts (tenant_id, created_at) WHERE decision IS NULL AND withdrawn_at IS NULL;
CREATE INDEX interrupts_pending_all ON interrupts (created_at) WHERE decision IS NULL AND withdrawn_at IS NULL;

-- The approvals report counts what expired and what was withdrawn, and no longer counts a
-- cancelled task's approval as pending (columns may only be added at the end; a view
-- replaced takes the options given, so security_invoker is stated again).
CREATE OR REPLACE VIEW report_approvals WITH (security_invoker = true) AS
SELECT tenant_id,
       tool_name,
       count(*)                                          AS asked,
       count(*) FILTER (WHERE decision IS NULL AND withdrawn_at IS NULL) AS pending,
       count(*) FILTER (WHERE decision = 'accept')       AS accepted,
       count(*) FILTER (WHERE decision = 'edit')         AS edited,
       count(*) FILTER (WHERE decision = 'reject')       AS rejected,
       count(*) FILTER (WHERE decision = 'response')     AS responded,
       round(count(*) FILTER (WHERE decision IN ('accept', 'edit'))::numeric
             / nullif(count(*) FILTER (WHERE decision IS NOT NULL), 0), 3) AS approval_rate,
       round(avg(extract(epoch FROM decided_at - created_at))::numeric, 1) AS avg_seconds_to_decide,
       count(*) FILTER (WHERE decided_by = 'timeout')    AS expired,
       count(*) FILTER (WHERE withdrawn_at IS NOT NULL)  AS withdrawn
FROM interrupts
GROUP BY tenant_id, tool_name;

GRANT SELECT (decided_by, withdrawn_at) ON interrupts TO agentd_reporting;
