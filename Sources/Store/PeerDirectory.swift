import Postgres

/// Where each serving agentd process can be reached by the others (`agentd_peers`), for the
/// model's text of the tasks it runs.
public struct PeerDirectory: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    public struct Peer: Sendable, Equatable {
        public var url: String
        public var secret: String
    }

    /// How often a serving process says again that it serves: rows not refreshed for a day are
    /// of processes gone without saying so.
    public static let refreshInterval: Duration = .seconds(3600)

    /// This process (`owner`, as `tasks.lease_owner` names it) serves at `url`; at start and
    /// every `refreshInterval`. Rows of processes gone for a day are removed at the same time.
    public func register(owner: String, url: String, secret: String) async throws {
        try await pool.system { connection in
            try connection.query("""
                WITH gone AS (DELETE FROM agentd_peers WHERE seen_at < now() - interval '1 day' AND owner <> \(owner))
                INSERT INTO agentd_peers (owner, url, secret) VALUES (\(owner), \(url), \(secret))
                ON CONFLICT (owner) DO UPDATE SET url = excluded.url, secret = excluded.secret, seen_at = now()
                """)
        }
    }

    public func unregister(owner: String) async throws {
        try await pool.system { try $0.query("DELETE FROM agentd_peers WHERE owner = \(owner)") }
    }

    public func peer(_ owner: String) async throws -> Peer? {
        try await pool.system { connection in
            try connection.query("SELECT url, secret FROM agentd_peers WHERE owner = \(owner)").first.map { row in
                Peer(url: try row.decode("url"), secret: try row.decode("secret"))
            }
        }
    }
}
