-- Approvals that expire (issue 16): how long an interrupt may wait, what the service decides
-- when it has waited that long, and who decided each one.

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

-- What the expiry service scans each second, and what the inbox pages through: the
-- undecided interrupts only, a small part of the table once approvals are answered.
CREATE INDEX interrupts_expiring ON interrupts (expires_at) WHERE decision IS NULL AND expires_at IS NOT NULL;
CREATE INDEX interrupts_pending ON interrupts (tenant_id, created_at) WHERE decision IS NULL;

-- The approvals report counts what expired (columns may only be added at the end; a view
-- replaced takes the options given, so security_invoker is stated again).
CREATE OR REPLACE VIEW report_approvals WITH (security_invoker = true) AS
SELECT tenant_id,
       tool_name,
       count(*)                                          AS asked,
       count(*) FILTER (WHERE decision IS NULL)          AS pending,
       count(*) FILTER (WHERE decision = 'accept')       AS accepted,
       count(*) FILTER (WHERE decision = 'edit')         AS edited,
       count(*) FILTER (WHERE decision = 'reject')       AS rejected,
       count(*) FILTER (WHERE decision = 'response')     AS responded,
       round(count(*) FILTER (WHERE decision IN ('accept', 'edit'))::numeric
             / nullif(count(*) FILTER (WHERE decision IS NOT NULL), 0), 3) AS approval_rate,
       round(avg(extract(epoch FROM decided_at - created_at))::numeric, 1) AS avg_seconds_to_decide,
       count(*) FILTER (WHERE decided_by = 'timeout')    AS expired
FROM interrupts
GROUP BY tenant_id, tool_name;

GRANT SELECT (decided_by) ON interrupts TO agentd_reporting;
