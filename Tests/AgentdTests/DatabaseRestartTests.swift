import AgentKit
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// A PostgreSQL cluster of this test's own, so that stopping it disturbs no other test.
final class PrivateCluster: Sendable {
    let directory: URL
    let port: Int
    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    static var script: URL { TestDatabase.sqlDirectory.deletingLastPathComponent().appendingPathComponent("scripts/pg.sh") }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentd-restart-\(UUID().uuidString.prefix(8))")
        let output = try Self.run(["start", directory.path])
        guard let port = Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ServiceHarness.HarnessError(message: "pg.sh start printed \(output)")
        }
        self.port = port
    }

    /// A fast shutdown, as an operator's restart does: sessions are terminated.
    func stop() throws { _ = try Self.run(["stop", directory.path]) }
    func start() throws { _ = try Self.run(["start", directory.path, "\(port)"]) }

    func remove() {
        try? stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs pg.sh through system(3): it waits with waitpid, and the server that pg_ctl leaves
    /// running cannot hold a pipe of ours open (its output goes to a file).
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("pg-\(UUID().uuidString).out")
        defer { try? FileManager.default.removeItem(at: outputURL) }
        let command = ([script.path] + arguments + [">", outputURL.path, "2>&1"]).joined(separator: " ")
        let status = system(command)
        let output = (try? String(contentsOf: outputURL, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw ServiceHarness.HarnessError(message: "pg.sh \(arguments.joined(separator: " ")) failed: \(output)")
        }
        return output
    }
}

@Suite("database restart")
struct DatabaseRestartTests {
    @Test("PostgreSQL restarted under load: quick 503s during the outage, reconnection by itself, every accepted task completes")
    func restartUnderLoad() async throws {
        let cluster = try await offPool { try PrivateCluster() }
        defer { cluster.remove() }
        let pool = PostgresPool(configuration: .init(conninfo: cluster.url, size: 1))
        try await Migrator(directory: TestDatabase.sqlDirectory).migrate(pool)
        await pool.shutdown()

        let service = try await ServiceHarness.start(
            model: { request in .delayed(.milliseconds(150), .text("done: \(request.messages.last?.content ?? "")")) },
            database: cluster.url, configure: { $0.lease = .seconds(3) })
        defer { Task { await service.stop() } }

        var accepted = 60
        if let text = ProcessInfo.processInfo.environment["CHAOS_TASKS"], let count = Int(text) { accepted = count }
        for i in 0..<accepted {
            let reply = try await service.invoke("u\(i % 5)", "s\(i % 12)", "t\(i)", "q\(i)")
            #expect(reply.status == 200)
        }
        // Some tasks are mid-flight when the database goes away.
        let clock = ContinuousClock()
        while try service.scalar("SELECT count(*) FROM tasks WHERE state = 'running'") == 0 {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await offPool { try cluster.stop() }

        // During the outage: every request is answered 503 with a detail, quickly.
        var outageAnswers: [Int: Int] = [:]
        var slowest = Duration.zero
        let outageStart = clock.now
        var i = 0
        while clock.now - outageStart < .seconds(3) {
            let started = clock.now
            let reply = i % 2 == 0
                ? try await service.invoke("u9", "outage", "o\(i)", "during the outage")
                : try await service.status("u1", "s1", "t1")
            slowest = max(slowest, clock.now - started)
            outageAnswers[reply.status, default: 0] += 1
            #expect(reply.status == 503, "\(reply.body)")
            #expect(reply.body["detail"]?.stringValue?.isEmpty == false)
            i += 1
        }
        #expect(slowest < .seconds(6))

        try await offPool { try cluster.start() }
        let restarted = clock.now
        // Every task accepted before the restart completes, exactly once.
        var remaining = accepted
        while remaining > 0, clock.now - restarted < .seconds(60) {
            try await Task.sleep(for: .milliseconds(100))
            remaining = (try? service.scalar("SELECT count(*) FROM tasks WHERE state <> 'completed'")) ?? remaining
        }
        let recovered = clock.now - restarted
        #expect(remaining == 0)
        #expect(try service.scalar("SELECT count(*) FROM tasks") == accepted, "no refused invoke left a task behind")
        #expect(try service.scalar("SELECT count(*) FROM messages") == accepted * 2)
        // The listener is back by itself: a new task is dispatched, and its LISTEN session exists.
        let after = try await service.invoke("u1", "s-after", "t-after", "after the restart")
        #expect(after.status == 200)
        #expect(try await service.settle("u1", "s-after", "t-after")["status"] == "completed")
        // Its reconnect backs off up to 5 s.
        let listening: PostgresQuery = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'agentd-listener'"
        while try service.scalar(listening) == 0, clock.now - restarted < .seconds(20) {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try service.scalar(listening) == 1)
        let completed = try service.scalar("SELECT count(*) FROM tasks WHERE state = 'completed' AND session_id <> 's-after'")
        let duplicated = try service.scalar("""
            SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY tenant_id, user_id, session_id, task_id HAVING count(*) > 2) AS extra
            """)
        var answers: [String] = []
        for (status, count) in outageAnswers.sorted(by: { $0.key < $1.key }) { answers.append("\(count)×\(status)") }
        ChaosReport.line(
            scenario: "PostgreSQL restart (fast)", accepted: accepted, completed: completed, lost: accepted - completed, duplicated: duplicated,
            recovery: recovered, note: "outage answers \(answers.joined(separator: " ")), slowest \(ChaosReport.seconds(slowest))")
        #expect(duplicated == 0)
    }
}
