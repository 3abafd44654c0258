-- Agents (issue 15): named configurations per tenant, each change a new immutable version, and
-- the version every task runs; MCP tool calls recorded with their server and outcome.

-- The agent as it stands: its latest version, or a tombstone (deleted_at) that keeps the
-- numbering going, so that an agent deleted and created again never reuses a version.
CREATE TABLE agents (
    tenant_id  text        NOT NULL DEFAULT 'default',
    agent_id   text        NOT NULL,
    version    integer     NOT NULL CHECK (version > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, agent_id)
);

-- Every version ever stored, never changed: a task names (agent_id, version), so a queued,
-- running or waiting task runs the configuration it was invoked with, whatever came after.
-- Header values of MCP servers are stored encrypted (AES-GCM, AGENTD_SECRETS_KEY), never plain.
CREATE TABLE agent_versions (
    tenant_id  text        NOT NULL DEFAULT 'default',
    agent_id   text        NOT NULL,
    version    integer     NOT NULL CHECK (version > 0),
    config     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, version),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, agent_id)
);

-- The agent a task runs. Version 0 is the environment's configuration (the agent `default`
-- of a tenant that stored none); tasks stored before this migration ran it.
ALTER TABLE tasks ADD COLUMN agent_id text NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN agent_version integer NOT NULL DEFAULT 0;

-- A tool call of a remote (MCP) server names it; `outcome` says how the call went beyond
-- ok/failed: unreachable, timeout, protocol_error, tool_error, refused (outbound rule),
-- truncated (a result cut to 32 KiB), unknown (started before a crash: never run again).
-- 'started' marks a call about to run, committed before it runs, so that a crash between the
-- call and its result never runs it a second time.
ALTER TABLE tool_calls ADD COLUMN server_label text;
ALTER TABLE tool_calls ADD COLUMN outcome text;
ALTER TABLE tool_calls DROP CONSTRAINT tool_calls_status_check;
ALTER TABLE tool_calls ADD CONSTRAINT tool_calls_status_check
    CHECK (status IN ('ok', 'failed', 'rejected', 'responded', 'started'));

GRANT SELECT, INSERT, UPDATE, DELETE ON agents, agent_versions TO agentd_service;

-- sql/005's isolation of a tenant table, once for this and every later migration: forced
-- row-level security, rows of the transaction's tenant or, in system scope, every row.
CREATE FUNCTION agentd_isolate_tenant_table(tenant_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tenant_table);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tenant_table);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s
             USING (tenant_id = current_setting(''agentd.tenant_id'', true) OR current_setting(''agentd.scope'', true) = ''system'')
             WITH CHECK (tenant_id = current_setting(''agentd.tenant_id'', true) OR current_setting(''agentd.scope'', true) = ''system'')',
        tenant_table);
END
$$;
REVOKE ALL ON FUNCTION agentd_isolate_tenant_table(regclass) FROM PUBLIC;

SELECT agentd_isolate_tenant_table('agents');
SELECT agentd_isolate_tenant_table('agent_versions');
