import AgentKit
import Foundation
import Postgres

/// A task a worker has claimed.
public struct ClaimedTask: Sendable {
    public var key: TaskKey
    public var seq: Int64
    public var query: String
    public var systemMessage: String?
    public var attempt: Int
    /// Seconds from entering the queue to being claimed.
    public var dispatchLatency: Double
}

/// A claim that its worker let go of without settling the task; see `releaseAbandoned`.
public struct AbandonedLease: Sendable, Hashable, Codable {
    public var tenantID: String
    public var userID: String
    public var sessionID: String
    public var taskID: String
    public var attempt: Int

    public init(_ task: ClaimedTask) {
        tenantID = task.key.tenantID
        userID = task.key.userID
        sessionID = task.key.sessionID
        taskID = task.key.taskID
        attempt = task.attempt
    }

    /// Exact, as every id is compared (see `Identifier`): a look-alike task's lease is another lease.
    public static func == (a: AbandonedLease, b: AbandonedLease) -> Bool {
        a.attempt == b.attempt && Identifier.same(a.tenantID, b.tenantID) && Identifier.same(a.userID, b.userID)
            && Identifier.same(a.sessionID, b.sessionID) && Identifier.same(a.taskID, b.taskID)
    }

    public func hash(into hasher: inout Hasher) {
        for id in [tenantID, userID, sessionID, taskID] { Identifier.hash(id, into: &hasher) }
        hasher.combine(attempt)
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id", userID = "user_id", sessionID = "session_id", taskID = "task_id", attempt
    }
}

/// The worker's lease on a task is gone (expired and taken over, or the task was deleted):
/// it must stop without writing anything more.
public struct LeaseLost: Error, Sendable {
    public var key: TaskKey
}

/// The dispatcher's and workers' SQL: claiming, leases, step commits, reaping.
/// Every step commit checks the worker still holds the lease in the same statement, so a
/// worker that lost its task can never write into it.
public struct WorkStore: Sendable {
    let pool: PostgresPool
    /// Who this process is, in `tasks.lease_owner`.
    public let owner: String
    public let leaseSeconds: Double

    public init(pool: PostgresPool, owner: String, leaseSeconds: Double) {
        self.pool = pool
        self.owner = owner
        self.leaseSeconds = leaseSeconds
    }

    // Lifecycle timestamps use clock_timestamp(), read while the statement runs (after its
    // snapshot), not now(), the transaction's start: so a task's start is always later than
    // the finish of the task before it, and dispatch latency is measured where it happens.

    /// Claims up to `limit` queued tasks, oldest first, skipping sessions that have a running
    /// task or an older queued one, and rows another claimer holds.
    public func claim(limit: Int) async throws -> [ClaimedTask] {
        guard limit > 0 else { return [] }
        let owner = self.owner
        let lease = leaseSeconds
        do {
            return try await pool.system { connection in
                try connection.query("""
                    WITH candidate AS (
                        SELECT t.tenant_id, t.user_id, t.session_id, t.task_id
                        FROM tasks t
                        WHERE t.state = 'queued'
                          -- Two probes, each on a partial index (tasks_one_running_per_session,
                          -- tasks_queued_by_session): one NOT EXISTS with an OR walked the whole session.
                          AND NOT EXISTS (
                              SELECT 1 FROM tasks o
                              WHERE o.tenant_id = t.tenant_id AND o.user_id = t.user_id AND o.session_id = t.session_id
                                AND o.state = 'running')
                          AND NOT EXISTS (
                              SELECT 1 FROM tasks o
                              WHERE o.tenant_id = t.tenant_id AND o.user_id = t.user_id AND o.session_id = t.session_id
                                AND o.state = 'queued' AND o.seq < t.seq)
                        ORDER BY t.seq
                        LIMIT \(limit)
                        FOR UPDATE SKIP LOCKED
                    )
                    UPDATE tasks SET state = 'running', message = NULL, lease_owner = \(owner),
                        lease_expires_at = now() + make_interval(secs => \(lease)), attempts = tasks.attempts + 1,
                        claimed_at = clock_timestamp(), started_at = coalesce(tasks.started_at, clock_timestamp()), updated_at = now()
                    FROM candidate
                    WHERE tasks.tenant_id = candidate.tenant_id AND tasks.user_id = candidate.user_id
                      AND tasks.session_id = candidate.session_id AND tasks.task_id = candidate.task_id
                    RETURNING tasks.tenant_id, tasks.user_id, tasks.session_id, tasks.task_id, tasks.seq, tasks.query,
                              tasks.system_message, tasks.attempts,
                              extract(epoch FROM tasks.claimed_at - tasks.queued_at) AS dispatch_latency
                    """).rows.map { row in
                    ClaimedTask(
                        key: TaskKey(
                            tenantID: try row.decode("tenant_id"), userID: try row.decode("user_id"),
                            sessionID: try row.decode("session_id"), taskID: try row.decode("task_id")),
                        seq: try row.decode("seq"), query: try row.decode("query"),
                        systemMessage: try row.decode("system_message", as: String?.self), attempt: try row.decode("attempts"),
                        dispatchLatency: try row.decode("dispatch_latency"))
                }.sorted { $0.seq < $1.seq }
            }
        } catch let error as PostgresError where error.isUniqueViolation {
            // Two claimers raced for one session; the index kept the rule, the next claim proceeds.
            return []
        }
    }

    /// Loads the task's turn, the session's history window and the human decisions.
    public func context(for task: ClaimedTask, historyLimit: Int) async throws -> RunContext {
        let key = task.key
        let limit = max(0, historyLimit)
        // One statement, one round trip: part 0 is the turn, part 1 the history (newest first),
        // part 2 the decisions. Every task has at least its query message, so the last `limit`
        // completed tasks hold the window: the scan stays bounded however long the session is.
        let rows = try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                SELECT * FROM (
                    SELECT 0 AS part, position::bigint AS k1, 0::bigint AS k2, type, content, tool_calls, name, tool_call_id,
                           NULL::text AS decision, NULL::jsonb AS decision_args
                    FROM messages
                    WHERE tenant_id = \(key.tenantID) AND user_id = \(key.userID) AND session_id = \(key.sessionID) AND task_id = \(key.taskID)
                    UNION ALL
                    (SELECT 1, -t.seq, -m.position::bigint, m.type, m.content, m.tool_calls, m.name, m.tool_call_id, NULL, NULL
                     FROM (SELECT tenant_id, user_id, session_id, task_id, seq FROM tasks
                           WHERE tenant_id = \(key.tenantID) AND user_id = \(key.userID) AND session_id = \(key.sessionID)
                             AND seq < \(task.seq) AND state = 'completed'
                           ORDER BY seq DESC
                           LIMIT \(limit)) t
                     JOIN messages m USING (tenant_id, user_id, session_id, task_id)
                     ORDER BY t.seq DESC, m.position DESC
                     LIMIT \(limit))
                    UNION ALL
                    SELECT 2, 0, 0, NULL, NULL, NULL, NULL, tool_call_id, decision, decision_args
                    FROM interrupts
                    WHERE tenant_id = \(key.tenantID) AND user_id = \(key.userID) AND session_id = \(key.sessionID)
                      AND task_id = \(key.taskID) AND decision IS NOT NULL
                ) AS context
                ORDER BY part, k1, k2
                """).rows
        }
        var turn: [ChatMessage] = []
        var recent: [ChatMessage] = []
        var decisions: [String: HumanDecision] = [:]
        for row in rows {
            switch try row.decode("part", as: Int.self) {
            case 0: turn.append(try StoreCoding.message(from: row))
            case 1: recent.append(try StoreCoding.message(from: row))
            default:
                guard let kind = HumanDecision.Kind(rawValue: try row.decode("decision", as: String.self)) else { continue }
                let args = try row.decode("decision_args", as: PostgresJSON?.self).map { try JSONValue(parsing: $0.bytes) }
                decisions[try row.decode("tool_call_id", as: String.self)] = HumanDecision(kind: kind, args: args)
            }
        }
        return RunContext(turn: turn, history: recent.reversed(), decisions: decisions)
    }

    /// Commits the model's reply as the turn's next message, with its `llm_calls` row.
    public func appendModelReply(_ task: ClaimedTask, position: Int, message: ChatMessage, call: ModelCallRecord) async throws {
        let key = task.key
        let writes = try modelReplyWrites(key, position: position, message: message, call: call)
        let lease = renewLease(key)
        let written = try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                WITH lease AS (\(fragment: lease)), \(fragment: writes)
                SELECT (SELECT count(*) FROM message) AS written, (SELECT count(*) FROM usage) AS recorded
                """).first?.decode("written", as: Int.self)
        }
        guard written == 1 else { throw LeaseLost(key: key) }
    }

    /// The model's final answer and the task's completion in one statement (one commit instead of
    /// two): the reply's message and `llm_calls` row, and the task `completed` with `result`.
    public func completeWithModelReply(
        _ task: ClaimedTask, position: Int, message: ChatMessage, call: ModelCallRecord, result: JSONValue
    ) async throws {
        let key = task.key
        let writes = try modelReplyWrites(key, position: position, message: message, call: call)
        let end = try endTask(key, state: .completed, result: result, message: nil)
        let written = try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                WITH task AS (\(fragment: end)), lease AS (SELECT 1 FROM task), \(fragment: writes)
                SELECT (SELECT count(*) FROM message) AS written, \(fragment: wakeSessionQueue(key)) AS woke,
                       \(fragment: settledNotice(key)) AS settled
                """).first?.decode("written", as: Int.self)
        }
        guard written == 1 else { throw LeaseLost(key: key) }
    }

    /// CTEs `message` and `usage` of a model reply: the message is written only if CTE `lease`
    /// has a row; the model call is recorded either way.
    private func modelReplyWrites(_ key: TaskKey, position: Int, message: ChatMessage, call: ModelCallRecord) throws -> PostgresQuery {
        let toolCalls = try StoreCoding.json(message.toolCalls)
        return """
            message AS (
                INSERT INTO messages (tenant_id, user_id, session_id, task_id, position, type, content, tool_calls)
                SELECT \(key.tenantID), \(key.userID), \(key.sessionID), \(key.taskID), \(position), 'ai', \(message.content), \(toolCalls)
                FROM lease
                RETURNING 1
            ), usage AS (
                \(unsafeSQL: Self.insertModelCall)
                VALUES (\(key.tenantID), \(key.userID), \(key.sessionID), \(key.taskID), \(call.model),
                        \(call.usage?.promptTokens), \(call.usage?.completionTokens), \(call.latencyMilliseconds), 'ok', NULL)
                RETURNING 1
            )
            """
    }

    /// Records a model call that failed (the task's end is committed separately).
    public func recordFailedModelCall(_ task: ClaimedTask, call: ModelCallRecord) async throws {
        let key = task.key
        try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                \(unsafeSQL: Self.insertModelCall)
                VALUES (\(key.tenantID), \(key.userID), \(key.sessionID), \(key.taskID), \(call.model),
                        \(call.usage?.promptTokens), \(call.usage?.completionTokens), \(call.latencyMilliseconds), 'error', \(call.error))
                """)
        }
    }

    private static let insertModelCall = """
        INSERT INTO llm_calls (tenant_id, user_id, session_id, task_id, model, prompt_tokens, completion_tokens, latency_ms, outcome, error)
        """

    /// Commits a tool's result message with its `tool_calls` row. The row's key makes a second
    /// result for the same call impossible: a duplicate run is reported as `LeaseLost`.
    public func appendToolResult(_ task: ClaimedTask, position: Int, record: ToolCallRecord) async throws {
        let key = task.key
        let args = try StoreCoding.json(record.arguments)
        let lease = renewLease(key)
        let written = try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                WITH lease AS (\(fragment: lease)), call AS (
                    INSERT INTO tool_calls (tenant_id, user_id, session_id, task_id, tool_call_id, tool_name, args, output, status,
                                            decision, duration_ms)
                    SELECT \(key.tenantID), \(key.userID), \(key.sessionID), \(key.taskID), \(record.call.id), \(record.call.name),
                           \(args), \(record.output), \(record.status.rawValue), \(record.decision?.rawValue), \(record.durationMilliseconds)
                    FROM lease
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                ), message AS (
                    INSERT INTO messages (tenant_id, user_id, session_id, task_id, position, type, content, name, tool_call_id)
                    SELECT \(key.tenantID), \(key.userID), \(key.sessionID), \(key.taskID), \(position), 'tool', \(record.output),
                           \(record.call.name), \(record.call.id)
                    FROM call
                    RETURNING 1
                )
                SELECT count(*) AS written FROM message
                """).first?.decode("written", as: Int.self)
        }
        guard written == 1 else { throw LeaseLost(key: key) }
    }

    /// Stops the task to wait for a human about `call`; the session is free meanwhile.
    public func interrupt(_ task: ClaimedTask, call: ToolCall, data: JSONValue) async throws {
        let key = task.key
        let payload = try StoreCoding.json(data)
        let args = try StoreCoding.json(call.args)
        let owner = self.owner
        let written = try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                WITH task AS (
                    UPDATE tasks SET state = 'interrupted', interrupt_data = \(payload), result = NULL, message = NULL,
                        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                    WHERE tenant_id = \(key.tenantID) AND user_id = \(key.userID) AND session_id = \(key.sessionID)
                      AND task_id = \(key.taskID) AND state = 'running' AND lease_owner = \(owner)
                    RETURNING 1
                ), asked AS (
                    INSERT INTO interrupts (tenant_id, user_id, session_id, task_id, tool_call_id, tool_name, tool_args, interrupt_data)
                    SELECT \(key.tenantID), \(key.userID), \(key.sessionID), \(key.taskID), \(call.id), \(call.name), \(args), \(payload)
                    FROM task
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM task) AS written, (SELECT count(*) FROM asked) AS asked,
                       \(fragment: wakeSessionQueue(key)) AS woke, \(fragment: settledNotice(key)) AS settled
                """).first?.decode("written", as: Int.self)
        }
        guard written == 1 else { throw LeaseLost(key: key) }
    }

    /// Ends the task: `completed` with its result, or `error` with a message.
    public func finish(_ task: ClaimedTask, state: TaskState, result: JSONValue?, message: String?) async throws {
        let key = task.key
        let end = try endTask(key, state: state, result: result, message: message)
        let written = try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                WITH task AS (\(fragment: end))
                SELECT (SELECT count(*) FROM task) AS written, \(fragment: settledNotice(key)) AS settled,
                       \(fragment: wakeSessionQueue(key)) AS woke
                """).first?.decode("written", as: Int.self)
        }
        guard written == 1 else { throw LeaseLost(key: key) }
    }

    /// A CTE body that ends the task if this worker still holds its lease, returning one row, or none.
    private func endTask(_ key: TaskKey, state: TaskState, result: JSONValue?, message: String?) throws -> PostgresQuery {
        let payload = try result.map { try StoreCoding.json($0) }
        return """
            UPDATE tasks SET state = \(state.rawValue), result = \(payload), message = \(message), interrupt_data = NULL,
                lease_owner = NULL, lease_expires_at = NULL, finished_at = clock_timestamp(), updated_at = now()
            WHERE tenant_id = \(key.tenantID) AND user_id = \(key.userID) AND session_id = \(key.sessionID)
              AND task_id = \(key.taskID) AND state = 'running' AND lease_owner = \(owner)
            RETURNING 1
            """
    }

    /// A CTE body that extends this worker's lease on the task and returns one row, or none
    /// when the lease is gone; the step's writes select FROM it.
    private func renewLease(_ key: TaskKey) -> PostgresQuery {
        """
        UPDATE tasks SET lease_expires_at = now() + make_interval(secs => \(leaseSeconds)), updated_at = now()
        WHERE tenant_id = \(key.tenantID) AND user_id = \(key.userID) AND session_id = \(key.sessionID)
          AND task_id = \(key.taskID) AND state = 'running' AND lease_owner = \(owner)
        RETURNING 1
        """
    }

    /// A select-list item for statements that end or pause a task (CTE `task`): the session
    /// is free now, so wake the dispatchers if it has queued work.
    private func wakeSessionQueue(_ key: TaskKey) -> PostgresQuery {
        """
        (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM (
             SELECT 1 FROM tasks q
             WHERE q.tenant_id = \(key.tenantID) AND q.user_id = \(key.userID) AND q.session_id = \(key.sessionID)
               AND q.state = 'queued' AND EXISTS (SELECT 1 FROM task) LIMIT 1) AS pending)
        """
    }

    /// A select-list item for statements that end or pause a task (CTE `task`): wakes the
    /// requests waiting on it (`Notifier.Channel.settled`), in whichever process they are.
    private func settledNotice(_ key: TaskKey) -> PostgresQuery {
        """
        (SELECT count(\(fragment: Notifier.notifySettled(tenant: "\(key.tenantID)::text", user: "\(key.userID)::text",
                                                        session: "\(key.sessionID)::text", task: "\(key.taskID)::text")))
         FROM task)
        """
    }

    /// Extends the leases of every task this process runs, except the ones its workers
    /// abandoned: those must be released, not kept alive.
    public func renewLeases(excluding abandoned: [AbandonedLease] = []) async throws -> Int {
        let query: PostgresQuery = """
            UPDATE tasks SET lease_expires_at = now() + make_interval(secs => \(leaseSeconds))
            WHERE lease_owner = \(owner) AND state = 'running'
              AND NOT EXISTS (SELECT 1 FROM \(fragment: try Self.abandonedRows(abandoned))
                              WHERE \(unsafeSQL: Self.abandonedMatchesTask))
            """
        return try await pool.system { try $0.query(query) }.affectedRows
    }

    /// Puts every task this process still runs back in the queue (at shutdown), and wakes the
    /// other dispatchers. Each continues from its last committed step.
    @discardableResult
    public func releaseOwnLeases() async throws -> Int {
        try await requeueOwn(matching: "TRUE")
    }

    /// Puts back in the queue the tasks this process's workers gave up on without settling
    /// them (the database went away mid-step). The attempt number keeps a task that has
    /// since been claimed again safe from a stale release.
    @discardableResult
    public func releaseAbandoned(_ abandoned: [AbandonedLease]) async throws -> Int {
        guard !abandoned.isEmpty else { return 0 }
        return try await requeueOwn(matching: """
            EXISTS (SELECT 1 FROM \(fragment: try Self.abandonedRows(abandoned)) WHERE \(unsafeSQL: Self.abandonedMatchesTask))
            """)
    }

    private func requeueOwn(matching filter: PostgresQuery) async throws -> Int {
        let query: PostgresQuery = """
            WITH released AS (
                UPDATE tasks SET state = 'queued', message = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    queued_at = clock_timestamp(), updated_at = now()
                WHERE lease_owner = \(owner) AND state = 'running' AND (\(fragment: filter))
                RETURNING 1
            )
            SELECT count(*) AS released,
                   (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM (SELECT 1 FROM released LIMIT 1) AS any_released) AS notified
            FROM released
            """
        return try await pool.system { try $0.query(query) }.first?.decode("released", as: Int.self) ?? 0
    }

    private static func abandonedRows(_ abandoned: [AbandonedLease]) throws -> PostgresQuery {
        let rows = try PostgresJSON(abandoned)
        return """
            jsonb_to_recordset(\(rows)) AS abandoned(tenant_id text, user_id text, session_id text, task_id text, attempt integer)
            """
    }

    private static let abandonedMatchesTask = """
        abandoned.tenant_id = tasks.tenant_id AND abandoned.user_id = tasks.user_id
        AND abandoned.session_id = tasks.session_id AND abandoned.task_id = tasks.task_id AND abandoned.attempt = tasks.attempts
        """

    /// Puts tasks whose lease expired back in the queue, or ends them in `error` once they
    /// have used `maxAttempts`. Returns how many were re-queued and how many failed.
    public func reapExpiredLeases(maxAttempts: Int) async throws -> (requeued: Int, failed: Int) {
        let query: PostgresQuery = """
            WITH expired AS (
                SELECT tenant_id, user_id, session_id, task_id FROM tasks
                WHERE state = 'running' AND lease_expires_at < now()
                FOR UPDATE SKIP LOCKED
            ), reaped AS (
                UPDATE tasks SET
                    state = CASE WHEN tasks.attempts >= \(maxAttempts) THEN 'error' ELSE 'queued' END,
                    message = CASE WHEN tasks.attempts >= \(maxAttempts)
                                   THEN 'gave up after ' || tasks.attempts || ' attempts: the worker running the task stopped responding'
                                   ELSE 'queued' END,
                    finished_at = CASE WHEN tasks.attempts >= \(maxAttempts) THEN now() END,
                    lease_owner = NULL, lease_expires_at = NULL, queued_at = now(), updated_at = now()
                FROM expired
                WHERE tasks.tenant_id = expired.tenant_id AND tasks.user_id = expired.user_id
                  AND tasks.session_id = expired.session_id AND tasks.task_id = expired.task_id
                RETURNING tasks.state, tasks.tenant_id, tasks.user_id, tasks.session_id, tasks.task_id
            )
            SELECT count(*) FILTER (WHERE state = 'queued') AS requeued, count(*) FILTER (WHERE state = 'error') AS failed,
                   (SELECT count(\(fragment: Notifier.notifyNewWork))
                    FROM (SELECT 1 FROM reaped WHERE state = 'queued' LIMIT 1) AS any_requeued) AS notified,
                   -- A task ended here is settled like any other: its waiting status reads answer now.
                   (SELECT count(\(fragment: Notifier.notifySettled(tenant: "tenant_id", user: "user_id", session: "session_id", task: "task_id")))
                    FROM reaped WHERE state = 'error') AS settled
            FROM reaped
            """
        let rows = try await pool.system { try $0.query(query) }.rows
        guard let row = rows.first else { return (0, 0) }
        return (try row.decode("requeued"), try row.decode("failed"))
    }
}

/// A claimed task's journal: the run's step commits, each checking this process still holds
/// the task's lease (`LeaseLost` otherwise).
public struct TaskJournal: AgentJournal {
    let work: WorkStore
    let task: ClaimedTask

    public init(work: WorkStore, task: ClaimedTask) {
        self.work = work
        self.task = task
    }

    public func context(historyLimit: Int) async throws -> RunContext {
        try await work.context(for: task, historyLimit: historyLimit)
    }

    public func appendModelReply(position: Int, message: ChatMessage, call: ModelCallRecord) async throws {
        try await work.appendModelReply(task, position: position, message: message, call: call)
    }

    public func completeWithModelReply(position: Int, message: ChatMessage, call: ModelCallRecord, result: JSONValue) async throws {
        try await work.completeWithModelReply(task, position: position, message: message, call: call, result: result)
    }

    public func recordFailedModelCall(_ call: ModelCallRecord) async throws {
        try await work.recordFailedModelCall(task, call: call)
    }

    public func appendToolResult(position: Int, record: ToolCallRecord) async throws {
        try await work.appendToolResult(task, position: position, record: record)
    }

    public func interrupt(call: ToolCall, data: JSONValue) async throws {
        try await work.interrupt(task, call: call, data: data)
    }

    public func finish(state: TaskState, result: JSONValue?, message: String?) async throws {
        try await work.finish(task, state: state, result: result, message: message)
    }
}
