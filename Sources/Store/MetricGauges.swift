import AgentKit
import Postgres

/// The cluster's figures that `/metrics` shows (tasks queued, approvals waiting), from
/// `metric_gauges` (sql/016): counted again by the first process that asks once the stored
/// figures are older than `interval`, read as stored by every other process until then. Every
/// process may be scraped every few seconds; the counts run once per interval in all.
public struct MetricGauges: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public struct Figures: Sendable, Equatable {
        public var queueDepth: Int
        public var interruptsPending: Int
    }

    public func read(interval: Duration) async throws -> Figures {
        let rows = try await pool.system { connection in
            // Of two processes that ask at once, the second waits on the first's row locks, then
            // finds the rows fresh and takes the stored figures.
            try connection.query("""
                WITH fresh AS (
                    UPDATE metric_gauges SET read_at = now(), value = CASE name
                        WHEN 'queue_depth' THEN (SELECT count(*) FROM tasks WHERE state = 'queued')
                        ELSE (SELECT count(*) FROM interrupts WHERE decision IS NULL AND withdrawn_at IS NULL) END
                    WHERE read_at < now() - make_interval(secs => \(interval.seconds))
                    RETURNING name, value
                )
                SELECT name, value FROM fresh
                UNION ALL
                SELECT name, value FROM metric_gauges WHERE name NOT IN (SELECT name FROM fresh)
                """).rows
        }
        var figures = Figures(queueDepth: 0, interruptsPending: 0)
        for row in rows {
            let value: Int = try row.decode("value")
            switch try row.decode("name", as: String.self) {
            case "queue_depth": figures.queueDepth = value
            case "interrupts_pending": figures.interruptsPending = value
            default: continue
            }
        }
        return figures
    }
}
