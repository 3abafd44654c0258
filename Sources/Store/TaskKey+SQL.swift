import AgentKit
import Postgres

/// The task key in SQL, written once: every statement names a task or a session through these
/// rather than spelling out the key columns. `alias` qualifies the columns (a table alias of
/// the statement's own text, never input).
extension TaskKey {
    /// `tenant_id = … AND user_id = … AND session_id = … AND task_id = …`
    func matchesTask(_ alias: String = "") -> PostgresQuery {
        let p = alias.isEmpty ? "" : alias + "."
        return "\(fragment: matchesSession(alias)) AND \(unsafeSQL: p)task_id = \(taskID)"
    }

    /// `tenant_id = … AND user_id = … AND session_id = …`: the task's session.
    func matchesSession(_ alias: String = "") -> PostgresQuery {
        let p = alias.isEmpty ? "" : alias + "."
        return "\(unsafeSQL: p)tenant_id = \(tenantID) AND \(unsafeSQL: p)user_id = \(userID) AND \(unsafeSQL: p)session_id = \(sessionID)"
    }

    /// The values of `tenant_id, user_id, session_id, task_id`, for a VALUES or SELECT list.
    var taskValues: PostgresQuery { "\(fragment: sessionValues), \(taskID)" }

    /// The values of `tenant_id, user_id, session_id`.
    var sessionValues: PostgresQuery { "\(tenantID), \(userID), \(sessionID)" }

    /// The session as one string that sorts (by its bytes) where the session's row locks sort
    /// within a tenant (`GroupCommit`).
    var sessionOrder: String { userID + "\u{0}" + sessionID }

    /// The column list that `taskValues` fills.
    static let taskColumns = "tenant_id, user_id, session_id, task_id"
}

extension TaskKey {
    /// `a.tenant_id = b.tenant_id AND … AND a.task_id = b.task_id`: two aliases name the same task.
    static func sameTask(_ a: String, _ b: String) -> String { sameSession(a, b) + " AND \(a).task_id = \(b).task_id" }

    /// `a.tenant_id = b.tenant_id AND a.user_id = b.user_id AND a.session_id = b.session_id`.
    static func sameSession(_ a: String, _ b: String) -> String {
        ["tenant_id", "user_id", "session_id"].map { "\(a).\($0) = \(b).\($0)" }.joined(separator: " AND ")
    }
}
