import AgentKit
import Postgres

/// One approval waiting for a human, as the inbox lists it.
public struct PendingInterrupt: Sendable {
    public var key: TaskKey
    public var toolCallID: String
    public var toolName: String
    public var agentID: String
    /// What the status shows (LangGraph's HumanInterrupt).
    public var interruptData: JSONValue
    /// Unix seconds.
    public var createdAt: Double
    /// Microseconds since 1970, exact: the page cursor.
    public var createdMicroseconds: Int64
    /// Unix seconds; nil: it waits until a human decides.
    public var expiresAt: Double?
    public var lastQuery: String
}

/// The approval inbox: the interrupts that wait for a human, across sessions, one statement per page.
public struct InterruptStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public enum Order: String, Sendable, CaseIterable {
        case newest, oldest
    }

    /// Which interrupts, beside the caller's scope.
    public struct Filter: Sendable {
        public var userID: String?
        public var sessionID: String?
        public var tool: String?
        public var agentID: String?
        /// Only those waiting longer than this many seconds.
        public var olderThanSeconds: Double?

        public init(userID: String? = nil, sessionID: String? = nil, tool: String? = nil, agentID: String? = nil, olderThanSeconds: Double? = nil) {
            self.userID = userID
            self.sessionID = sessionID
            self.tool = tool
            self.agentID = agentID
            self.olderThanSeconds = olderThanSeconds
        }
    }

    /// Where a page starts: after this interrupt, in the page's order.
    public struct Position: Sendable, Equatable {
        public var createdMicroseconds: Int64
        public var tenantID: String
        public var userID: String
        public var sessionID: String
        public var taskID: String
        public var toolCallID: String

        public init(createdMicroseconds: Int64, tenantID: String, userID: String, sessionID: String, taskID: String, toolCallID: String) {
            self.createdMicroseconds = createdMicroseconds
            self.tenantID = tenantID
            self.userID = userID
            self.sessionID = sessionID
            self.taskID = taskID
            self.toolCallID = toolCallID
        }

        public init(_ item: PendingInterrupt) {
            self.init(
                createdMicroseconds: item.createdMicroseconds, tenantID: item.key.tenantID, userID: item.key.userID,
                sessionID: item.key.sessionID, taskID: item.key.taskID, toolCallID: item.toolCallID)
        }
    }

    /// Pending interrupts: of one tenant, or of every tenant when `tenantID` is nil (operator
    /// keys). An interrupt is pending while it is neither decided nor withdrawn (its task was
    /// cancelled; sql/010): the page is read in the order of a partial index over those alone,
    /// and joined to its tasks by primary key for the agent and the query.
    public func pending(tenantID: String?, filter: Filter, order: Order, after: Position?, limit: Int) async throws -> [PendingInterrupt] {
        // The order is one of two statement texts; every value is bound.
        let direction = order == .newest ? "DESC" : "ASC"
        let comparison = order == .newest ? "<" : ">"
        // The cursor's microseconds as the timestamp they were read from (exact: bigint microseconds).
        let afterTime: PostgresQuery = "('epoch'::timestamptz + \(after?.createdMicroseconds)::bigint * interval '1 microsecond')"
        let query: PostgresQuery = """
            SELECT i.tenant_id, i.user_id, i.session_id, i.task_id, i.tool_call_id, i.tool_name, t.agent_id, i.interrupt_data,
                   extract(epoch FROM i.created_at)::float8 AS created,
                   (extract(epoch FROM i.created_at) * 1000000)::bigint AS created_us, extract(epoch FROM i.expires_at)::float8 AS expires,
                   t.query
            FROM interrupts i
            JOIN tasks t ON \(unsafeSQL: TaskKey.sameTask("t", "i"))
            WHERE i.decision IS NULL AND i.withdrawn_at IS NULL
              AND (\(tenantID)::text IS NULL OR i.tenant_id = \(tenantID)::text)
              AND (\(filter.userID)::text IS NULL OR i.user_id = \(filter.userID)::text)
              AND (\(filter.sessionID)::text IS NULL OR i.session_id = \(filter.sessionID)::text)
              AND (\(filter.tool)::text IS NULL OR i.tool_name = \(filter.tool)::text)
              AND (\(filter.agentID)::text IS NULL OR t.agent_id = \(filter.agentID)::text)
              AND (\(filter.olderThanSeconds)::float8 IS NULL OR i.created_at < now() - make_interval(secs => \(filter.olderThanSeconds)::float8))
              AND (\(after?.createdMicroseconds)::bigint IS NULL
                   OR (i.created_at \(unsafeSQL: comparison)= \(fragment: afterTime)
                       AND (i.created_at, i.tenant_id COLLATE "C", i.user_id COLLATE "C", i.session_id COLLATE "C", i.task_id COLLATE "C",
                            i.tool_call_id COLLATE "C")
                           \(unsafeSQL: comparison)
                           (\(fragment: afterTime), \(after?.tenantID)::text COLLATE "C", \(after?.userID)::text COLLATE "C",
                            \(after?.sessionID)::text COLLATE "C", \(after?.taskID)::text COLLATE "C", \(after?.toolCallID)::text COLLATE "C")))
            ORDER BY i.created_at \(unsafeSQL: direction), i.tenant_id COLLATE "C" \(unsafeSQL: direction), i.user_id COLLATE "C" \(unsafeSQL: direction),
                     i.session_id COLLATE "C" \(unsafeSQL: direction), i.task_id COLLATE "C" \(unsafeSQL: direction),
                     i.tool_call_id COLLATE "C" \(unsafeSQL: direction)
            LIMIT \(limit)
            """
        let rows: [PostgresRow]
        if let tenantID {
            rows = try await pool.tenant(tenantID) { try $0.query(query) }.rows
        } else {
            rows = try await pool.system { try $0.query(query) }.rows
        }
        return try rows.map { row in
            PendingInterrupt(
                key: TaskKey(
                    tenantID: try row.decode("tenant_id"), userID: try row.decode("user_id"), sessionID: try row.decode("session_id"),
                    taskID: try row.decode("task_id")),
                toolCallID: try row.decode("tool_call_id"), toolName: try row.decode("tool_name"), agentID: try row.decode("agent_id"),
                interruptData: try JSONValue(parsing: try row.decode("interrupt_data", as: PostgresJSON.self).bytes),
                createdAt: try row.decode("created"), createdMicroseconds: try row.decode("created_us"),
                expiresAt: try row.decode("expires", as: Double?.self), lastQuery: try row.decode("query"))
        }
    }

    /// Decides the approvals that waited past their deadline with their timeout action, as a
    /// resume would (`decided_by = 'timeout'`), and queues their tasks again: one statement
    /// over every tenant, at most `limit` of them. Each task's row is taken `FOR UPDATE SKIP
    /// LOCKED`, as a resume takes it first, so a human's resume and the expiry (in any process)
    /// never both decide one approval, and never wait on each other. (Unlike a resume it leaves
    /// `sessions.updated_at` alone: no client acted, and locking sessions after tasks in join
    /// order could deadlock two processes that share a deadline.)
    public func expire(limit: Int) async throws -> Expiry {
        let decisionEvent = EventRecord(
            kind: .decision,
            data: """
                jsonb_build_object('tool_call_id', s.tool_call_id, 'response_type', s.timeout_action, 'args', NULL, 'decided_by', 'timeout')
                """)
        let rows = try await pool.system { connection in
            try connection.query("""
                WITH due AS (
                    SELECT t.tenant_id, t.user_id, t.session_id, t.task_id, i.tool_call_id, i.timeout_action
                    FROM interrupts i
                    JOIN tasks t ON \(unsafeSQL: TaskKey.sameTask("t", "i"))
                    WHERE i.decision IS NULL AND i.withdrawn_at IS NULL AND i.expires_at <= now()
                      AND t.state = 'interrupted' AND t.interrupt_data ->> 'tool_call_id' = i.tool_call_id
                    ORDER BY i.expires_at
                    LIMIT \(limit)
                    FOR UPDATE OF t SKIP LOCKED
                ), task AS (
                    UPDATE tasks SET state = 'queued', message = 'queued', queued_at = clock_timestamp(), updated_at = now(),
                                     events = tasks.events + 2
                    FROM due
                    WHERE \(unsafeSQL: TaskKey.sameTask("tasks", "due")) AND tasks.state = 'interrupted'
                    RETURNING due.tool_call_id, due.timeout_action, \(unsafeSQL: EventRecord.returning)
                ), logged AS (\(fragment: EventRecord.append(decisionEvent, .with(.queued, ["reason": "approval_expired"]), from: "task"))),
                decided AS (
                    UPDATE interrupts SET decision = task.timeout_action, decided_at = now(), decided_by = 'timeout'
                    FROM task
                    WHERE \(unsafeSQL: TaskKey.sameTask("interrupts", "task")) AND interrupts.tool_call_id = task.tool_call_id
                      AND interrupts.decision IS NULL
                    RETURNING interrupts.decision, extract(epoch FROM interrupts.decided_at - interrupts.created_at)::float8 AS waited
                )
                SELECT task.tenant_id, task.user_id, task.session_id, task.task_id,
                       (SELECT count(*) FROM logged) + (SELECT count(*) FROM decided) AS written,
                       (SELECT coalesce(json_agg(json_build_array(decision, waited)), '[]') FROM decided) AS decisions,
                       (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM task) AS notified,
                       (SELECT extract(epoch FROM min(n.expires_at) - now())::float8 FROM interrupts n
                        WHERE n.decision IS NULL AND n.withdrawn_at IS NULL AND n.expires_at > now()) AS next_in
                FROM (SELECT 1) AS one
                LEFT JOIN task ON TRUE
                """).rows
        }
        let expired = try rows.compactMap { row -> TaskKey? in
            guard let task = try row.decode("task_id", as: String?.self) else { return nil }
            return TaskKey(
                tenantID: try row.decode("tenant_id"), userID: try row.decode("user_id"), sessionID: try row.decode("session_id"), taskID: task)
        }
        var decisions: [(decision: String, waited: Double)] = []
        if let json = try rows.first?.decode("decisions", as: PostgresJSON.self), case .array(let items) = try JSONValue(parsing: json.bytes) {
            for case .array(let pair) in items where pair.count == 2 {
                if let decision = pair[0].stringValue, let waited = pair[1].numberValue { decisions.append((decision, waited)) }
            }
        }
        return Expiry(expired: expired, nextDeadlineIn: try rows.first?.decode("next_in", as: Double?.self), decisions: decisions)
    }

    /// What `expire` did.
    public struct Expiry: Sendable {
        /// The tasks queued again.
        public var expired: [TaskKey]
        /// Seconds until the next deadline of an approval that still waits (nil: none has one).
        public var nextDeadlineIn: Double?
        /// Each approval decided: its timeout action and the seconds it had waited.
        public var decisions: [(decision: String, waited: Double)]
    }
}
