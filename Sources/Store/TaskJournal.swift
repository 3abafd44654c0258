import AgentKit
import Postgres

/// The worker's lease on a task is gone (expired and taken over, or the task was deleted):
/// it must stop without writing anything more.
public struct LeaseLost: Error, Sendable {
    public var key: TaskKey
}

/// One claimed task's step journal, per tenant: the run's context and its step commits. Every
/// commit checks, in the same statement, that this process still holds the task's lease, so a
/// worker that lost its task can never write into it (`LeaseLost`). Each call is one statement.
public struct TaskJournal: AgentJournal {
    let pool: PostgresPool
    let task: ClaimedTask
    /// This process, as `tasks.lease_owner` names it.
    let owner: String
    let lease: Duration
    let onStep: @Sendable (TaskKey) -> Void
    let settled: SettledTasks?
    let group: GroupCommit?

    init(
        pool: PostgresPool, task: ClaimedTask, owner: String, lease: Duration, settled: SettledTasks?, group: GroupCommit?,
        onStep: @escaping @Sendable (TaskKey) -> Void
    ) {
        self.pool = pool
        self.task = task
        self.owner = owner
        self.lease = lease
        self.settled = settled
        self.group = group
        self.onStep = onStep
    }

    var key: TaskKey { task.key }

    /// Loads the task's turn, the session's last `historyLimit` earlier messages and the human decisions.
    public func context(historyLimit: Int) async throws -> RunContext {
        let query = contextStatement(historyLimit: historyLimit)
        return try Self.context(from: try await pool.tenant(key.tenantID) { try $0.query(query).rows })
    }

    /// The context and the memories recalled for this journal's task (the run's key is the same
    /// one), both statements in one round trip (pipelined) when `memory` is this database's `MemoryStore`.
    public func context(
        historyLimit: Int, recalling query: String, limit: Int, from memory: any MemoryRecall, of _: TaskKey
    ) async throws -> (RunContext, [String]) {
        guard let store = memory as? MemoryStore,
            let recall = await store.recallStatement(tenantID: key.tenantID, userID: key.userID, query: query, limit: limit)
        else {
            let context = try await context(historyLimit: historyLimit)
            return (context, try await memory.recalledMemories(tenantID: key.tenantID, userID: key.userID, query: query, limit: limit))
        }
        let statements = [contextStatement(historyLimit: historyLimit), recall]
        let results = try await pool.tenant(key.tenantID) { try $0.pipelinedReads(statements) }
        guard results.count == 2 else { throw StoreError(PostgresError(code: .clientError, message: "the pipelined reads lost a result")) }
        do {
            return (try Self.context(from: try results[0].get().rows), try MemoryStore.hits(in: try results[1].get()).map(\.text))
        } catch let error as PostgresError {
            throw StoreError(error)
        }
    }

    private func contextStatement(historyLimit: Int) -> PostgresQuery {
        let limit = max(0, historyLimit)
        // One statement, one round trip: part 0 is the turn, part 1 the history (newest first),
        // part 2 the decisions. Every task has at least its query message, so the last `limit`
        // completed tasks hold the window: the scan stays bounded however long the session is.
        let query: PostgresQuery = """
            SELECT * FROM (
                SELECT 0 AS part, position::bigint AS k1, 0::bigint AS k2, type, content, tool_calls, name, tool_call_id,
                       NULL::text AS decision, NULL::jsonb AS decision_args
                FROM messages
                WHERE \(fragment: key.matchesTask())
                UNION ALL
                (SELECT 1, -t.seq, -m.position::bigint, m.type, m.content, m.tool_calls, m.name, m.tool_call_id, NULL, NULL
                 FROM (SELECT tenant_id, user_id, session_id, task_id, seq FROM tasks
                       WHERE \(fragment: key.matchesSession()) AND seq < \(task.seq) AND state = 'completed'
                       ORDER BY seq DESC
                       LIMIT \(limit)) t
                 JOIN messages m USING (tenant_id, user_id, session_id, task_id)
                 ORDER BY t.seq DESC, m.position DESC
                 LIMIT \(limit))
                UNION ALL
                SELECT 2, 0, 0, NULL, NULL, NULL, NULL, tool_call_id, decision, decision_args
                FROM interrupts
                WHERE \(fragment: key.matchesTask()) AND decision IS NOT NULL
            ) AS context
            ORDER BY part, k1, k2
            """
        return query
    }

    private static func context(from rows: [PostgresRow]) throws -> RunContext {
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
    public func appendModelReply(position: Int, message: ChatMessage, call: ModelCallRecord) async throws {
        try await commit("""
            WITH lease AS (\(fragment: renewLease(events: 1))), \(fragment: try modelReplyWrites(position: position, message: message, call: call)),
                 logged AS (\(fragment: EventRecord.append(.message(at: position), from: "lease")))
            SELECT (SELECT count(*) FROM message) AS written, (SELECT count(*) FROM usage) AS recorded, (SELECT count(*) FROM logged) AS logged
            """)
    }

    /// The model's final answer and the task's completion in one statement (one commit instead of
    /// two): the reply's message and `llm_calls` row, and the task `completed` with `result`.
    public func completeWithModelReply(position: Int, message: ChatMessage, call: ModelCallRecord, result: JSONValue) async throws {
        let ending = try Ending(state: .completed, result: result, message: nil)
        try await commit(ending: ending, """
            WITH task AS (\(fragment: endTask(ending, events: 2))), lease AS (SELECT 1 FROM task),
                 \(fragment: try modelReplyWrites(position: position, message: message, call: call)),
                 logged AS (\(fragment: EventRecord.append(.message(at: position), .ended(.completed, message: nil), from: "task")))
            SELECT (SELECT count(*) FROM message) AS written, (SELECT count(*) FROM logged) AS logged,
                   \(fragment: wakeSessionQueue) AS woke, \(fragment: settledNotice(.completed)) AS settled,
                   \(unsafeSQL: Self.updatedAt) AS updated
            """)
    }

    /// CTEs `message` and `usage` of a model reply: the message is written only if CTE `lease`
    /// has a row; the model call is recorded either way.
    private func modelReplyWrites(position: Int, message: ChatMessage, call: ModelCallRecord) throws -> PostgresQuery {
        let toolCalls = try StoreCoding.json(message.toolCalls)
        return """
            message AS (
                INSERT INTO messages (\(unsafeSQL: TaskKey.taskColumns), position, type, content, tool_calls)
                SELECT \(fragment: key.taskValues), \(position), 'ai', \(message.content), \(toolCalls)
                FROM lease
                RETURNING 1
            ), usage AS (\(fragment: recordModelCall(call, outcome: "ok")) RETURNING 1)
            """
    }

    /// Records a model call that failed (the task's end is committed separately).
    public func recordFailedModelCall(_ call: ModelCallRecord) async throws {
        let insert = recordModelCall(call, outcome: "error")
        try await pool.tenant(key.tenantID) { try $0.query(insert) }
    }

    private func recordModelCall(_ call: ModelCallRecord, outcome: String) -> PostgresQuery {
        """
        INSERT INTO llm_calls (\(unsafeSQL: TaskKey.taskColumns), model, prompt_tokens, completion_tokens, latency_ms, outcome, error)
        VALUES (\(fragment: key.taskValues), \(call.model), \(call.usage?.promptTokens), \(call.usage?.completionTokens),
                \(call.latencyMilliseconds), \(outcome), \(call.error))
        """
    }

    /// Commits a tool's result message with its `tool_calls` row. The row's key makes a second
    /// result for the same call impossible: a duplicate run is reported as `LeaseLost` (a row
    /// that only says the call started, `beginToolCall`, takes the result). When the task was
    /// cancelled while the tool ran, the same statement records the result for the audit only
    /// (`cancelledTaskAudit`) and the run stops with `LeaseLost`.
    public func appendToolResult(position: Int, record: ToolCallRecord) async throws {
        let args = try StoreCoding.json(record.arguments)
        // The lease CTE checks for an earlier result itself: it also numbers the event, and a
        // number taken for an event that is then not written would leave a gap. Two writers
        // cannot race past it: the lease CTE locks the task row and only its holder passes.
        let firstResult: PostgresQuery = """
            NOT EXISTS (SELECT 1 FROM tool_calls
                        WHERE \(fragment: key.matchesTask()) AND tool_call_id = \(record.call.id) AND status <> 'started')
            """
        try await commit("""
            WITH lease AS (\(fragment: renewLease(events: 1, provided: firstResult))), call AS (
                \(fragment: toolCallRow(record, args: args, from: "lease"))
                RETURNING 1
            ), message AS (
                INSERT INTO messages (\(unsafeSQL: TaskKey.taskColumns), position, type, content, name, tool_call_id)
                SELECT \(fragment: key.taskValues), \(position), 'tool', \(record.output), \(record.call.name), \(record.call.id)
                FROM call
                RETURNING 1
            ), logged AS (
                \(fragment: EventRecord.append(.with(.toolResult, ["status": .string(record.status.rawValue)], position: position), from: "lease"))
            ), audit AS (\(fragment: cancelledTaskAudit(record, args: args, provided: "NOT EXISTS (SELECT 1 FROM lease)")) RETURNING 1)
            SELECT (SELECT count(*) FROM message) AS written, (SELECT count(*) FROM logged) AS logged, (SELECT count(*) FROM audit) AS audited
            """)
    }

    /// Commits that a tool call that must never run twice is starting (a `tool_calls` row with
    /// status `started`), under the lease. False when an earlier run of the task started it:
    /// that run may have done what the call does, so it is not run again.
    public func beginToolCall(_ call: ToolCall, arguments: [String: JSONValue], serverLabel: String?) async throws -> Bool {
        let args = try StoreCoding.json(arguments)
        let row = try await pool.tenant(key.tenantID) { [key, owner] connection in
            try connection.query("""
                WITH lease AS (
                    SELECT 1 FROM tasks WHERE \(fragment: key.matchesTask()) AND state = 'running' AND lease_owner = \(owner)
                ), started AS (
                    INSERT INTO tool_calls (\(unsafeSQL: TaskKey.taskColumns), tool_call_id, tool_name, args, output, status, server_label)
                    SELECT \(fragment: key.taskValues), \(call.id), \(call.name), \(args), '', 'started', \(serverLabel)
                    FROM lease
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM lease) AS leased, (SELECT count(*) FROM started) AS started
                """).first
        }
        guard try row?.decode("leased", as: Int.self) == 1 else { throw LeaseLost(key: key) }
        return try row?.decode("started", as: Int.self) == 1
    }

    /// The result of a tool that was running when a client cancelled the task: recorded for the audit
    /// in `tool_calls` only. It is not a step: the turn and the event stream ended with the
    /// cancellation, and the model is not called again.
    public func recordToolCallOfCancelledTask(_ record: ToolCallRecord) async throws {
        let insert = cancelledTaskAudit(record, args: try StoreCoding.json(record.arguments))
        try await pool.tenant(key.tenantID) { try $0.query(insert) }
    }

    /// The `tool_calls` row of a tool that ran for this worker while its task was cancelled.
    private func cancelledTaskAudit(_ record: ToolCallRecord, args: PostgresJSON, provided condition: PostgresQuery = "TRUE") -> PostgresQuery {
        """
        WITH cancelled AS (
            SELECT 1 FROM tasks
            WHERE \(fragment: key.matchesTask()) AND state = 'cancelled' AND lease_owner = \(owner) AND \(fragment: condition)
        )
        \(fragment: toolCallRow(record, args: args, from: "cancelled"))
        """
    }

    /// Inserts the call's `tool_calls` row once for each row of CTE `source`, filling in a row that
    /// only says the call started; a finished row stays as it is (the statement inserts nothing).
    private func toolCallRow(_ record: ToolCallRecord, args: PostgresJSON, from source: String) -> PostgresQuery {
        """
        INSERT INTO tool_calls AS c (\(unsafeSQL: TaskKey.taskColumns), tool_call_id, tool_name, args, output, status, decision, duration_ms,
                                     server_label, outcome)
        SELECT \(fragment: key.taskValues), \(record.call.id), \(record.call.name),
               \(args), \(record.output), \(record.status.rawValue), \(record.decision?.rawValue), \(record.durationMilliseconds),
               \(record.serverLabel), \(record.outcome)
        FROM \(unsafeSQL: source)
        ON CONFLICT (tenant_id, user_id, session_id, task_id, tool_call_id) DO UPDATE
            SET tool_name = excluded.tool_name, args = excluded.args, output = excluded.output, status = excluded.status,
                decision = excluded.decision, duration_ms = excluded.duration_ms, server_label = excluded.server_label,
                outcome = excluded.outcome
            WHERE c.status = 'started'
        """
    }

    /// Stops the task to wait for a human about `call`; the session is free meanwhile. With
    /// `expiry`, the interrupt's deadline and action are stored with it (`ApprovalExpiry`).
    public func interrupt(call: ToolCall, data: JSONValue, expiry: ApprovalTimeout?) async throws {
        let payload = try StoreCoding.json(data)
        let args = try StoreCoding.json(call.args)
        try await commit("""
            WITH task AS (
                UPDATE tasks SET state = 'interrupted', interrupt_data = \(payload), result = NULL, message = NULL,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), events = tasks.events + 1
                WHERE \(fragment: key.matchesTask()) AND state = 'running' AND lease_owner = \(owner)
                RETURNING \(unsafeSQL: EventRecord.returning)
            ), logged AS (
                \(fragment: EventRecord.append(EventRecord(kind: .interrupt, data: "jsonb_build_object('interrupt_data', \(payload)::jsonb)"), from: "task"))
            ), asked AS (
                INSERT INTO interrupts (\(unsafeSQL: TaskKey.taskColumns), tool_call_id, tool_name, tool_args, interrupt_data,
                                        expires_at, timeout_action)
                SELECT \(fragment: key.taskValues), \(call.id), \(call.name), \(args), \(payload),
                       now() + make_interval(secs => \(expiry?.seconds)::float8), \(expiry?.action.rawValue)::text
                FROM task
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM task) AS written, (SELECT count(*) FROM asked) AS asked, (SELECT count(*) FROM logged) AS logged,
                   \(fragment: wakeSessionQueue) AS woke, \(fragment: settledNotice(.interrupted)) AS settled
            """)
    }

    /// Ends the task: `completed` with its result, or `error` with a message.
    public func finish(state: TaskState, result: JSONValue?, message: String?) async throws {
        let ending = try Ending(state: state, result: result, message: message)
        try await commit(ending: ending, """
            WITH task AS (\(fragment: endTask(ending, events: 1))),
                 logged AS (\(fragment: EventRecord.append(.ended(state, message: message), from: "task")))
            SELECT (SELECT count(*) FROM task) AS written, (SELECT count(*) FROM logged) AS logged,
                   \(fragment: settledNotice(state)) AS settled, \(fragment: wakeSessionQueue) AS woke,
                   \(unsafeSQL: Self.updatedAt) AS updated
            """)
    }

    /// The `updated_at` an ending statement writes (`endTask`: the transaction's `now()`), as the status reads it.
    private static let updatedAt = "extract(epoch FROM now())::float8"

    /// Runs a step's statement, whose column `written` is 1 when it was written under this
    /// process's lease. A statement that ends the task (`ending`, with a column `updated`) leaves
    /// the task's status in `settled`, for the reads that follow.
    private func commit(ending: Ending? = nil, _ statement: PostgresQuery) async throws {
        // Taken before the statement, as for a read (`SettledTasks.fill`).
        let generation = settled?.generation
        let row: PostgresRow?
        do {
            if let group {
                row = try await group.run(tenantID: key.tenantID, order: key.sessionOrder, statement).first
            } else {
                row = try await pool.tenant(key.tenantID) { try $0.query(statement).first }
            }
        } catch let error as StoreError where error.underlying.isUniqueViolation && error.underlying.constraint == "tool_calls_pkey" {
            // Another run of this task recorded the same tool call first (it took the task over).
            throw LeaseLost(key: key)
        }
        guard try row?.decode("written", as: Int.self) == 1 else { throw LeaseLost(key: key) }
        if let ending, let settled, let generation, let updated = try row?.decode("updated", as: Double.self) {
            let snapshot = TaskSnapshot(
                state: ending.state, message: ending.message, query: task.query, result: ending.result, interruptData: nil,
                updatedAt: updated, agentID: task.agentID, agentVersion: task.agentVersion)
            let bytes = key.description.utf8.count + task.query.utf8.count + (ending.message?.utf8.count ?? 0)
                + 8 * (ending.payload?.bytes.count ?? 0)
            settled.fill([(key, snapshot, bytes)], readAfter: generation)
        }
        onStep(key)
    }

    /// How a statement ends the task: what it writes, and the result's JSON encoded once for it
    /// and for `settled`'s size estimate.
    private struct Ending {
        var state: TaskState
        var result: JSONValue?
        var payload: PostgresJSON?
        var message: String?

        init(state: TaskState, result: JSONValue?, message: String?) throws {
            self.state = state
            self.result = result
            payload = try result.map { try StoreCoding.json($0) }
            self.message = message
        }
    }

    /// A CTE body that ends the task if this worker still holds its lease, returning its row
    /// (for `EventRecord.append`, with `events` more numbers taken), or none.
    private func endTask(_ ending: Ending, events: Int) -> PostgresQuery {
        """
            UPDATE tasks SET state = \(ending.state.rawValue), result = \(ending.payload), message = \(ending.message), interrupt_data = NULL,
                lease_owner = NULL, lease_expires_at = NULL, finished_at = clock_timestamp(), updated_at = now(),
                events = tasks.events + \(events)
            WHERE \(fragment: key.matchesTask()) AND state = 'running' AND lease_owner = \(owner)
            RETURNING \(unsafeSQL: EventRecord.returning)
            """
    }

    /// A CTE body that extends this worker's lease on the task and takes `events` event numbers,
    /// returning the task's row, or none when the lease is gone (or `provided` is false); the
    /// step's writes select FROM it.
    private func renewLease(events: Int, provided condition: PostgresQuery = "TRUE") -> PostgresQuery {
        """
        UPDATE tasks SET lease_expires_at = now() + make_interval(secs => \(lease.seconds)), updated_at = now(),
            events = tasks.events + \(events)
        WHERE \(fragment: key.matchesTask()) AND state = 'running' AND lease_owner = \(owner) AND \(fragment: condition)
        RETURNING \(unsafeSQL: EventRecord.returning)
        """
    }

    /// A select-list item for statements that end or pause a task (CTE `task`): the session
    /// is free now, so wake the dispatchers if it has queued work.
    private var wakeSessionQueue: PostgresQuery { Notifier.wakeSessionQueue(of: key, ifAnyIn: "task") }

    /// A select-list item for statements that end or pause a task (CTE `task`): wakes the
    /// requests waiting on it (`Notifier.Channel.settled`), in whichever process they are.
    private func settledNotice(_ state: TaskState) -> PostgresQuery {
        "(SELECT count(\(fragment: Notifier.notifySettled(key: key, state: state))) FROM task)"
    }
}
