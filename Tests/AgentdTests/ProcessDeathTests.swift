import AgentKit
import AgentdProcess
import AsyncHTTPClient
import Foundation
import NIOCore
import Postgres
import Testing
import TestSupport

/// Real `agentd serve` processes (the binary `make test` builds), killed for real.
@Suite("process death")
struct ProcessDeathTests {
    /// The binary `make test` built, with this suite's settings: short leases, few slots.
    static func launch(databaseURL: String, modelURL: String, leaseSeconds: Int) async throws -> AgentdProcess {
        try await AgentdProcess(
            executable: TestDatabase.sqlDirectory.deletingLastPathComponent().appendingPathComponent(".build/debug/agentd"),
            environment: [
                "DATABASE_URL": databaseURL, "LLM_BASE_URL": modelURL, "LLM_MODEL": "scripted", "LEASE_SECONDS": "\(leaseSeconds)",
                "WORKER_SLOTS": "8", "DB_POOL_SIZE": "4", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin",
            ])
    }

    /// `make chaos` runs these scenarios with more tasks.
    static let total: Int = {
        guard let text = ProcessInfo.processInfo.environment["CHAOS_TASKS"], let count = Int(text) else { return 300 }
        return max(30, count / 3 * 3)
    }()

    @Test("SIGKILL under load: every accepted task completes exactly once; the survivor takes over within the lease")
    func killOneOfTwo() async throws {
        try await twoProcesses(stopping: SIGKILL)
    }

    @Test("SIGTERM under load: the process exits 0 and hands its tasks back at once; every task completes exactly once")
    func terminateOneOfTwo() async throws {
        try await twoProcesses(stopping: SIGTERM)
    }

    func twoProcesses(stopping signal: Int32) async throws {
        let scenario = signal == SIGKILL ? "SIGKILL" : "SIGTERM"
        let databaseURL = try await TestDatabase.migrated()
        let model = try await ScriptedModelServer.start(handler: ScriptedModelServer.mixedWorkload)
        let a = try await Self.launch(databaseURL: databaseURL, modelURL: model.baseURL, leaseSeconds: 2)
        let b = try await Self.launch(databaseURL: databaseURL, modelURL: model.baseURL, leaseSeconds: 2)
        defer { for process in [a, b] { process.stop() } }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let total = Self.total
        let kinds = ["plain", "multiply", "hotel"]
        func ids(_ i: Int) -> (user: String, session: String, task: String) { ("u\(i % 7)", "s\(i % 40)", "t\(i)") }

        func post(_ port: Int, _ path: String, _ body: JSONValue) async throws -> Int {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body.jsonText))
            let response = try await client.execute(request, timeout: .seconds(10))
            return Int(response.status.code)
        }
        func invoke(_ port: Int, _ i: Int) async throws -> Int {
            let (user, session, task) = ids(i)
            return try await post(port, "/agent/invoke", [
                "user_id": .string(user), "session_id": .string(session), "task_id": .string(task), "query": .string("\(kinds[i % 3]) \(i)"),
            ])
        }
        let connection = try PostgresConnection.connect(databaseURL)
        defer { connection.close() }
        func count(_ sql: PostgresQuery) throws -> Int { try connection.query(sql).first?.decode("n", as: Int.self) ?? -1 }
        // Approves each interrupted task once, through whichever process is alive.
        var approved = Set<String>()
        func approveInterrupted(_ port: Int) async throws {
            for row in try connection.query("SELECT user_id, session_id, task_id FROM tasks WHERE state = 'interrupted'").rows {
                let task = try row.decode("task_id", as: String.self)
                guard approved.insert(task).inserted else { continue }
                let status = try await post(port, "/agent/resume", [
                    "user_id": .string(try row.decode("user_id", as: String.self)), "session_id": .string(try row.decode("session_id", as: String.self)),
                    "task_id": .string(task), "response_type": "accept",
                ])
                #expect(status == 200, "resume of \(task)")
            }
        }
        let runningOnA: PostgresQuery = "SELECT count(*) AS n FROM tasks WHERE state = 'running' AND lease_owner LIKE \("%:\(a.pid):%")"

        // Before: half the tasks through A and half through B.
        for i in 0..<total / 2 { #expect(try await invoke(i % 2 == 0 ? a.port : b.port, i) == 200) }
        try await approveInterrupted(a.port)
        // Stop A while it holds running tasks.
        let clock = ContinuousClock()
        let waitStart = clock.now
        // The count that ends the wait is the one reported: a second query could find the
        // tasks already finished (each model call is 100 ms).
        var orphans = try count(runningOnA)
        // Work of the second half goes in (through A) until A holds some: on a loaded machine the
        // first half can be done, or all in B's hands, by now.
        var next = total / 2
        while orphans == 0, clock.now - waitStart < .seconds(20) {
            if next < total - total / 4 {
                #expect(try await invoke(a.port, next) == 200)
                next += 1
            }
            try await Task.sleep(for: .milliseconds(5))
            orphans = try count(runningOnA)
        }
        let status = a.kill(signal)
        let killedAt = clock.now
        if signal == SIGTERM {
            // Graceful: exit 0, and nothing left running under the dead owner.
            #expect(status == 0)
            #expect(try count(runningOnA) == 0)
        }
        // During and after: B takes all new work while the orphans are taken over, and all approvals.
        let submitting = Task { [next] in
            var accepted = 0
            for i in next..<total where try await invoke(b.port, i) == 200 { accepted += 1 }
            return accepted
        }
        var takeover: Duration?
        while takeover == nil, clock.now - killedAt < .seconds(30) {
            if try count(runningOnA) == 0 { takeover = clock.now - killedAt } else { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(try await submitting.value == total - next)

        var remaining = total
        while remaining > 0, clock.now - killedAt < .seconds(60) {
            try await approveInterrupted(b.port)
            remaining = try count("SELECT count(*) AS n FROM tasks WHERE state <> 'completed'")
            try await Task.sleep(for: .milliseconds(50))
        }
        let drained = clock.now - killedAt
        let completed = try count("SELECT count(*) AS n FROM tasks WHERE state = 'completed'")
        // Exactly once: plain tasks hold query and answer; tool tasks query, call, one tool
        // result, answer. A task with anything more ran a step twice.
        let duplicated = try count("""
            SELECT count(*) AS n FROM (
              SELECT t.task_id FROM tasks t JOIN messages m USING (tenant_id, user_id, session_id, task_id)
              GROUP BY t.task_id, t.query
              HAVING count(*) FILTER (WHERE m.type = 'tool') > CASE WHEN t.query LIKE 'plain%' THEN 0 ELSE 1 END
                  OR count(*) FILTER (WHERE m.type = 'human') > 1
                  OR count(*) > CASE WHEN t.query LIKE 'plain%' THEN 2 ELSE 4 END
            ) AS odd
            """)
        ChaosReport.line(
            scenario: "\(scenario) 1 of 2 processes", accepted: total, completed: completed, lost: total - completed, duplicated: duplicated,
            recovery: takeover, note: "\(orphans) tasks were running on it; all done \(ChaosReport.seconds(drained)) after")
        #expect(orphans > 0, "A was stopped while running tasks")
        #expect(remaining == 0, "tasks not completed")
        #expect(completed == total)
        #expect(duplicated == 0)
        if signal == SIGKILL {
            // Killed mid-step, every orphan is run again. (On SIGTERM an orphan in its last step
            // finishes it, so it may end without a second attempt.)
            #expect(try count("SELECT count(*) AS n FROM tasks WHERE attempts > 1") >= orphans)
        }
        #expect(try count("SELECT count(*) AS n FROM messages") == total / 3 * (2 + 4 + 4))
        // SIGKILL: the lease (2 s) plus the reaper's period and a few seconds. SIGTERM: at once.
        let takeoverBound: Duration = signal == SIGKILL ? .seconds(10) : .seconds(2)
        #expect(try #require(takeover) < takeoverBound)

        // The stopped process, restarted, rejoins and works.
        let restarted = try await Self.launch(databaseURL: databaseURL, modelURL: model.baseURL, leaseSeconds: 2)
        defer { restarted.stop() }
        #expect(try await invoke(restarted.port, total) == 200)
        while try count("SELECT count(*) AS n FROM tasks WHERE task_id = \("t\(total)") AND state = 'completed'") == 0, clock.now - killedAt < .seconds(90) {
            try await Task.sleep(for: .milliseconds(50))
        }
        let last = try connection.query("SELECT state FROM tasks WHERE task_id = \("t\(total)")").first
        #expect(try last?.decode("state", as: String.self) == "completed", "\(restarted.log.suffix(2000))")

        try await client.shutdown()
        await model.shutdown()
    }
}
