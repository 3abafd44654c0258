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
        /// `BusyPolicy.reject` and the session has this unfinished task.
        case busy(taskID: String)
        /// The tenant has no agent of that name.
        case unknownAgent
    }

    /// What an invoke does when its session has unfinished tasks (queued, running or waiting
    /// for a human): `if_busy`.
    public enum BusyPolicy: String, Sendable, CaseIterable {
        /// Queue behind them (the original's behaviour).
        case enqueue
        /// Refuse the invoke.
        case reject
        /// Cancel them, then queue.
        case interrupt
    }

    public enum ResumeOutcome: Sendable, Equatable {
        case queued
        case notFound
        /// The task exists but is not waiting for a human.
        case notInterrupted(TaskState)
        /// The resuming key already has its limit of tasks queued or running.
        case limited
        /// The task waits on another tool call than the one the decision named (it was decided
        /// by someone else and has asked again since): the id of the call it waits on.
        case waitsOnAnotherCall(String)
    }

    public enum CancelOutcome: Sendable, Equatable {
        /// Cancelled now, or before (a cancel is idempotent); `message` says by whom and when.
        case cancelled(message: String)
        case notFound
        /// It ended first.
        case ended(TaskState)
    }

    let pool: PostgresPool
    /// How invokes without a limit or busy policy reach the database (nil: each alone).
    let group: GroupCommit?

    /// Invokes and resumes of one limited key, one at a time in this process (see `serialized`).
    private let inFlightTurns = Turns()

    /// Status reads are the hot path (clients poll); concurrent ones share a statement (see `Batched`).
    private let snapshots: Batched<TaskKey, Lookup>

    /// Settled tasks this process read, answered without a statement (nil: every read reads the database).
    let settled: SettledTasks?

    /// Told how many tasks a statement cancelled (a cancel, a session's cancel, `if_busy=interrupt`),
    /// those cancelled before not counted again.
    let onCancelled: @Sendable (Int) -> Void
    /// Told of each approval a resume decided: the decision (`accept`, `edit`, `reject`,
    /// `response`), who (`human`), and the seconds it had waited.
    let onDecided: @Sendable (String, String, Double?) -> Void

    public init(
        pool: PostgresPool, settled: SettledTasks? = nil, group: GroupCommit? = nil, onCancelled: @escaping @Sendable (Int) -> Void = { _ in },
        onDecided: @escaping @Sendable (String, String, Double?) -> Void = { _, _, _ in }
    ) {
        self.pool = pool
        self.group = group
        self.settled = settled
        self.onCancelled = onCancelled
        self.onDecided = onDecided
        // Half the pool at most, so that workers always find connections.
        snapshots = Batched(concurrentReads: max(1, pool.configuration.size / 2)) { keys in
            try await Self.snapshots(keys, pool: pool, settled: settled)
        }
    }

    /// The agent of a task whose invoke names none.
    public static let defaultAgent = "default"

    /// `task.queued` of an invoke names the agent and version the task runs (CTE `task`'s row).
    static let invokedEvent = EventRecord(
        kind: .queued, data: "jsonb_build_object('reason', 'invoked', 'agent_id', s.agent_id, 'agent_version', s.agent_version)")

    /// The states a cancel stops: every task that has not ended.
    static let unfinished = "('queued', 'running', 'interrupted')"

    /// Creates the session if new, stores the task with its query as message 0, and queues it,
    /// in one statement. The same ids with the same query and system message are a duplicate;
    /// with another, a `StoreConflict`. A refused submission (duplicate, conflict, limit, busy)
    /// writes nothing: not even the session or its `updated_at`, which decides the active session.
    /// The task runs the agent's version current at this statement (`AgentStore`); the agent
    /// `default` that the tenant did not store is the environment's configuration, version 0.
    /// - Parameters:
    ///   - agentID: nil for `default`.
    ///   - cancelledBy: who cancels the session's unfinished tasks under `.interrupt`.
    public func submit(
        _ key: TaskKey, query: String, systemMessage: String?, agentID: String? = nil, apiKeyID: String? = nil, maxInFlight: Int? = nil,
        ifBusy: BusyPolicy = .enqueue, cancelledBy: String = "a newer task", requestID: String? = nil
    ) async throws -> SubmitOutcome {
        let agent = agentID ?? Self.defaultAgent
        let (rejects, interrupts) = (ifBusy == .reject, ifBusy == .interrupt)
        // One statement text for every policy: the policy's parts are gated by bound flags,
        // which PostgreSQL checks once before it scans (enqueue probes no session for busy tasks).
        // The session is touched only when the task goes in (`touched` reads `task`): a
        // concurrent duplicate that loses the task insert leaves it alone.
        let statement: PostgresQuery = """
            WITH room AS (\(fragment: Self.room(
                apiKeyID: apiKeyID, maxInFlight: maxInFlight, sparing: "\(interrupts) AND \(fragment: key.matchesSession())"))),
            agent AS (
                SELECT coalesce(
                    (SELECT version FROM agents WHERE tenant_id = \(key.tenantID) AND agent_id = \(agent) AND deleted_at IS NULL),
                    CASE WHEN \(agent)::text = \(Self.defaultAgent)::text THEN 0 END) AS version
            ), busy AS (
                SELECT task_id FROM tasks
                WHERE \(rejects || interrupts) AND \(fragment: key.matchesSession()) AND state IN \(unsafeSQL: Self.unfinished)
                ORDER BY seq
                LIMIT 1
            ), admitted AS (
                SELECT 1 FROM room
                WHERE room.ok AND (SELECT version FROM agent) IS NOT NULL AND NOT (\(rejects) AND EXISTS (SELECT 1 FROM busy))
                  AND NOT EXISTS (SELECT 1 FROM tasks
                                  WHERE \(fragment: key.matchesTask()))
            ), cancelled AS (
                \(fragment: Self.cancelling(key.matchesSession(), by: cancelledBy, provided: "\(interrupts) AND EXISTS (SELECT 1 FROM admitted)"))
            ), cancellations AS (\(fragment: Self.cancellationEvents(by: cancelledBy, from: "cancelled"))),
            session AS (
                INSERT INTO sessions (tenant_id, user_id, session_id)
                SELECT \(fragment: key.sessionValues) FROM admitted
                ON CONFLICT (tenant_id, user_id, session_id) DO NOTHING
                RETURNING 1
            ), task AS (
                INSERT INTO tasks (\(unsafeSQL: TaskKey.taskColumns), query, system_message, message, queued_at, api_key_id,
                                   in_flight_limited, events, agent_id, agent_version, request_id)
                SELECT \(fragment: key.taskValues), \(query), \(systemMessage), 'queued',
                       clock_timestamp(), \(apiKeyID), \(maxInFlight != nil), 1, \(agent), (SELECT version FROM agent), \(requestID)
                FROM admitted
                ON CONFLICT DO NOTHING
                RETURNING \(unsafeSQL: EventRecord.returning), tasks.agent_id, tasks.agent_version
            ), logged AS (\(fragment: EventRecord.append(Self.invokedEvent, from: "task"))),
            touched AS (
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
                   (SELECT count(*) FROM session) + (SELECT count(*) FROM touched) + (SELECT count(*) FROM logged) AS written,
                   (SELECT count(*) FROM cancellations) + (SELECT count(\(fragment: Self.notifyCancelled)) FROM cancelled) AS cancelled,
                   (SELECT ok FROM room) AS room, (SELECT task_id FROM busy) AS busy,
                   (SELECT version FROM agent) IS NOT NULL AS agent_known
            """
        // Without a limit or a busy policy the statement decides alone, so concurrent invokes can
        // share a commit; reject and interrupt decide on the session's other tasks (two invokes
        // deciding at once would both see the session free), so they take turns on the session.
        if let group, maxInFlight == nil || apiKeyID == nil, ifBusy == .enqueue {
            let outcome = try await group.run(tenantID: key.tenantID, order: key.sessionOrder, statement).first
            if try outcome?.decode("inserted", as: Int.self) == 1 { return .queued }
            return try await pool.tenant(key.tenantID) { connection in
                try Self.refusal(of: key, outcome: outcome, query: query, systemMessage: systemMessage, agent: agent, ifBusy: ifBusy, connection)
            }
        }
        let (outcome, cancelled) = try await serialized(key, apiKeyID: apiKeyID, maxInFlight: maxInFlight, perSession: ifBusy != .enqueue) {
            connection -> (SubmitOutcome, Int) in
            let outcome = try connection.query(statement).first
            // Two per cancelled task: its event and its notification.
            if try outcome?.decode("inserted", as: Int.self) == 1 { return (.queued, try outcome?.decode("cancelled", as: Int.self) ?? 0) }
            return (
                try Self.refusal(of: key, outcome: outcome, query: query, systemMessage: systemMessage, agent: agent, ifBusy: ifBusy, connection), 0
            )
        }
        // Counted once the transaction committed.
        if cancelled > 0 { onCancelled(cancelled / 2) }
        return outcome
    }

    /// Why a submission wrote nothing, from its statement's `outcome` and the task already stored.
    private static func refusal(
        of key: TaskKey, outcome: PostgresRow?, query: String, systemMessage: String?, agent: String, ifBusy: BusyPolicy,
        _ connection: PostgresConnection
    ) throws -> SubmitOutcome {
        if let existing = try connection.query("""
            SELECT query, system_message, agent_id FROM tasks
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
            let storedAgent = try existing.decode("agent_id", as: String.self)
            guard Identifier.same(storedAgent, agent) else {
                throw StoreConflict("task_id \(key.taskID) already exists in this session for another agent (\(storedAgent))")
            }
            return .duplicate
        }
        if try outcome?.decode("agent_known", as: Bool.self) == false { return .unknownAgent }
        if try outcome?.decode("room", as: Bool.self) == false { return .limited }
        if ifBusy == .reject, let busy = try outcome?.decode("busy", as: String?.self) { return .busy(taskID: busy) }
        throw StoreConflict("task \(key.taskID) was deleted while it was being submitted")
    }

    /// Records the human decision on the pending approval and queues the task again, in one
    /// statement. Of two concurrent resumes, exactly one finds the task interrupted. A resume
    /// queues the task under the resuming key, so it counts against that key's in-flight limit.
    /// - Parameter toolCallID: the call the decider saw; the task is resumed only while it waits on that one.
    public func resume(
        _ key: TaskKey, decision: HumanDecision, toolCallID: String? = nil, apiKeyID: String? = nil, maxInFlight: Int? = nil,
        requestID: String? = nil
    ) async throws -> ResumeOutcome {
        let args = try decision.args.map { try StoreCoding.json($0) }
        let decisionEvent = EventRecord(
            kind: .decision,
            data: """
                jsonb_build_object('tool_call_id', s.tool_call_id, 'response_type', \(decision.kind.rawValue)::text, 'args', \(args)::jsonb,
                                   'decided_by', 'human')
                """)
        let (outcome, waited) = try await serialized(key, apiKeyID: apiKeyID, maxInFlight: maxInFlight, perSession: false) {
            connection -> (ResumeOutcome, Double?) in
            let resumed = try connection.query("""
                WITH room AS (\(fragment: Self.room(apiKeyID: apiKeyID, maxInFlight: maxInFlight))), task AS (
                    UPDATE tasks SET state = 'queued', message = 'queued', queued_at = clock_timestamp(), updated_at = now(),
                                     api_key_id = \(apiKeyID), in_flight_limited = \(maxInFlight != nil), events = tasks.events + 2,
                                     request_id = \(requestID)
                    WHERE \(fragment: key.matchesTask()) AND state = 'interrupted' AND (SELECT ok FROM room)
                      AND (\(toolCallID)::text IS NULL OR interrupt_data ->> 'tool_call_id' = \(toolCallID))
                    RETURNING interrupt_data ->> 'tool_call_id' AS tool_call_id, \(unsafeSQL: EventRecord.returning)
                ), logged AS (\(fragment: EventRecord.append(decisionEvent, .with(.queued, ["reason": "resumed"]), from: "task"))),
                decided AS (
                    UPDATE interrupts SET decision = \(decision.kind.rawValue), decision_args = \(args), decided_at = now(),
                                          decided_by = 'human', decided_by_key = \(apiKeyID)
                    FROM task
                    WHERE \(fragment: key.matchesTask("interrupts"))
                      AND interrupts.tool_call_id = task.tool_call_id AND interrupts.decision IS NULL
                    RETURNING extract(epoch FROM interrupts.decided_at - interrupts.created_at)::float8 AS waited
                ), touched AS (
                    UPDATE sessions SET updated_at = now()
                    WHERE \(fragment: key.matchesSession()) AND EXISTS (SELECT 1 FROM task)
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM task) AS resumed, (SELECT waited FROM decided) AS waited,
                       (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM task) AS notified,
                       (SELECT count(*) FROM decided) + (SELECT count(*) FROM touched) + (SELECT count(*) FROM logged) AS written,
                       (SELECT ok FROM room) AS room
                """).first
            if try resumed?.decode("resumed", as: Int.self) == 1 { return (.queued, try resumed?.decode("waited", as: Double?.self)) }
            guard let row = try connection.query("""
                SELECT state, interrupt_data ->> 'tool_call_id' AS waiting FROM tasks
                WHERE \(fragment: key.matchesTask())
                """).first
            else { return (.notFound, nil) }
            let current = TaskState(rawValue: try row.decode("state", as: String.self)) ?? .queued
            if current == .interrupted, try resumed?.decode("room", as: Bool.self) == false { return (.limited, nil) }
            if current == .interrupted, let toolCallID, let waiting = try row.decode("waiting", as: String?.self), waiting != toolCallID {
                return (.waitsOnAnotherCall(waiting), nil)
            }
            return (.notInterrupted(current), nil)
        }
        // Counted once the transaction committed.
        if outcome == .queued { onDecided(decision.kind.rawValue, "human", waited) }
        return outcome
    }

    /// Cancels the task if it has not ended, in one statement: queued or waiting for a human, it
    /// is over at once; running, the notification stops its worker, wherever it runs, and its
    /// next step finds the task cancelled and writes nothing. Against a concurrent completion,
    /// the task's row lock decides: one of the two statements finds the task unfinished.
    public func cancel(_ key: TaskKey, by who: String) async throws -> CancelOutcome {
        try await pool.tenant(key.tenantID) { connection in
            let outcome = try connection.query("""
                WITH cancelled AS (\(fragment: Self.cancelling(key.matchesTask(), by: who))),
                logged AS (\(fragment: Self.cancellationEvents(by: who, from: "cancelled")))
                SELECT (SELECT message FROM cancelled) AS message, (SELECT count(*) FROM logged) AS logged,
                       (SELECT count(\(fragment: Self.notifyCancelled)) FROM cancelled) AS notified,
                       \(fragment: Notifier.wakeSessionQueue(of: key, ifAnyIn: "cancelled")) AS woke
                """).first
            if let message = try outcome?.decode("message", as: String?.self) {
                onCancelled(1)
                return .cancelled(message: message)
            }
            guard let current = try connection.query("""
                SELECT state, message FROM tasks
                WHERE \(fragment: key.matchesTask())
                """).first
            else { return .notFound }
            let state = TaskState(rawValue: try current.decode("state", as: String.self)) ?? .error
            if state == .cancelled { return .cancelled(message: try current.decode("message", as: String?.self) ?? "cancelled") }
            return .ended(state)
        }
    }

    /// Cancels every unfinished task of the session; nil when the session does not exist.
    public func cancelSession(tenantID: String, userID: String, sessionID: String, by who: String) async throws -> [String]? {
        let session = TaskKey(tenantID: tenantID, userID: userID, sessionID: sessionID, taskID: "")
        return try await pool.tenant(tenantID) { connection in
            let row = try connection.query("""
                WITH cancelled AS (\(fragment: Self.cancelling(session.matchesSession(), by: who))),
                logged AS (\(fragment: Self.cancellationEvents(by: who, from: "cancelled")))
                SELECT (SELECT count(*) FROM sessions WHERE \(fragment: session.matchesSession())) AS sessions,
                       (SELECT count(*) FROM logged) AS logged,
                       (SELECT count(\(fragment: Self.notifyCancelled)) FROM cancelled) AS notified,
                       (SELECT coalesce(json_agg(cancelled.task_id ORDER BY t.seq), '[]')
                        FROM cancelled JOIN tasks t ON \(unsafeSQL: TaskKey.sameTask("t", "cancelled"))) AS task_ids
                """).first
            guard let row, try row.decode("sessions", as: Int.self) > 0 else { return nil }
            guard case .array(let ids) = try JSONValue(parsing: try row.decode("task_ids", as: PostgresJSON.self).bytes) else { return [] }
            if !ids.isEmpty { onCancelled(ids.count) }
            return ids.compactMap(\.stringValue)
        }
    }

    /// A CTE body that cancels the unfinished tasks `matching` (when `condition` holds),
    /// returning their rows for `cancellationEvents`. A running task keeps its `lease_owner`: its
    /// worker may still record the result of a tool it had started (`tool_calls` only).
    static func cancelling(_ matching: PostgresQuery, by who: String, provided condition: PostgresQuery = "TRUE") -> PostgresQuery {
        """
        UPDATE tasks SET state = 'cancelled',
            message = 'cancelled by ' || \(who)::text || ' at ' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            result = NULL, interrupt_data = NULL, lease_expires_at = NULL, finished_at = clock_timestamp(), updated_at = now(),
            events = tasks.events + 1
        WHERE \(fragment: matching) AND state IN \(unsafeSQL: unfinished) AND \(fragment: condition)
        RETURNING \(unsafeSQL: EventRecord.returning), tasks.message, tasks.seq
        """
    }

    /// A CTE body storing the `task.cancelled` event of each row of `source` (from `cancelling`).
    static func cancellationEvents(by who: String, from source: String) -> PostgresQuery {
        EventRecord.append(
            EventRecord(kind: .cancelled, data: "jsonb_build_object('message', s.message, 'cancelled_by', \(who)::text)"), from: source)
    }

    /// For each row of the CTE `cancelled`: wakes the task's readers and stops its worker.
    static let notifyCancelled = Notifier.notifySettled(
        tenant: "cancelled.tenant_id", user: "cancelled.user_id", session: "cancelled.session_id", task: "cancelled.task_id",
        state: "'cancelled'", seq: "cancelled.seq")

    /// The CTE `room`: one row, `ok` when the key may queue one more task (always, without a limit).
    /// It counts the tasks queued while the key had its limit (`in_flight_limited`, sql/015), so a
    /// limit given to a key later counts from its next task.
    /// - Parameter sparing: a condition on the tasks the same statement cancels
    ///   (`if_busy=interrupt`): they do not count.
    static func room(apiKeyID: String?, maxInFlight: Int?, sparing: PostgresQuery = "FALSE") -> PostgresQuery {
        """
        SELECT \(maxInFlight)::int IS NULL
               OR (SELECT count(*) FROM tasks
                   WHERE api_key_id = \(apiKeyID) AND state IN ('queued', 'running') AND in_flight_limited
                     AND NOT (\(fragment: sparing))) < \(maxInFlight) AS ok
        """
    }

    /// Advisory lock space of the in-flight limit (the two-key form; the migrator uses the other).
    static let inFlightLockClass: Int32 = 0x6167_6e74  // "agnt"

    /// Advisory lock space of a session's turns (`perSession`).
    static let sessionLockClass: Int32 = 0x7365_7373  // "sess"

    /// Runs `body` for the tenant: as is when the key has no in-flight limit and `perSession` is
    /// false; else in a transaction that first takes the key's advisory lock and/or the
    /// session's, in a statement of its own. Under read committed each statement sees what
    /// committed before it began, so two concurrent submissions that counted in the same
    /// statement would both see room for one more (or a free session); after the lock, the
    /// second counts the first's task. Costs those requests two round trips more.
    /// Within a process the key's requests queue in memory first (`inFlightTurns`), so a burst
    /// on one key holds one pooled connection at a time, not the whole pool waiting on the lock.
    private func serialized<T: Sendable>(
        _ key: TaskKey, apiKeyID: String?, maxInFlight: Int?, perSession: Bool, _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        let limitedKey = maxInFlight == nil ? nil : apiKeyID
        guard limitedKey != nil || perSession else { return try await pool.tenant(key.tenantID, body) }
        let transaction: @Sendable () async throws -> T = {
            try await pool.tenantTransaction(key.tenantID) { connection in
                // Key first, then session: every locker takes them in this order.
                if let limitedKey {
                    try connection.query("SELECT pg_advisory_xact_lock(\(Self.inFlightLockClass), hashtext(\(limitedKey))) AS locked")
                }
                if perSession {
                    try connection.query("""
                        SELECT pg_advisory_xact_lock(\(Self.sessionLockClass),
                                                     hashtext(json_build_array(\(key.tenantID)::text, \(key.userID)::text, \(key.sessionID)::text)::text)) AS locked
                        """)
                }
                return try body(connection)
            }
        }
        // The statement may lock a session's rows in another order than a group commit holding
        // some of them (`GroupCommit`); PostgreSQL breaks such a deadlock by failing one side,
        // and this side, rolled back whole, runs again.
        let locked: @Sendable () async throws -> T = {
            for _ in 1..<3 {
                do {
                    return try await transaction()
                } catch let error as StoreError where error.underlying.sqlState == PostgresError.SQLState.deadlockDetected {
                    continue
                }
            }
            return try await transaction()
        }
        guard let limitedKey else { return try await locked() }
        return try await inFlightTurns.serially(limitedKey, locked)
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
        if let task = await settled?.snapshot(key) { return .task(task) }
        return try await snapshots.value(for: key)
    }

    /// The tasks of `keys`, one statement per tenant among them. A key with no task is an idle
    /// session if the session exists without any task, else not found: a second statement, for
    /// those keys only. The settled ones go to `settled`.
    static func snapshots(_ keys: [TaskKey], pool: PostgresPool, settled: SettledTasks?) async throws -> [TaskKey: Lookup] {
        var found: [TaskKey: Lookup] = [:]
        for (tenant, keys) in Dictionary(grouping: keys, by: { Identifier($0.tenantID) }) {
            let tenant = tenant.text
            // Taken before the statement: an invalidation that arrives while it runs drops the fill.
            let generation = settled?.generation
            var fills: [(key: TaskKey, snapshot: TaskSnapshot, bytes: Int)] = []
            // The idle test is not in the read itself: PostgreSQL plans this statement each time
            // (a custom plan for the keys' count beats the generic one), and its two sub-selects
            // more than doubled that planning (0.6 against 0.25 ms).
            let (rows, idle) = try await pool.tenant(tenant) { connection in
                let rows = try connection.query("""
                    SELECT k.user_id, k.session_id, k.task_id, t.state, t.message, t.query, t.result, t.interrupt_data, t.agent_id, t.agent_version,
                           extract(epoch FROM t.updated_at) AS updated
                    FROM unnest(\(keys.map(\.userID))::text[], \(keys.map(\.sessionID))::text[], \(keys.map(\.taskID))::text[])
                         AS k(user_id, session_id, task_id)
                    JOIN tasks t
                      ON t.tenant_id = \(tenant) AND t.user_id = k.user_id AND t.session_id = k.session_id AND t.task_id = k.task_id
                    """).rows
                let answered = Set(try rows.map { [try $0.decode("user_id", as: String.self), try $0.decode("session_id"), try $0.decode("task_id")] })
                let missing = keys.filter { !answered.contains([$0.userID, $0.sessionID, $0.taskID]) }
                guard !missing.isEmpty else { return (rows, [PostgresRow]()) }
                let idle = try connection.query("""
                    SELECT k.user_id, k.session_id, k.task_id,
                           EXISTS (SELECT 1 FROM sessions s
                                   WHERE s.tenant_id = \(tenant) AND s.user_id = k.user_id AND s.session_id = k.session_id)
                             AND NOT EXISTS (SELECT 1 FROM tasks o
                                             WHERE o.tenant_id = \(tenant) AND o.user_id = k.user_id AND o.session_id = k.session_id) AS idle
                    FROM unnest(\(missing.map(\.userID))::text[], \(missing.map(\.sessionID))::text[], \(missing.map(\.taskID))::text[])
                         AS k(user_id, session_id, task_id)
                    """).rows
                return (rows, idle)
            }
            for row in idle {
                let key = TaskKey(
                    tenantID: tenant, userID: try row.decode("user_id"), sessionID: try row.decode("session_id"), taskID: try row.decode("task_id"))
                found[key] = try row.decode("idle", as: Bool.self) ? .idleSession : .notFound
            }
            for row in rows {
                let key = TaskKey(
                    tenantID: tenant, userID: try row.decode("user_id"), sessionID: try row.decode("session_id"), taskID: try row.decode("task_id"))
                let state: String = try row.decode("state")
                let message = try row.decode("message", as: String?.self)
                let query = try row.decode("query", as: String.self)
                let result = try row.decode("result", as: PostgresJSON?.self)
                let interruptData = try row.decode("interrupt_data", as: PostgresJSON?.self)
                let task = TaskSnapshot(
                    state: TaskState(rawValue: state) ?? .error, message: message, query: query,
                    result: try result.map { try JSONValue(parsing: $0.bytes) },
                    interruptData: try interruptData.map { try JSONValue(parsing: $0.bytes) },
                    updatedAt: try row.decode("updated", as: Double.self),
                    agentID: try row.decode("agent_id", as: String.self), agentVersion: try row.decode("agent_version", as: Int.self))
                found[key] = .task(task)
                if settled != nil, SettledTasks.settledStates.contains(task.state) {
                    // Parsed JSON (`JSONValue`: an enum per value, a dictionary per object) takes several times its text.
                    let bytes = key.description.utf8.count + (message?.utf8.count ?? 0) + query.utf8.count
                        + 8 * ((result?.bytes.count ?? 0) + (interruptData?.bytes.count ?? 0))
                    fills.append((key, task, bytes))
                }
            }
            if let settled, let generation, !fills.isEmpty { settled.fill(fills, readAfter: generation) }
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
