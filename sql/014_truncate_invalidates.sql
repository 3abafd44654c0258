-- TRUNCATE fires no row trigger: a truncated tasks table (directly, or through TRUNCATE sessions
-- or tenants ... CASCADE) tells every process to forget every settled task it keeps (sql/013).
CREATE FUNCTION agentd_tasks_truncated() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentd_task_invalidated', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER task_invalidated_by_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION agentd_tasks_truncated();
