import Postgres

/// Sessions: lists, the active one, the system summary, deletion.
public struct SessionStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    /// The user's sessions, oldest first.
    public func sessionIDs(tenantID: String, userID: String) async throws -> [String] {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                SELECT session_id FROM sessions WHERE tenant_id = \(tenantID) AND user_id = \(userID)
                ORDER BY created_at, session_id
                """).rows.map { try $0.decode("session_id", as: String.self) }
        }
    }

    /// The user's most recently updated session, if any.
    public func activeSessionID(tenantID: String, userID: String) async throws -> String? {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                SELECT session_id FROM sessions WHERE tenant_id = \(tenantID) AND user_id = \(userID)
                ORDER BY updated_at DESC, session_id LIMIT 1
                """).first?.decode("session_id", as: String.self)
        }
    }

    /// How many sessions there are and which users have them: in one tenant (or every
    /// tenant when `tenantID` is nil), for one user when `userID` is set.
    public func summary(tenantID: String?, userID: String?) async throws -> (sessions: Int, users: [String]) {
        let query: PostgresQuery = """
            SELECT user_id, count(*) AS sessions FROM sessions
            WHERE (\(tenantID)::text IS NULL OR tenant_id = \(tenantID)) AND (\(userID)::text IS NULL OR user_id = \(userID))
            GROUP BY user_id ORDER BY user_id
            """
        let rows: [PostgresRow]
        if let tenantID {
            rows = try await pool.tenant(tenantID) { try $0.query(query) }.rows
        } else {
            rows = try await pool.system { try $0.query(query) }.rows
        }
        var total = 0
        var users: [String] = []
        for row in rows {
            total += try row.decode("sessions", as: Int.self)
            users.append(try row.decode("user_id", as: String.self))
        }
        return (total, users)
    }

    /// Deletes the session with its tasks, messages, interrupts and tool calls.
    /// Returns false when there was no such session.
    public func delete(tenantID: String, userID: String, sessionID: String) async throws -> Bool {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                DELETE FROM sessions WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND session_id = \(sessionID)
                RETURNING 1 AS deleted
                """).count == 1
        }
    }
}
