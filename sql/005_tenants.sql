-- Tenants, API keys, and isolation enforced by the database.

CREATE TABLE tenants (
    tenant_id  text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (tenant_id) VALUES ('default');
INSERT INTO tenants (tenant_id)
SELECT tenant_id FROM sessions UNION SELECT tenant_id FROM memories
ON CONFLICT DO NOTHING;

-- A key is shown once as agentd_<key_id>_<secret>; only the secret's SHA-256 is kept.
CREATE TABLE api_keys (
    key_id              text             PRIMARY KEY,
    tenant_id           text             NOT NULL REFERENCES tenants ON DELETE CASCADE,
    -- Set: the key acts for this user only. Null: for any user of the tenant.
    user_id             text,
    is_admin            boolean          NOT NULL DEFAULT false,
    name                text,
    secret_sha256       text             NOT NULL,
    -- Limits a deployment may set per key; null is unlimited.
    requests_per_second double precision CHECK (requests_per_second > 0),
    max_tasks_in_flight integer          CHECK (max_tasks_in_flight > 0),
    created_at          timestamptz      NOT NULL DEFAULT now(),
    revoked_at          timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

-- The key a task was submitted with, for the in-flight limit.
ALTER TABLE tasks ADD COLUMN api_key_id text;
CREATE INDEX tasks_in_flight_by_key ON tasks (api_key_id) WHERE state IN ('queued', 'running');

-- The service works as this role: neither the tables' owner nor a superuser, so row-level
-- security applies to it. Deployments grant it to the login role the service uses.
-- Roles belong to the whole cluster: another database's migration may create it at the same moment.
DO $$
BEGIN
    CREATE ROLE agentd_service NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO agentd_service;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON sessions, tasks, messages, memories, interrupts, tool_calls, llm_calls, tenants, api_keys
    TO agentd_service;
GRANT SELECT ON schema_migrations TO agentd_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO agentd_service;

-- Every tenant table shows a transaction only the rows of the tenant it set
-- (SET LOCAL agentd.tenant_id), or every row when it declared itself the dispatcher
-- (SET LOCAL agentd.scope = 'system'), which claims and reaps across tenants.
-- FORCE applies the policies to the tables' owner as well.
DO $$
DECLARE
    tenant_table text;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['sessions', 'tasks', 'messages', 'memories', 'interrupts', 'tool_calls', 'llm_calls'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = current_setting(''agentd.tenant_id'', true) OR current_setting(''agentd.scope'', true) = ''system'')
                 WITH CHECK (tenant_id = current_setting(''agentd.tenant_id'', true) OR current_setting(''agentd.scope'', true) = ''system'')',
            tenant_table);
    END LOOP;
END
$$;
