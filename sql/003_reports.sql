-- Ready-made reports. Plain views over the tables, so they can be filtered and joined like them:
--   SELECT * FROM report_usage_daily WHERE day >= current_date - 7 ORDER BY day, user_id;

-- Model usage per tenant, user and day.
CREATE VIEW report_usage_daily AS
SELECT tenant_id,
       user_id,
       date_trunc('day', created_at)::date        AS day,
       count(*)                                   AS model_calls,
       count(*) FILTER (WHERE outcome = 'error')  AS failed_calls,
       coalesce(sum(prompt_tokens), 0)            AS prompt_tokens,
       coalesce(sum(completion_tokens), 0)        AS completion_tokens,
       round(avg(latency_ms)::numeric, 1)         AS avg_latency_ms
FROM llm_calls
GROUP BY tenant_id, user_id, date_trunc('day', created_at)::date;

-- How humans answered approval requests, per tenant and tool.
CREATE VIEW report_approvals AS
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
       round(avg(extract(epoch FROM decided_at - created_at))::numeric, 1) AS avg_seconds_to_decide
FROM interrupts
GROUP BY tenant_id, tool_name;

-- Task outcomes and latency per tenant and day (finished tasks only).
CREATE VIEW report_task_latency AS
SELECT tenant_id,
       date_trunc('day', created_at)::date AS day,
       state,
       count(*) AS tasks,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)))::numeric, 3) AS p50_seconds,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)))::numeric, 3) AS p95_seconds,
       round(avg(attempts)::numeric, 2) AS avg_attempts
FROM tasks
WHERE finished_at IS NOT NULL
GROUP BY tenant_id, date_trunc('day', created_at)::date, state;
