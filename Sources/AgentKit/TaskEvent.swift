/// One event of a task's stream (`GET /agent/events/...`). Stored events have a `seq` (per task,
/// from 1, gap-free) and are replayable for as long as the task exists; `message.delta` is live
/// only and has none.
public struct TaskEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case queued = "task.queued"
        /// A worker claimed the task (`attempt`).
        case running = "task.running"
        /// A whole model message with its tool calls (`message`).
        case message
        /// A tool's answer (`message`, `status`).
        case toolResult = "tool.result"
        /// The task waits for a human (`interrupt_data`, as the status shows it).
        case interrupt
        /// The human's answer (`tool_call_id`, `response_type`, `args`).
        case decision
        case completed = "task.completed"
        case error = "task.error"
        case cancelled = "task.cancelled"
        /// Text as the model writes it (`content`); never stored, always followed by a `message`.
        case messageDelta = "message.delta"
    }

    /// Nil for live-only events.
    public var seq: Int?
    public var kind: Kind
    /// Seconds since 1970, as `last_updated` in the status.
    public var createdAt: Double
    /// The type's own fields.
    public var fields: [String: JSONValue]

    public init(seq: Int?, kind: Kind, createdAt: Double, fields: [String: JSONValue]) {
        self.seq = seq
        self.kind = kind
        self.createdAt = createdAt
        self.fields = fields
    }

    /// The event's `data:` object: the type's fields and the common ones.
    public func json(for key: TaskKey) -> JSONValue {
        var object = fields
        if let seq { object["seq"] = .number(Double(seq)) }
        object["type"] = .string(kind.rawValue)
        object["user_id"] = .string(key.userID)
        object["session_id"] = .string(key.sessionID)
        object["task_id"] = .string(key.taskID)
        object["created_at"] = .number(createdAt)
        return .object(object)
    }
}
