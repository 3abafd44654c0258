import Postgres
@testable import Store
import Testing
import TestSupport

/// Statements that arrive together share a commit (`GroupCommit`), and each caller still gets
/// its own answer and its own error.
@Suite("group commit")
struct GroupCommitTests {
    /// A group writer busy for a moment: what arrives meanwhile waits and goes out as one group.
    static let slowStatement: PostgresQuery = "SELECT pg_sleep(0.3) AS slept, txid_current() AS txid"

    /// A pool on an empty database with `table` created, and a one-writer group busy with
    /// `slowStatement` for a moment (the task answering it returned), so that what is run next waits.
    static func busyGroup(creating table: String) async throws -> (PostgresPool, GroupCommit, Task<PostgresResult, any Error>) {
        let url = try await TestDatabase.empty()
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 4))
        try await pool.query(PostgresQuery(unsafeSQL: "CREATE TABLE " + table))
        let group = GroupCommit(pool: pool, maxStatements: 64, concurrentGroups: 1)
        let slow = Task { try await group.run(tenantID: "a", order: "", Self.slowStatement) }
        try await Task.sleep(for: .milliseconds(100))
        return (pool, group, slow)
    }

    @Test("statements that arrive while a group is written share the next commit, each with its own result")
    func sharedCommit() async throws {
        let (pool, group, slow) = try await Self.busyGroup(creating: "ledger (id int PRIMARY KEY, tenant text)")
        defer { Task { await pool.shutdown() } }
        let answers = try await withThrowingTaskGroup(of: (Int, String, Int64).self) { tasks in
            for id in 0..<30 {
                let tenant = id % 3 == 0 ? "b" : "a"
                tasks.addTask {
                    let row = try await group.run(
                        tenantID: tenant, order: "session \(id % 4)",
                        "INSERT INTO ledger VALUES (\(id), current_setting('agentd.tenant_id')) RETURNING id, tenant, txid_current() AS txid")
                        .rows[0]
                    // The row's own id: each caller must get its own statement's result.
                    return (try row.decode("id", as: Int.self), try row.decode("tenant", as: String.self), try row.decode("txid", as: Int64.self))
                }
            }
            var answers: [(Int, String, Int64)] = []
            for try await answer in tasks { answers.append(answer) }
            return answers
        }
        _ = try await slow.value
        #expect(answers.map(\.0).sorted() == Array(0..<30))
        // Each statement ran under its own caller's tenant (two tenants in one group), in one commit.
        for (id, tenant, _) in answers { #expect(tenant == (id % 3 == 0 ? "b" : "a"), "statement \(id)") }
        #expect(Set(answers.map(\.2)).count == 1)
        // After the commit the connection is back to its session's tenant.
        let after = try await group.run(tenantID: "a", order: "", "SELECT current_setting('agentd.tenant_id') AS tenant")
        #expect(try after.rows[0].decode("tenant", as: String.self) == "a")
        #expect(try await pool.query("SELECT count(*) AS rows FROM ledger").rows[0].decode("rows", as: Int.self) == 30)
    }

    @Test("a statement that fails in a group fails alone: the others commit once each")
    func failureIsReplayed() async throws {
        let (pool, group, slow) = try await Self.busyGroup(creating: "ledger (id int PRIMARY KEY)")
        defer { Task { await pool.shutdown() } }
        try await pool.query("INSERT INTO ledger VALUES (7)")
        let outcomes = await withTaskGroup(of: (Int, (any Error)?).self) { tasks in
            for id in 0..<12 {
                tasks.addTask {
                    do {
                        _ = try await group.run(tenantID: "a", order: "s", "INSERT INTO ledger VALUES (\(id)) RETURNING id")
                        return (id, nil)
                    } catch {
                        return (id, error)
                    }
                }
            }
            var outcomes: [Int: (any Error)?] = [:]
            for await (id, error) in tasks { outcomes[id] = error }
            return outcomes
        }
        _ = try await slow.value
        for (id, error) in outcomes where id != 7 { #expect(error == nil, "statement \(id)") }
        let failure = try #require(outcomes[7] as? StoreError)
        #expect(failure.underlying.isUniqueViolation)
        let ids = try await pool.query("SELECT id FROM ledger ORDER BY id").rows.map { try $0.decode("id", as: Int.self) }
        #expect(ids == Array(0..<12))
    }

    @Test("a caller cancelled while its statement waits for the next group withdraws it: it never runs")
    func cancelledWaiterIsWithdrawn() async throws {
        let (pool, group, slow) = try await Self.busyGroup(creating: "ledger (id int PRIMARY KEY)")
        defer { Task { await pool.shutdown() } }
        let withdrawn = Task { try await group.run(tenantID: "a", order: "s", "INSERT INTO ledger VALUES (\(1)) RETURNING id") }
        let kept = Task { try await group.run(tenantID: "a", order: "s", "INSERT INTO ledger VALUES (\(2)) RETURNING id") }
        try await Task.sleep(for: .milliseconds(50))
        withdrawn.cancel()
        await #expect(throws: CancellationError.self) { try await withdrawn.value }
        _ = try await kept.value
        _ = try await slow.value
        let ids = try await pool.query("SELECT id FROM ledger ORDER BY id").rows.map { try $0.decode("id", as: Int.self) }
        #expect(ids == [2])
    }
}
