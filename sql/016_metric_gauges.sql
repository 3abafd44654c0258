-- Figures of the whole cluster that /metrics shows (tasks queued, approvals waiting), counted by
-- whichever process is scraped first once read_at is older than the scrape interval and shared
-- by every process until then: N processes scraped every 15 s count once per interval, not N
-- times (`MetricGauges`). Not tenant data: one row per figure.
CREATE TABLE metric_gauges (
    name    text        PRIMARY KEY CHECK (name IN ('queue_depth', 'interrupts_pending')),
    value   bigint      NOT NULL DEFAULT 0,
    read_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO metric_gauges (name) VALUES ('queue_depth'), ('interrupts_pending');
GRANT SELECT, UPDATE ON metric_gauges TO agentd_service;
