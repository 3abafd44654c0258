import AgentKit
import Postgres

/// A stored event as a statement writes it: SQL expressions that may read the columns of the
/// statement's task row, `s`.
struct EventRecord {
    var kind: TaskEvent.Kind
    /// message and tool.result: the message's position in the turn.
    var position: PostgresQuery = "NULL::integer"
    /// The type's fields, a jsonb expression.
    var data: PostgresQuery = "'{}'::jsonb"

    /// An event whose fields are known before the statement: bound as one jsonb parameter, written
    /// by the hand-written serializer (Foundation's encoder would be on every invoke and step).
    static func with(_ kind: TaskEvent.Kind, _ fields: [String: JSONValue], position: Int? = nil) -> EventRecord {
        EventRecord(
            kind: kind, position: position.map { "\($0)::integer" } ?? "NULL::integer",
            data: "\(JSONValue.object(fields).jsonText)::jsonb")
    }

    static func message(at position: Int) -> EventRecord {
        EventRecord(kind: .message, position: "\(position)::integer")
    }

    /// The event of a task that ends in `state` (`task.completed` reads its result from the task row).
    static func ended(_ state: TaskState, message: String?) -> EventRecord {
        switch state {
        case .completed: return EventRecord(kind: .completed)
        case .cancelled: return .with(.cancelled, ["message": message.map(JSONValue.string) ?? .null])
        default: return .with(.error, ["message": message.map(JSONValue.string) ?? .null])
        }
    }

    /// A CTE body that stores `first` and `more` for each task row of the CTE `source`, whose
    /// rows carry the key columns and `events`, the task's event count once these are counted:
    /// they take the numbers `events - n + 1 … events`. The UPDATE that returned the count locked
    /// the task's row, so no other statement takes the same numbers.
    static func append(_ first: EventRecord, _ more: EventRecord..., from source: String) -> PostgresQuery {
        let events = [first] + more
        let selects = events.enumerated().map { index, event -> PostgresQuery in
            """
            SELECT s.tenant_id, s.user_id, s.session_id, s.task_id, s.events - \(events.count - 1 - index),
                   \(event.kind.rawValue), \(fragment: event.position), \(fragment: event.data)
            FROM \(unsafeSQL: source) s
            """
        }
        let union = selects.dropFirst().reduce(selects[0]) { "\(fragment: $0) UNION ALL \(fragment: $1)" }
        return """
            INSERT INTO task_events (\(unsafeSQL: TaskKey.taskColumns), seq, type, position, data)
            \(fragment: union)
            RETURNING 1
            """
    }

    /// The columns an UPDATE of `tasks` returns for `append`.
    static let returning = "tasks.tenant_id, tasks.user_id, tasks.session_id, tasks.task_id, tasks.events"
}

/// Reads tasks' stored events, for the event stream.
public struct EventStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// Stored events after `after` and where the task stands, read in one snapshot.
    public struct Page: Sendable {
        public var state: TaskState
        /// The process running the task (`tasks.lease_owner`), while it runs.
        public var runner: String?
        /// The task's latest seq.
        public var latest: Int
        /// The position of the turn's last stored message (-1 for none): text of it or of an
        /// earlier one is stale.
        public var lastPosition: Int
        /// At most `limit` events, in order.
        public var events: [TaskEvent]
    }

    /// Events `after + 1 …` (at most `limit`), or nil when the task does not exist. One statement.
    public func events(_ key: TaskKey, after: Int, limit: Int) async throws -> Page? {
        let after = max(0, after)
        let last = after + max(1, limit)
        let rows = try await pool.tenant(key.tenantID) { connection in
            try connection.query("""
                SELECT t.state, CASE WHEN t.state = 'running' THEN t.lease_owner END AS runner, t.events AS latest,
                       (SELECT coalesce(max(l.position), -1) FROM messages l WHERE \(unsafeSQL: TaskKey.sameTask("l", "t"))) AS last_position,
                       e.seq, e.type AS event_type, e.data, extract(epoch FROM e.created_at) AS created,
                       m.type, m.content, m.tool_calls, m.name, m.tool_call_id, e.position,
                       CASE WHEN e.type = 'task.completed' THEN t.result END AS result
                FROM tasks t
                LEFT JOIN task_events e
                  ON \(unsafeSQL: TaskKey.sameTask("e", "t")) AND e.seq > \(after) AND e.seq <= \(last)
                LEFT JOIN messages m
                  ON \(unsafeSQL: TaskKey.sameTask("m", "e")) AND m.position = e.position
                WHERE \(fragment: key.matchesTask("t"))
                ORDER BY e.seq
                """).rows
        }
        guard let first = rows.first else { return nil }
        var events: [TaskEvent] = []
        for row in rows {
            guard let seq = try row.decode("seq", as: Int?.self) else { continue }
            let type = try row.decode("event_type", as: String.self)
            guard let kind = TaskEvent.Kind(rawValue: type) else {
                throw PostgresError(code: .decoding, message: "unknown event type \(type)")
            }
            var fields = try JSONValue(parsing: try row.decode("data", as: PostgresJSON.self).bytes).objectValue ?? [:]
            if try row.decode("type", as: String?.self) != nil {
                fields["message"] = try StoreCoding.message(from: row).jsonValue
                fields["position"] = try row.decode("position", as: Int?.self).map { .number(Double($0)) } ?? .null
            }
            if kind == .completed {
                fields["result"] = try row.decode("result", as: PostgresJSON?.self).map { try JSONValue(parsing: $0.bytes) } ?? .null
            }
            events.append(TaskEvent(seq: seq, kind: kind, createdAt: try row.decode("created", as: Double.self), fields: fields))
        }
        return Page(
            state: TaskState(rawValue: try first.decode("state", as: String.self)) ?? .error,
            runner: try first.decode("runner", as: String?.self), latest: try first.decode("latest"),
            lastPosition: try first.decode("last_position"),
            events: events)
    }

    /// The latest seq of each of `keys` that exists, one statement per tenant among them: what
    /// a process's event streams poll to learn of steps committed by other processes.
    public func latest(_ keys: [TaskKey]) async throws -> [TaskKey: Int] {
        var found: [TaskKey: Int] = [:]
        for (tenant, keys) in Dictionary(grouping: keys, by: { Identifier($0.tenantID) }) {
            let tenant = tenant.text
            let rows = try await pool.tenant(tenant) { connection in
                try connection.query("""
                    SELECT t.user_id, t.session_id, t.task_id, t.events
                    FROM unnest(\(keys.map(\.userID))::text[], \(keys.map(\.sessionID))::text[], \(keys.map(\.taskID))::text[])
                         AS k(user_id, session_id, task_id)
                    JOIN tasks t
                      ON t.tenant_id = \(tenant) AND t.user_id = k.user_id AND t.session_id = k.session_id AND t.task_id = k.task_id
                    """).rows
            }
            for row in rows {
                let key = TaskKey(
                    tenantID: tenant, userID: try row.decode("user_id"), sessionID: try row.decode("session_id"), taskID: try row.decode("task_id"))
                found[key] = try row.decode("events")
            }
        }
        return found
    }
}
