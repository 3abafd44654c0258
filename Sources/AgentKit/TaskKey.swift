/// Identifies one task. Tenant first, as in every key of the schema.
public struct TaskKey: Sendable, Hashable, CustomStringConvertible {
    public var tenantID: String
    public var userID: String
    public var sessionID: String
    public var taskID: String

    public init(tenantID: String, userID: String, sessionID: String, taskID: String) {
        self.tenantID = tenantID
        self.userID = userID
        self.sessionID = sessionID
        self.taskID = taskID
    }

    public var description: String { "\(tenantID)/\(userID)/\(sessionID)/\(taskID)" }

    /// Exact, as every id is compared (see `Identifier`): look-alike keys are two tasks.
    public static func == (a: TaskKey, b: TaskKey) -> Bool {
        Identifier.same(a.tenantID, b.tenantID) && Identifier.same(a.userID, b.userID)
            && Identifier.same(a.sessionID, b.sessionID) && Identifier.same(a.taskID, b.taskID)
    }

    public func hash(into hasher: inout Hasher) {
        for id in [tenantID, userID, sessionID, taskID] { Identifier.hash(id, into: &hasher) }
    }
}

/// The states of a task (the `tasks.state` column).
public enum TaskState: String, Sendable, CaseIterable {
    case queued, running, interrupted, completed, error, cancelled
}
