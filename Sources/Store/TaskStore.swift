import AgentKit
import Postgres

/// Tasks as clients see them: submit, resume, read, list, delete.
/// Every change that queues work notifies `Notifier.Channel.newWork` in the same statement, so
/// the notification is delivered exactly when the change commits.
public struct TaskStore: Sendable {
    public enum SubmitOutcome: Sendable, Equatable {
        case queued
        /// The same task was submitted before; nothing changed.
        case duplicate
        /// The submitting key already has its limit of tasks queued or running.
        case limited
    }

    public enum ResumeOutcome: Sendable, Equatable {
        case queued
        case notFound
        /// The task exists but is not waiting for a human.
        case notInterrupted(TaskState)
        /// The resuming key already has its limit of tasks queued or running.
        case limited
    }

    let pool: PostgresPool

    /// Invokes and resumes of one limited key, one at a time in this process (see `limited`).
    private let inFlightTurns = Turns()

    /// Status reads are the hot path (clients poll); concurrent ones share a statement (see `Batched`).
    private let snapshots: Batched<TaskKey, Lookup>

    public init(pool: PostgresPool) {
        self.pool = pool
        // Half the pool at most, so that workers always find connections.
        snapshots = Batched(concurrentReads: max(1, pool.configuration.size / 2)) { keys in try await Self.snapshots(keys, pool: pool) }
    }

    /// Creates the session if new, stores the task with its query as message 0, and queues it,
    /// in one statement. The same ids with the same query and system message are a duplicate;
    /// with another, a `StoreConflict`. A refused submission (duplicate, conflict, limit)
    /// writes nothing: not even the session or its `updated_at`, which decides the active session.
    public func submit(
        _ key: TaskKey, query: String, systemMessage: String?, apiKeyID: String? = nil, maxInFlight: Int? = nil
    ) async throws -> SubmitOutcome {
        try await limited(key, apiKeyID: apiKeyID, maxInFlight: maxInFlight) { connection in
            // The session is touched only when the task goes in (`touched` reads `task`): a
            // concurrent duplicate that loses the task insert leaves it alone.
            let outcome = try connection.query("""
                WITH room AS (\(fragment: Self.room(apiKeyID: apiKeyID, maxInFlight: maxInFlight))), admitted AS (
                    SELECT 1 FROM room
                    WHERE room.ok
                      AND NOT EXISTS (SELECT 1 FROM tasks
                                      WHERE \(fragment: key.matchesTask()))
                ), session AS (
                    INSERT INTO sessions (tenant_id, user_id, session_id)
                    SELECT \(fragment: key.sessionValues) FROM admitted
                    ON CONFLICT (tenant_id, user_id, session_id) DO NOTHING
                    RETURNING 1
                ), task AS (
                    INSERT INTO tasks (\(unsafeSQL: TaskKey.taskColumns), query, system_message, message, queued_at, api_key_id)
                    SELECT \(fragment: key.taskValues), \(query), \(systemMessage), 'queued',
                           clock_timestamp(), \(apiKeyID)
                    FROM admitted
                    ON CONFLICT DO NOTHING
                    RETURNING seq
                ), touched AS (
                    UPDATE sessions SET updated_at = now()
                    WHERE \(fragment: key.matchesSession()) AND EXISTS (SELECT 1 FROM task)
                    RETURNING 1
                ), query_message AS (
                    INSERT INTO messages (\(unsafeSQL: TaskKey.taskColumns), position, type, content)
                    SELECT \(fragment: key.taskValues), 0, 'human', \(query)
                    FROM task
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM query_message) AS inserted,
                       (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM query_message) AS notified,
                       (SELECT count(*) FROM session) + (SELECT count(*) FROM touched) AS written,
                       (SELECT ok FROM room) AS room
                """).first
            if try outcome?.decode("inserted", as: Int.self) == 1 { return .queued }
            if let existing = try connection.query("""
                SELECT query, system_message FROM tasks
                WHERE \(fragment: key.matchesTask())
                """).first {
                // Exact text, as ids are compared (`Identifier`): another normal form is another query.
                let storedSystem = try existing.decode("system_message", as: String?.self)
                let sameSystem =
                    switch (storedSystem, systemMessage) {
                    case (nil, nil): true
                    case (let stored?, let sent?): Identifier.same(stored, sent)
                    default: false
                    }
                guard Identifier.same(try existing.decode("query", as: String.self), query), sameSystem else {
                    throw StoreConflict("task_id \(key.taskID) already exists in this session with a different query")
                }
                return .duplicate
            }
            if try outcome?.decode("room", as: Bool.self) == false { return .limited }
            throw StoreConflict("task \(key.taskID) was deleted while it was being submitted")
        }
    }

    /// Records the human decision on the pending approval and queues the task again, in one
    /// statement. Of two concurrent resumes, exactly one finds the task interrupted. A resume
    /// queues the task under the resuming key, so it counts against that key's in-flight limit.
    public func resume(_ key: TaskKey, decision: HumanDecision, apiKeyID: String? = nil, maxInFlight: Int? = nil) async throws -> ResumeOutcome {
        let args = try decision.args.map { try StoreCoding.json($0) }
        return try await limited(key, apiKeyID: apiKeyID, maxInFlight: maxInFlight) { connection in
            let resumed = try connection.query("""
                WITH room AS (\(fragment: Self.room(apiKeyID: apiKeyID, maxInFlight: maxInFlight))), task AS (
                    UPDATE tasks SET state = 'queued', message = 'queued', queued_at = clock_timestamp(), updated_at = now(),
                                     api_key_id = \(apiKeyID)
                    WHERE \(fragment: key.matchesTask()) AND state = 'interrupted' AND (SELECT ok FROM room)
                    RETURNING interrupt_data ->> 'tool_call_id' AS tool_call_id
                ), decided AS (
                    UPDATE interrupts SET decision = \(decision.kind.rawValue), decision_args = \(args), decided_at = now()
                    FROM task
                    WHERE \(fragment: key.matchesTask("interrupts"))
                      AND interrupts.tool_call_id = task.tool_call_id AND interrupts.decision IS NULL
                    RETURNING 1
                ), touched AS (
                    UPDATE sessions SET updated_at = now()
                    WHERE \(fragment: key.matchesSession()) AND EXISTS (SELECT 1 FROM task)
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM task) AS resumed,
                       (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM task) AS notified,
                       (SELECT count(*) FROM decided) + (SELECT count(*) FROM touched) AS written,
                       (SELECT ok FROM room) AS room
                """).first
            if try resumed?.decode("resumed", as: Int.self) == 1 { return .queued }
            guard let state = try connection.query("""
                SELECT state FROM tasks
                WHERE \(fragment: key.matchesTask())
                """).first?.decode("state", as: String.self)
            else { return .notFound }
            let current = TaskState(rawValue: state) ?? .queued
            if current == .interrupted, try resumed?.decode("room", as: Bool.self) == false { return .limited }
            return .notInterrupted(current)
        }
    }

    /// The CTE `room`: one row, `ok` when the key may queue one more task (always, without a limit).
    static func room(apiKeyID: String?, maxInFlight: Int?) -> PostgresQuery {
        """
        SELECT \(maxInFlight)::int IS NULL
               OR (SELECT count(*) FROM tasks WHERE api_key_id = \(apiKeyID) AND state IN ('queued', 'running')) < \(maxInFlight) AS ok
        """
    }

    /// Advisory lock space of the in-flight limit (the two-key form; the migrator uses the other).
    static let inFlightLockClass: Int32 = 0x6167_6e74  // "agnt"

    /// Runs `body` for the tenant: as is when the key has no in-flight limit; else in a
    /// transaction that first takes the key's advisory lock, in a statement of its own. Under
    /// read committed each statement sees what committed before it began, so two concurrent
    /// submissions that counted in the same statement would both see room for one more; after
    /// the lock, the second counts the first's task. Costs those keys two round trips more.
    /// Within a process the key's requests queue in memory first (`inFlightTurns`), so a burst
    /// on one key holds one pooled connection at a time, not the whole pool waiting on the lock.
    private func limited<T: Sendable>(
        _ key: TaskKey, apiKeyID: String?, maxInFlight: Int?, _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        guard let apiKeyID, maxInFlight != nil else { return try await pool.tenant(key.tenantID, body) }
        return try await inFlightTurns.serially(apiKeyID) {
            try await pool.tenantTransaction(key.tenantID) { connection in
                try connection.query("SELECT pg_advisory_xact_lock(\(Self.inFlightLockClass), hashtext(\(apiKeyID))) AS locked")
                return try body(connection)
            }
        }
    }

    public enum Lookup: Sendable {
        case task(TaskSnapshot)
        /// The session exists and has no task at all.
        case idleSession
        case notFound

        /// A task still queued or running: one that has not paused or ended.
        public var isPending: Bool {
            guard case .task(let task) = self else { return false }
            return task.state == .queued || task.state == .running
        }
    }

    public func snapshot(_ key: TaskKey) async throws -> Lookup {
        try await snapshots.value(for: key)
    }

    /// The tasks of `keys`, one statement per tenant among them. A key with no task is an idle
    /// session if the session exists without any task, else not found.
    static func snapshots(_ keys: [TaskKey], pool: PostgresPool) async throws -> [TaskKey: Lookup] {
        var found: [TaskKey: Lookup] = [:]
        for (tenant, keys) in Dictionary(grouping: keys, by: { Identifier($0.tenantID) }) {
            let tenant = tenant.text
            let rows = try await pool.tenant(tenant) { connection in
                try connection.query("""
                    SELECT k.user_id, k.session_id, k.task_id, t.state, t.message, t.query, t.result, t.interrupt_data,
                           extract(epoch FROM t.updated_at) AS updated,
                           t.task_id IS NULL
                             AND EXISTS (SELECT 1 FROM sessions s
                                         WHERE s.tenant_id = \(tenant) AND s.user_id = k.user_id AND s.session_id = k.session_id)
                             AND NOT EXISTS (SELECT 1 FROM tasks o
                                             WHERE o.tenant_id = \(tenant) AND o.user_id = k.user_id AND o.session_id = k.session_id) AS idle
                    FROM unnest(\(keys.map(\.userID))::text[], \(keys.map(\.sessionID))::text[], \(keys.map(\.taskID))::text[])
                         AS k(user_id, session_id, task_id)
                    LEFT JOIN tasks t
                      ON t.tenant_id = \(tenant) AND t.user_id = k.user_id AND t.session_id = k.session_id AND t.task_id = k.task_id
                    """).rows
            }
            for row in rows {
                let key = TaskKey(
                    tenantID: tenant, userID: try row.decode("user_id"), sessionID: try row.decode("session_id"), taskID: try row.decode("task_id"))
                if let state = try row.decode("state", as: String?.self) {
                    found[key] = .task(
                        TaskSnapshot(
                            state: TaskState(rawValue: state) ?? .error,
                            message: try row.decode("message", as: String?.self),
                            query: try row.decode("query", as: String.self),
                            result: try row.decode("result", as: PostgresJSON?.self).map { try JSONValue(parsing: $0.bytes) },
                            interruptData: try row.decode("interrupt_data", as: PostgresJSON?.self).map { try JSONValue(parsing: $0.bytes) },
                            updatedAt: try row.decode("updated", as: Double.self)))
                } else {
                    found[key] = try row.decode("idle", as: Bool.self) ? .idleSession : .notFound
                }
            }
        }
        return found
    }

    /// The session's task ids in submission order.
    public func taskIDs(tenantID: String, userID: String, sessionID: String) async throws -> [String] {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                SELECT task_id FROM tasks WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND session_id = \(sessionID)
                ORDER BY seq
                """).rows.map { try $0.decode("task_id", as: String.self) }
        }
    }

    /// Deletes one task with its messages; false when there was none.
    public func delete(_ key: TaskKey) async throws -> Bool {
        try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                DELETE FROM tasks
                WHERE \(fragment: key.matchesTask())
                RETURNING 1 AS deleted
                """).count == 1
        }
    }
}
