import Foundation
import Postgres
import Synchronization
import Testing
import TestSupport

@Suite("connection pool")
struct PoolTests {
    let url: String

    init() async throws {
        url = try await TestDatabase.empty()
    }

    @Test("200 concurrent queries through a pool of 4 all succeed, on at most 4 connections")
    func concurrentQueries() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 4, acquireTimeout: .seconds(30)))
        let results = try await withThrowingTaskGroup(of: (Int, Int, Int32).self) { group in
            for i in 0..<200 {
                group.addTask {
                    let row = try await pool.query("SELECT \(i) * 2 AS doubled, pg_backend_pid() AS pid").first
                    return (i, try row?.decode("doubled", as: Int.self) ?? -1, try row?.decode("pid", as: Int32.self) ?? 0)
                }
            }
            var collected: [(Int, Int, Int32)] = []
            for try await result in group { collected.append(result) }
            return collected
        }
        #expect(results.count == 200)
        #expect(results.allSatisfy { $0.0 * 2 == $0.1 })
        #expect(Set(results.map(\.2)).count <= 4)
        #expect(pool.statistics.open <= 4)
        await pool.shutdown()
    }

    @Test("a pooled connection killed with pg_terminate_backend is replaced; the next query succeeds")
    func killedConnectionIsReplaced() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let victim = try #require(try await pool.query("SELECT pg_backend_pid() AS pid").first?.decode("pid", as: Int32.self))
        // Kill it from outside the pool and wait until the backend is really gone.
        let admin = try PostgresConnection.connect(url)
        defer { admin.close() }
        try admin.query("SELECT pg_terminate_backend(\(victim))")
        for _ in 0..<100 {
            let alive = try admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = \(Int(victim))").first?.decode("n", as: Int.self)
            if alive == 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let replacement = try #require(try await pool.query("SELECT pg_backend_pid() AS pid").first?.decode("pid", as: Int32.self))
        #expect(replacement != victim)
        #expect(pool.statistics.open == 1)
        await pool.shutdown()
    }

    @Test("a connection that breaks in use is discarded, not handed out again")
    func brokenInUse() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let error = await #expect(throws: PostgresError.self) {
            // The backend terminates itself mid-statement.
            try await pool.query("SELECT pg_terminate_backend(pg_backend_pid())")
        }
        #expect(error?.isConnectionFailure == true)
        #expect(try await pool.query("SELECT 1 AS one").first?.decode("one", as: Int.self) == 1)
        await pool.shutdown()
    }

    @Test("acquiring waits at most the acquire timeout")
    func acquireTimeout() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1, acquireTimeout: .milliseconds(200)))
        let holder = Task { try await pool.query("SELECT pg_sleep(2)") }
        // Let the holder take the only connection.
        while pool.statistics.open == 0 || pool.statistics.idle == 1 { try await Task.sleep(for: .milliseconds(10)) }
        let error = await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
        #expect(error?.code == .poolTimeout)
        _ = try await holder.value
        #expect(try await pool.query("SELECT 1 AS one").count == 1)
        await pool.shutdown()
    }

    @Test("urgent callers are served first, but never more than four in a row while normal ones wait")
    func urgentFirst() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1, acquireTimeout: .seconds(30)))
        let gate = DispatchSemaphore(value: 0)
        let holder = Task { try await pool.withConnection { _ in gate.wait() } }
        while pool.statistics.open == 0 || pool.statistics.idle == 1 { try await Task.sleep(for: .milliseconds(10)) }
        final class Served: Sendable { let names = Mutex<[String]>([]) }
        let served = Served()
        var callers: [Task<Void, any Error>] = []
        // Queued one at a time, so that their order in the queue is known.
        for (name, priority) in (1...6).map({ ("n\($0)", PostgresPool.Priority.normal) }) + (1...6).map({ ("u\($0)", .urgent) }) {
            let waiting = pool.statistics.waiting
            callers.append(Task { try await pool.withConnection(priority: priority) { _ in served.names.withLock { $0.append(name) } } })
            while pool.statistics.waiting == waiting { try await Task.sleep(for: .milliseconds(5)) }
        }
        gate.signal()
        try await holder.value
        for caller in callers { try await caller.value }
        #expect(served.names.withLock { $0 } == ["u1", "u2", "u3", "u4", "n1", "u5", "u6", "n2", "n3", "n4", "n5", "n6"])
        await pool.shutdown()
    }

    @Test("cancelling the calling task cancels the statement on the server")
    func cancellation() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let clock = ContinuousClock()
        let start = clock.now
        let sleeper = Task { try await pool.query("SELECT pg_sleep(30)") }
        // Cancel only once the statement is running on the server.
        let observer = try PostgresConnection.connect(url)
        defer { observer.close() }
        while try observer.query("SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
            .first?.decode("n", as: Int.self) == 0
        {
            try await Task.sleep(for: .milliseconds(20))
        }
        sleeper.cancel()
        let error = await #expect(throws: PostgresError.self) { try await sleeper.value }
        #expect(error?.sqlState == "57014")
        #expect(clock.now - start < .seconds(20))
        #expect(try await pool.query("SELECT 1 AS one").count == 1)
        await pool.shutdown()
    }

    @Test("a transaction through the pool commits or rolls back as a whole")
    func poolTransaction() async throws {
        struct Boom: Error {}
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 2))
        try await pool.query("CREATE TABLE items (name text)")
        await #expect(throws: Boom.self) {
            try await pool.withTransaction { connection in
                try connection.query("INSERT INTO items VALUES (\("a"))")
                throw Boom()
            }
        }
        try await pool.withTransaction { connection in
            try connection.query("INSERT INTO items VALUES (\("b"))")
            try connection.query("INSERT INTO items VALUES (\("c"))")
        }
        let names = try await pool.query("SELECT name FROM items ORDER BY name").rows.map { try $0.decode("name", as: String.self) }
        #expect(names == ["b", "c"])
        try await pool.healthCheck()
        await pool.shutdown()
    }

    @Test("a task cancelled before it gets a connection never runs its statement")
    func cancelledWhileWaiting() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1, acquireTimeout: .seconds(30)))
        try await pool.query("CREATE TABLE marks (n int)")
        let holder = Task { try await pool.query("SELECT pg_sleep(0.5)") }
        while pool.statistics.idle == 1 { try await Task.sleep(for: .milliseconds(10)) }
        let waiter = Task { try await pool.query("INSERT INTO marks VALUES (1)") }
        while pool.statistics.waiting == 0 { try await Task.sleep(for: .milliseconds(10)) }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        _ = try await holder.value
        #expect(try await pool.query("SELECT count(*) AS n FROM marks").first?.decode("n", as: Int.self) == 0)
        #expect(pool.statistics.waiting == 0)
        await pool.shutdown()
    }

    @Test("an unreachable server fails fast and the pool recovers its slots")
    func unreachable() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", size: 2))
        for _ in 0..<3 {
            let error = await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
            #expect(error?.code == .connectionFailed)
        }
        #expect(pool.statistics.open == 0)
        await pool.shutdown()
        let closed = await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
        #expect(closed?.code == .poolClosed)
    }
}
