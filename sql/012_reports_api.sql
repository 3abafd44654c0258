-- The report views through the API (GET /reports/...): the service reads them as itself, and
-- they are security_invoker views, so its row-level security picks the tenant as for its tables.
GRANT SELECT ON report_usage_daily, report_approvals, report_task_latency TO agentd_service;
