-- Every agentd process may keep settled tasks (completed, error, cancelled) in memory for status
-- reads (STATUS_CACHE_MB). Such a task changes only when it is deleted (with its session too), or
-- by an operator's UPDATE; either tells every process, in the same transaction, whose tasks to
-- forget. A process answers from memory only after its listening connection has caught up with
-- every notification committed before the read began (Notifier.caughtUp).
CREATE FUNCTION agentd_task_invalidated() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    session text := json_build_array(OLD.tenant_id, OLD.user_id, OLD.session_id)::text;
BEGIN
    -- A payload must stay under 8000 bytes: past that, every process forgets every task.
    -- Identical notifications of one transaction are sent once, so a session's delete sends one.
    PERFORM pg_notify('agentd_task_invalidated', CASE WHEN octet_length(session) < 7900 THEN session ELSE '' END);
    RETURN NULL;
END
$$;

CREATE TRIGGER task_invalidated_by_delete AFTER DELETE ON tasks
    FOR EACH ROW
    WHEN (OLD.state IN ('completed', 'error', 'cancelled'))
    EXECUTE FUNCTION agentd_task_invalidated();

CREATE TRIGGER task_invalidated_by_update AFTER UPDATE ON tasks
    FOR EACH ROW
    WHEN (OLD.state IN ('completed', 'error', 'cancelled'))
    EXECUTE FUNCTION agentd_task_invalidated();

-- API keys are kept in memory too (every request checks one, or in open mode whether any is
-- active): any change to the table, from `agentd keys` or an operator's SQL, tells every process
-- to read them again. A revocation takes effect on the next request, in every process.
CREATE FUNCTION agentd_keys_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentd_keys', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT
    EXECUTE FUNCTION agentd_keys_changed();
