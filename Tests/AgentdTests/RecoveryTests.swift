import AgentKit
import Foundation
import Postgres
import Testing
import TestSupport

@Suite("leases and recovery")
struct RecoveryTests {
    @Test("a task whose worker died is re-queued when its lease expires and continues from its last committed step")
    func expiredLeaseResumesFromCheckpoint() async throws {
        let service = try await ServiceHarness.start(model: { request in
            guard let last = request.messages.last else { return .text("?") }
            return last.type == .tool ? .text("product: \(last.content)") : .text("unexpected model call")
        }) { $0.lease = .milliseconds(1500) }
        defer { Task { await service.stop() } }
        // What a worker that died after committing the model's tool call left behind.
        let connection = try PostgresConnection.connect(service.databaseURL)
        defer { connection.close() }
        let calls = try PostgresJSON([ToolCall(id: "m1", name: "multiply", args: ["a": 6, "b": 7])])
        try connection.execute("INSERT INTO sessions (user_id, session_id) VALUES ('u1', 's1')")
        try connection.query("""
            INSERT INTO tasks (user_id, session_id, task_id, query, state, attempts, lease_owner, lease_expires_at, started_at)
            VALUES ('u1', 's1', 't1', '6*7', 'running', 1, 'dead-host:1:gone', now() - interval '1 second', now())
            """)
        try connection.query("""
            INSERT INTO messages (user_id, session_id, task_id, position, type, content, tool_calls) VALUES
                ('u1', 's1', 't1', 0, 'human', '6*7', NULL),
                ('u1', 's1', 't1', 1, 'ai', '', \(calls))
            """)
        let done = try await service.settle("u1", "s1", "t1", timeout: .seconds(20))
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages.map { $0["type"] } == ["human", "ai", "tool", "ai"])
        #expect(done.body.resultMessages.last?["content"] == "product: 42")
        // The model was not asked again for the step that was already committed.
        #expect(service.model.requestCount == 1)
        #expect(try service.scalar("SELECT attempts FROM tasks WHERE task_id = 't1'") == 2)
    }

    @Test("a task that keeps losing its worker ends in error after MAX_ATTEMPTS")
    func attemptsAreBounded() async throws {
        let service = try await ServiceHarness.start(configure: { $0.lease = .milliseconds(1500); $0.maxAttempts = 2 })
        defer { Task { await service.stop() } }
        try service.insertOrphan("u1", "s1", "t1", attempts: 2, leaseSeconds: -1)
        let done = try await service.settle("u1", "s1", "t1", timeout: .seconds(20))
        #expect(done["status"] == "error")
        #expect(done["message"]?.stringValue?.contains("2 attempts") == true)
        #expect(service.model.requestCount == 0)
    }

    @Test("a task leased to a live process that no worker of it runs (a claim whose reply was lost) is not kept alive: it expires and runs")
    func unheldLeaseExpires() async throws {
        let service = try await ServiceHarness.start(model: { request in
            .delayed(request.messages.last?.content == "slow" ? .seconds(8) : .zero, .text("answer"))
        }) { $0.lease = .milliseconds(1500) }
        defer { Task { await service.stop() } }
        // A run of its own keeps the process renewing leases; its owner name is the process's.
        _ = try await service.invoke("u1", "s1", "t1", "slow")
        var owner: String?
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while owner == nil, clock.now < deadline {
            owner = try service.rows("SELECT lease_owner FROM tasks WHERE task_id = 't1' AND state = 'running'").first?
                .decode("lease_owner", as: String?.self)
            if owner == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        // What a claim that committed as the database went away leaves: the task leased to this
        // process, which never heard of it.
        try service.insertOrphan("u2", "s2", "t2", attempts: 1, leaseSeconds: 1.5, owner: try #require(owner))
        let done = try await service.settle("u2", "s2", "t2", timeout: .seconds(15))
        #expect(done["status"] == "completed")
        #expect(try service.scalar("SELECT attempts FROM tasks WHERE task_id = 't2'") == 2)
        // Before the other run ended: renewed with the process's leases, it waited for all of
        // them to end (forever, on a busy process).
        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE task_id = 't1' AND state = 'running'") == 1)
        #expect(try await service.settle("u1", "s1", "t1", timeout: .seconds(15))["status"] == "completed")
        #expect(try service.scalar("SELECT attempts FROM tasks WHERE task_id = 't1'") == 1, "the process's own run keeps its lease")
    }

    @Test("a worker's own lease is renewed while a slow model call runs")
    func leaseRenewal() async throws {
        let service = try await ServiceHarness.start(model: { _ in .delayed(.seconds(3), .text("slow answer")) }) { $0.lease = .milliseconds(1500) }
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "take your time")
        let done = try await service.settle("u1", "s1", "t1", timeout: .seconds(20))
        #expect(done["status"] == "completed")
        // Never taken away and re-run, although the call outlasted the lease twice.
        #expect(try service.scalar("SELECT attempts FROM tasks WHERE task_id = 't1'") == 1)
        #expect(service.model.requestCount == 1)
    }
}
