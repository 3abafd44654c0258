-- Holes a red-team pass found (issue 12).

-- 1. Chinese tokenising in linear time. sql/001's loop appended to its result one piece at a
-- time, copying the whole string each time: quadratic in a run of CJK characters (40,000
-- characters took 6.4 s and held a pooled connection all along). The same pieces in the same
-- order, so stored documents and their index stay valid: every run is split into characters
-- once, each character is paired with the next by a window, and string_agg builds the result
-- in one pass. (40,000 characters: 0.05 s; 350,000: 0.45 s.)
CREATE OR REPLACE FUNCTION agentd_search_text(input text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    cjk constant text := '[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+';
BEGIN
    RETURN regexp_replace(input, cjk, ' ', 'g') || coalesce((
        SELECT string_agg(' ' || piece, '' ORDER BY run_no, position)
        FROM (
            -- A one-character run is its own piece; longer runs give overlapping pairs.
            SELECT run_no, position, CASE WHEN run_length = 1 THEN ch ELSE ch || next_ch END AS piece
            FROM (
                SELECT r.run_no, c.position, c.ch,
                       lead(c.ch) OVER (PARTITION BY r.run_no ORDER BY c.position) AS next_ch,
                       count(*) OVER (PARTITION BY r.run_no) AS run_length
                FROM regexp_matches(input, cjk, 'g') WITH ORDINALITY AS r(match, run_no),
                     unnest(string_to_array(r.match[1], NULL)) WITH ORDINALITY AS c(ch, position)
            ) AS chars
            WHERE run_length = 1 OR next_ch IS NOT NULL
        ) AS pieces), '');
END
$$;

-- 2. Key limits that the service can compute with. A rate of 1e-300 overflowed the Retry-After
-- arithmetic and NaN never limited. Out-of-range rows (possible before this migration) get the
-- nearest bound, NaN the lowest: the most careful reading of what was meant.
UPDATE api_keys
SET requests_per_second = CASE WHEN requests_per_second = 'NaN' THEN 0.01
                               ELSE least(greatest(requests_per_second, 0.01), 100000) END
WHERE NOT (requests_per_second BETWEEN 0.01 AND 100000);
UPDATE api_keys SET max_tasks_in_flight = 1000000 WHERE max_tasks_in_flight > 1000000;
ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_rate_range CHECK (requests_per_second BETWEEN 0.01 AND 100000),
    ADD CONSTRAINT api_keys_in_flight_range CHECK (max_tasks_in_flight BETWEEN 1 AND 1000000);
-- The in-flight limit counts a key's tasks queued or running; a resume queues the task under
-- the key that resumed it, so that key's limit is the one that applies.
COMMENT ON COLUMN tasks.api_key_id IS 'The key that last queued the task (invoke or resume), for its in-flight limit';

-- 3. Reports under row-level security. sql/003's views ran with their owner's rights (the
-- migrating superuser), so any role allowed to read them saw every tenant. As security
-- invoker views they see what the reader may see.
ALTER VIEW report_usage_daily SET (security_invoker = true);
ALTER VIEW report_approvals SET (security_invoker = true);
ALTER VIEW report_task_latency SET (security_invoker = true);

-- Reporting roles: members of agentd_reporting see the tenants listed for their login role
-- (current_user) in report_scopes, whatever settings they choose (agentd.tenant_id and
-- agentd.scope are only for the service's own role). Operators:
--   CREATE ROLE acme_reports LOGIN PASSWORD '…' IN ROLE agentd_reporting;
--   INSERT INTO report_scopes (role_name, tenant_id) VALUES ('acme_reports', 'acme');
DO $$
BEGIN
    CREATE ROLE agentd_reporting NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE TABLE report_scopes (
    role_name  name NOT NULL,
    tenant_id  text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    PRIMARY KEY (role_name, tenant_id)
);

-- A reporting role sees its own scopes only, not which tenants the others read.
ALTER TABLE report_scopes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_scopes ON report_scopes FOR SELECT TO agentd_reporting USING (role_name = current_user);

GRANT USAGE ON SCHEMA public TO agentd_reporting;
-- The views, and of their tables the columns they read (a security invoker view needs both);
-- never what users or models wrote: queries, results, messages, memories, tool arguments.
GRANT SELECT ON report_scopes, report_usage_daily, report_approvals, report_task_latency TO agentd_reporting;
GRANT SELECT (tenant_id, user_id, created_at, outcome, prompt_tokens, completion_tokens, latency_ms) ON llm_calls TO agentd_reporting;
GRANT SELECT (tenant_id, tool_name, decision, created_at, decided_at) ON interrupts TO agentd_reporting;
GRANT SELECT (tenant_id, created_at, finished_at, state, attempts) ON tasks TO agentd_reporting;

-- The permissive policy lets a reporting role read its tenants without any setting; the
-- restrictive one keeps sql/005's setting-based policy from widening that.
DO $$
DECLARE
    tenant_table text;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['tasks', 'interrupts', 'llm_calls'] LOOP
        EXECUTE format(
            'CREATE POLICY report_read ON %I FOR SELECT TO agentd_reporting
                 USING (tenant_id IN (SELECT s.tenant_id FROM report_scopes s WHERE s.role_name = current_user))',
            tenant_table);
        EXECUTE format(
            'CREATE POLICY report_fence ON %I AS RESTRICTIVE FOR SELECT TO agentd_reporting
                 USING (tenant_id IN (SELECT s.tenant_id FROM report_scopes s WHERE s.role_name = current_user))',
            tenant_table);
    END LOOP;
END
$$;

-- A correction to sql/005's comments, which cannot be edited (applied migrations are
-- checksummed): the service sets agentd.tenant_id and agentd.scope as session settings of a
-- pooled connection, sent only when they change (Store/TenantScope.swift), not with SET LOCAL
-- per transaction; SET LOCAL remains for the transactions that write more than once.
