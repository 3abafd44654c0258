import AgentKit
import Foundation
import Logging
import Postgres
@testable import Store
import Synchronization
import Testing
import TestSupport

/// Settled tasks and API keys are read from memory (`SettledTasks`, `KeyCache`); a read must still
/// never be older than a write that finished before it began, whichever process made the write.
@Suite("reads from memory: settled tasks and API keys")
struct SettledCacheTests {
    /// Task `t`'s message changed behind the invalidation trigger's back.
    static let quietEdit = """
        BEGIN;
        ALTER TABLE tasks DISABLE TRIGGER task_invalidated_by_update;
        UPDATE tasks SET message = 'quietly edited' WHERE task_id = 't';
        ALTER TABLE tasks ENABLE TRIGGER task_invalidated_by_update;
        COMMIT
        """

    @Test("a settled task that another process deletes, alone or with its session, is gone from this process's next read")
    func deletesReachEveryProcess() async throws {
        let reader = try await ServiceHarness.start(model: { _ in .text("done") })
        defer { Task { await reader.stop() } }
        let deleter = try await ServiceHarness.start(database: reader.databaseURL)
        defer { Task { await deleter.stop() } }
        for round in 0..<15 {
            let session = "s\(round)"
            for task in ["t1", "t2"] {
                #expect(try await reader.invoke("u", session, task, "q").status == 200)
                #expect(try await reader.settle("u", session, task)["status"] == "completed")
                // The second read is answered from memory.
                #expect(try await reader.status("u", session, task)["status"] == "completed")
            }
            #expect(try await deleter.delete("/agent/task/u/\(session)/t1").status == 200)
            #expect(try await reader.status("u", session, "t1")["status"] == "not_found")
            #expect(try await reader.status("u", session, "t2")["status"] == "completed")
            #expect(try await deleter.delete("/agent/session/u/\(session)").status == 200)
            #expect(try await reader.status("u", session, "t2")["status"] == "not_found")
            // Submitted again under the same ids: a new task, never the deleted one's answer.
            #expect(try await deleter.invoke("u", session, "t2", "asked again").status == 200)
            let again = try await reader.settle("u", session, "t2")
            #expect(again["last_query"] == "asked again")
        }
    }

    @Test("reads are served from memory, and an operator's UPDATE of a settled row reaches them through the trigger")
    func operatorUpdatesReachTheReads() async throws {
        let service = try await ServiceHarness.start(model: { _ in .text("the first answer") })
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u", "s", "t", "q").status == 200)
        #expect(try await service.settle("u", "s", "t")["message"] == .null)
        _ = try await service.status("u", "s", "t")
        // Changed behind the trigger's back: the process keeps answering what it read, which
        // proves the answer comes from memory (a statement would see the change).
        let sqlSession = try PostgresConnection.connect(service.databaseURL)
        defer { sqlSession.close() }
        try sqlSession.execute(Self.quietEdit)
        #expect(try await service.status("u", "s", "t")["message"] == .null)
        // With the trigger, as an operator's SQL runs: the next read sees the change.
        try sqlSession.execute("UPDATE tasks SET message = 'edited by an operator' WHERE task_id = 't'")
        #expect(try await service.status("u", "s", "t")["message"] == "edited by an operator")
        #expect(try await service.status("u", "s", "t")["message"] == "edited by an operator")
        // A delete by SQL, as by the API.
        try sqlSession.execute("DELETE FROM sessions WHERE session_id = 's'")
        #expect(try await service.status("u", "s", "t")["status"] == "not_found")
        // TRUNCATE fires no row trigger: its own statement trigger makes every process forget every task.
        #expect(try await service.invoke("u", "s2", "t", "q").status == 200)
        #expect(try await service.settle("u", "s2", "t")["status"] == "completed")
        #expect(try await service.status("u", "s2", "t")["status"] == "completed")
        try sqlSession.execute("TRUNCATE sessions CASCADE")
        #expect(try await service.status("u", "s2", "t")["status"] == "not_found")
    }

    @Test("keys are checked from memory, and a key created or revoked by another process or by SQL holds on the next request")
    func keyChangesReachTheNextRequest() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        #expect(try await service.get("/agent/sessionids/u").status == 200)  // open: no key yet
        let pool = PostgresPool(configuration: .init(conninfo: service.databaseURL, size: 1, connectionSettings: .init(role: "agentd_service")))
        defer { Task { await pool.shutdown() } }
        let key = try await KeyStore(pool: pool).create(
            tenantID: "default", userID: nil, isAdmin: false, name: nil, requestsPerSecond: nil, maxTasksInFlight: nil)
        #expect(try await service.get("/agent/sessionids/u").status == 401)  // open mode ended with the first key
        let bearer = "Bearer \(key.key)"
        for _ in 0..<3 { #expect(try await service.send(.GET, "/agent/sessionids/u", authorization: bearer).status == 200) }
        // Revoked behind the trigger's back: still accepted, which proves the check came from memory.
        let sqlSession = try PostgresConnection.connect(service.databaseURL)
        defer { sqlSession.close() }
        try sqlSession.execute("""
            BEGIN;
            ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed;
            UPDATE api_keys SET revoked_at = now();
            ALTER TABLE api_keys ENABLE TRIGGER api_keys_changed;
            COMMIT
            """)
        #expect(try await service.send(.GET, "/agent/sessionids/u", authorization: bearer).status == 200)
        // Any statement on the table, as an operator's SQL: the next request reads the keys again.
        try sqlSession.execute("UPDATE api_keys SET name = 'revoked by SQL'")
        #expect(try await service.send(.GET, "/agent/sessionids/u", authorization: bearer).status == 401)
        #expect(try await service.get("/agent/sessionids/u").status == 200)  // no active key: open again
    }

    @Test("on a database without the invalidation triggers, a process keeps nothing in memory")
    func noTriggersNoMemory() async throws {
        let database = try await TestDatabase.migrated()
        let sqlSession = try await offPool { try PostgresConnection.connect(database) }
        defer { sqlSession.close() }
        try await offPool { try sqlSession.execute("DROP TRIGGER api_keys_changed ON api_keys") }
        let service = try await ServiceHarness.start(model: { _ in .text("answer") }, database: database)
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u", "s", "t", "q").status == 200)
        #expect(try await service.settle("u", "s", "t")["message"] == .null)
        _ = try await service.status("u", "s", "t")
        try await offPool { try sqlSession.execute(Self.quietEdit) }
        // Read from the database: the change no trigger announced is seen.
        #expect(try await service.status("u", "s", "t")["message"] == "quietly edited")
    }

    @Test("caughtUp returns only after every notification committed before it was delivered")
    func caughtUpFollowsCommittedNotifications() async throws {
        let database = try await TestDatabase.migrated()
        var logger = Logger(label: "agentd.test")
        logger.logLevel = .warning
        let notifier = try #require(Notifier(conninfo: database, logger: logger))
        let heard = HeardSessions()
        notifier.onInvalidated { if let scope = $0 { heard.add(scope.sessionID) } }
        let listening = Task { try await notifier.run() }
        defer { listening.cancel() }
        // Until the listener is connected, it proves nothing.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        while await !notifier.caughtUp() {
            #expect(clock.now < deadline)
            guard clock.now < deadline else { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        let sender = try await offPool { try PostgresConnection.connect(database) }
        defer { sender.close() }
        for round in 0..<300 {
            try await offPool {
                try sender.notify(Notifier.Channel.invalidated.rawValue, payload: #"["default", "u", "s\#(round)"]"#)
            }
            #expect(await notifier.caughtUp())
            #expect(heard.contains("s\(round)"), "notification \(round) was committed before caughtUp began")
        }
    }

    @Test("the cache holds no more than its capacity, oldest out first, and forgets a session's tasks alone")
    func capacityAndInvalidation() {
        let cache = SettledTasks(capacityBytes: 100 * (SettledTasks.entryOverhead + 100), caughtUp: { true })
        func key(_ session: Int, _ task: Int) -> TaskKey { TaskKey(tenantID: "default", userID: "u", sessionID: "s\(session)", taskID: "t\(task)") }
        let snapshot = TaskSnapshot(
            state: .completed, message: nil, query: "q", result: nil, interruptData: nil, updatedAt: 0, agentID: "default", agentVersion: 0)
        for round in 0..<10 {
            cache.fill((0..<100).map { (key(round, $0), snapshot, 100) }, readAfter: cache.generation)
            #expect(cache.count <= 100)
            #expect(cache.bytes <= cache.capacityBytes)
        }
        #expect(cache.count == 100)
        cache.invalidate(Notifier.Invalidated(tenantID: "default", userID: "u", sessionID: "s9"))
        #expect(cache.count == 0)
        // Invalidated and refilled over and over: what it keeps to order evictions stays bounded too.
        for round in 0..<2000 {
            cache.fill([(key(round, 0), snapshot, 100)], readAfter: cache.generation)
            cache.invalidate(Notifier.Invalidated(tenantID: "default", userID: "u", sessionID: "s\(round)"))
        }
        #expect(cache.count == 0 && cache.bytes == 0)
        #expect(cache.orderLength < 2000)
        // A fill whose read began before an invalidation is dropped: the row it read may be gone.
        let before = cache.generation
        cache.invalidate(nil)
        cache.fill([(key(0, 0), snapshot, 100)], readAfter: before)
        #expect(cache.count == 0)
        // Unsettled tasks are never kept.
        var running = snapshot
        running.state = .running
        cache.fill([(key(1, 1), running, 100)], readAfter: cache.generation)
        #expect(cache.count == 0)
    }
}

private final class HeardSessions: Sendable {
    private let sessions = Mutex<Set<String>>([])
    func add(_ session: String) { _ = sessions.withLock { $0.insert(session) } }
    func contains(_ session: String) -> Bool { sessions.withLock { $0.contains(session) } }
}
