import AgentKit
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// The claim in a burst: thousands queued and running while the planner's statistics still
/// describe the nearly empty queue of a quiet minute (make bench found claims of 192 tasks taking
/// 460 ms behind 2,000 invokes, walking every queued and running task once per candidate).
@Suite("claim plan")
struct ClaimPlanTests {
    /// Rows a plan node and every node under it read and threw away, over all their loops.
    struct Walk {
        var removed = 0.0
    }

    static func walk(_ node: JSONValue, into walk: inout Walk) {
        guard case .object(let fields) = node else { return }
        let loops = fields["Actual Loops"]?.numberValue ?? 1
        for key in ["Rows Removed by Filter", "Rows Removed by Join Filter", "Rows Removed by Index Recheck"] {
            walk.removed += (fields[key]?.numberValue ?? 0) * loops
        }
        if case .array(let children)? = fields["Plans"] {
            for child in children { Self.walk(child, into: &walk) }
        }
    }

    @Test("a claim in a burst reads about the rows it claims, on the statistics of an empty queue")
    func burstClaimIsLinear() async throws {
        let url = try await TestDatabase.migrated()
        let admin = PostgresPool(configuration: .init(conninfo: url, size: 1))
        defer { Task { await admin.shutdown() } }
        // Statistics first, of a queue with a handful of tasks: what a deployment has after a quiet minute.
        try await admin.query("""
            INSERT INTO sessions (tenant_id, user_id, session_id) SELECT 'default', 'quiet', 's' || g FROM generate_series(1, 5) g;
            """)
        try await admin.query("""
            INSERT INTO tasks (tenant_id, user_id, session_id, task_id, query) SELECT 'default', 'quiet', 's' || g, 't', 'q' FROM generate_series(1, 5) g
            """)
        try await admin.query("ANALYZE")
        // Then the burst: 1,500 running, in sessions 1–1,500; 3,000 queued, one in each of
        // sessions 1–3,000; and 1,500 more queued after them, a second in each of sessions 1,501–3,000.
        try await admin.query("""
            INSERT INTO sessions (tenant_id, user_id, session_id) SELECT 'default', 'u' || (g % 50), 's' || g FROM generate_series(1, 3000) g
            """)
        try await admin.query("""
            INSERT INTO tasks (tenant_id, user_id, session_id, task_id, query, state, lease_owner, lease_expires_at)
            SELECT 'default', 'u' || (g % 50), 's' || g, 'running', 'q', 'running', 'elsewhere', now() + interval '1 hour'
            FROM generate_series(1, 1500) g
            """)
        try await admin.query("""
            INSERT INTO tasks (tenant_id, user_id, session_id, task_id, query)
            SELECT 'default', 'u' || ((1 + g % 3000) % 50), 's' || (1 + g % 3000), 'q' || g, 'q' FROM generate_series(1, 3000) g ORDER BY g
            """)
        try await admin.query("""
            INSERT INTO tasks (tenant_id, user_id, session_id, task_id, query)
            SELECT 'default', 'u' || ((1501 + g % 1500) % 50), 's' || (1501 + g % 1500), 'r' || g, 'q' FROM generate_series(1, 1500) g ORDER BY g
            """)

        // As the dispatcher runs it: the service's role, system scope.
        let service = PostgresPool(configuration: .init(conninfo: url, size: 1, connectionSettings: .init(role: "agentd_service")))
        defer { Task { await service.shutdown() } }
        let claim = TaskQueue.claimStatement(owner: "test", leaseSeconds: 30, limit: 200)
        let plan = try await service.withSessionSettings([(name: "agentd.tenant_id", value: ""), (name: "agentd.scope", value: "system")]) {
            connection in
            try connection.query("EXPLAIN (ANALYZE, FORMAT JSON) \(fragment: claim)").rows[0].decode("QUERY PLAN", as: String.self)
        }
        guard case .array(let plans) = try JSONValue.parse(plan), let top = plans.first?.objectValue?["Plan"] else {
            Issue.record("no plan: \(plan)")
            return
        }
        var walked = Walk()
        Self.walk(top, into: &walked)
        // Claimable: the quiet user's 5, then the first queued task of each of sessions 1,501–3,000. The claim takes the
        // oldest 200; it steps over the queued tasks of busy sessions before them (about 1,500),
        // never over every running or queued task once per candidate (the anti-join plans read
        // hundreds of thousands).
        #expect(walked.removed < 5_000, "the claim read and dropped \(Int(walked.removed)) rows: \(plan.prefix(4000))")
        let claimed = try await admin.query("SELECT count(*) AS n FROM tasks WHERE lease_owner = 'test'").rows[0].decode("n", as: Int.self)
        #expect(claimed == 200)
        // None of them in a session with another running or an older queued task.
        let wrong = try await admin.query("""
            SELECT count(*) AS n FROM tasks c
            WHERE c.lease_owner = 'test'
              AND EXISTS (SELECT 1 FROM tasks o WHERE o.tenant_id = c.tenant_id AND o.user_id = c.user_id AND o.session_id = c.session_id
                          AND o.seq <> c.seq AND (o.state = 'running' OR (o.state = 'queued' AND o.seq < c.seq)))
            """).rows[0].decode("n", as: Int.self)
        #expect(wrong == 0)
    }
}
