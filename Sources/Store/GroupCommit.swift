import AgentKit
import Postgres
import Synchronization

/// One-statement writes that arrive together, committed together: a group commit.
///
/// A caller hands over one statement and gets that statement's own result or error. While a
/// group is being written, the statements that arrive wait and go out as the next group: BEGIN,
/// the statements and COMMIT sent at once in libpq's pipeline mode (one round trip, one commit,
/// and one pass through PostgreSQL's notify lock for all their NOTIFYs, which otherwise
/// serialises notifying commits). A statement that arrives while no group runs goes out alone, at
/// once, as it would without grouping, so an idle service pays no latency for it.
///
/// The statements of a group run in one transaction under read committed: each sees what
/// committed before it started and what the group's earlier statements wrote, so a statement that
/// depends only on committed state and its own rows (an invoke, a step's commit under its lease)
/// means the same inside a group as alone. Row locks are held until the group commits, so the
/// statements are sorted by tenant and `order` (the session) first: two groups take rows of
/// different sessions in the same order. Statements of several tenants share a group: each
/// tenant's run after a `set_config(…, true)` to it, which row-level security reads and the
/// commit undoes. A group that fails (a deadlock PostgreSQL broke included) is rolled back whole
/// and replayed one statement at a time, so each caller gets exactly the outcome it would have
/// had alone, its own error included.
public final class GroupCommit: Sendable {
    private struct Waiter {
        var id: Int
        var tenantID: String
        var order: String
        var query: PostgresQuery
        var continuation: CheckedContinuation<PostgresResult, any Error>
    }

    private struct State {
        var waiting: [Waiter] = []
        var writing = 0
        var nextID = 0
    }

    private let state = Mutex(State())
    private let pool: PostgresPool
    /// Statements in one group at most, of any tenants (1: every statement alone).
    let maxStatements: Int
    /// Groups written at once: more than one, so that a group waiting for a pooled connection or
    /// for the disk does not hold up every writer.
    let concurrentGroups: Int

    public init(pool: PostgresPool, maxStatements: Int = 64, concurrentGroups: Int = 2) {
        self.pool = pool
        self.maxStatements = max(1, maxStatements)
        self.concurrentGroups = max(1, concurrentGroups)
    }

    /// Runs `query` for the tenant, alone or in a group, committed when it returns.
    /// - Parameter order: where the statement's row locks sort (the session's key): statements
    ///   of one order keep the order they arrived in.
    /// Cancelling the caller withdraws a statement not yet sent (as a pooled statement's caller
    /// cancelled before it ran); one already in a group runs to its end.
    func run(tenantID: String, order: String, _ query: PostgresQuery) async throws -> PostgresResult {
        try Task.checkCancellation()
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let leads = state.withLock { state in
                    state.waiting.append(Waiter(id: id, tenantID: tenantID, order: order, query: query, continuation: continuation))
                    guard state.writing < concurrentGroups else { return false }
                    state.writing += 1
                    return true
                }
                if leads { Task { await self.drain() } }
            }
        } onCancel: {
            let withdrawn = state.withLock { state -> Waiter? in
                guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiting.remove(at: index)
            }
            withdrawn?.continuation.resume(throwing: CancellationError())
        }
    }

    private func drain() async {
        while let group = nextGroup() {
            await write(group)
        }
    }

    /// The waiters, up to `maxStatements`, in arrival order; nil (and one writer fewer) when nobody waits.
    private func nextGroup() -> [Waiter]? {
        state.withLock { state in
            guard !state.waiting.isEmpty else {
                state.writing -= 1
                return nil
            }
            let count = min(maxStatements, state.waiting.count)
            defer { state.waiting.removeFirst(count) }
            return Array(state.waiting.prefix(count))
        }
    }

    /// Makes the statements after it run for `tenantID` until the transaction ends (the pooled
    /// connection's session settings are the first tenant's, and return after the commit).
    private static func switchTenant(_ tenantID: String) -> PostgresQuery {
        "SELECT set_config('agentd.tenant_id', \(tenantID), true) AS tenant, set_config('agentd.scope', '', true) AS scope"
    }

    private func write(_ group: [Waiter]) async {
        guard group.count > 1 else {
            for waiter in group { await writeAlone(waiter) }
            return
        }
        // By tenant, then by session, by their bytes as ids are compared (`Identifier`); a stable
        // sort, so a session's statements keep their arrival order.
        let sorted = group.enumerated().sorted { a, b in
            let (x, y) = (a.element, b.element)
            if !x.tenantID.utf8.elementsEqual(y.tenantID.utf8) { return x.tenantID.utf8.lexicographicallyPrecedes(y.tenantID.utf8) }
            if !x.order.utf8.elementsEqual(y.order.utf8) { return x.order.utf8.lexicographicallyPrecedes(y.order.utf8) }
            return a.offset < b.offset
        }.map(\.element)
        // The statements, each tenant's after a switch to it (the first tenant's needs none);
        // `positions[i]` is where waiter i's statement is.
        let sessionTenant = sorted[0].tenantID
        var queries: [PostgresQuery] = []
        var positions: [Int] = []
        var current = sessionTenant
        for waiter in sorted {
            if !waiter.tenantID.utf8.elementsEqual(current.utf8) {
                queries.append(Self.switchTenant(waiter.tenantID))
                current = waiter.tenantID
            }
            positions.append(queries.count)
            queries.append(waiter.query)
        }
        let statements = queries
        do {
            // Urgent: a group answers many callers, and under a burst of task starts it waited
            // behind all of them for a connection.
            let results = try await pool.tenant(sessionTenant, priority: .urgent) { connection in
                try connection.pipelinedTransaction(statements)
            }
            guard results.count == statements.count else {
                let error = StoreError(PostgresError(code: .clientError, message: "a group commit returned \(results.count) results for \(statements.count) statements"))
                for waiter in sorted { waiter.continuation.resume(throwing: error) }
                return
            }
            for (waiter, position) in zip(sorted, positions) { waiter.continuation.resume(returning: results[position]) }
        } catch is PostgresConnection.PipelineFailure {
            // Nothing of the group took effect: each statement again, alone.
            for waiter in sorted { await writeAlone(waiter) }
        } catch {
            // The connection or the pool failed: whether the group committed is unknown, as for
            // a statement alone that loses its connection.
            for waiter in sorted { waiter.continuation.resume(throwing: error) }
        }
    }

    private func writeAlone(_ waiter: Waiter) async {
        let query = waiter.query
        do {
            let result = try await pool.tenant(waiter.tenantID, priority: .urgent) { connection in try connection.query(query) }
            waiter.continuation.resume(returning: result)
        } catch {
            waiter.continuation.resume(throwing: error)
        }
    }
}
