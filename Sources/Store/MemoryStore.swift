import Foundation
import Postgres

/// Long-term memories, recalled by full-text search (see `agentd_search_*` in sql/001_core.sql).
public struct MemoryStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    /// Stores the memory once per user and text; writing the same text again returns the first id.
    public func write(tenantID: String, userID: String, text: String) async throws -> UUID {
        try await pool.withConnection { connection in
            if let id = try connection.query("""
                INSERT INTO memories (tenant_id, user_id, memory_info) VALUES (\(tenantID), \(userID), \(text))
                ON CONFLICT (tenant_id, user_id, md5(memory_info)) DO NOTHING
                RETURNING memory_id
                """).first?.decode("memory_id", as: UUID.self) {
                return id
            }
            guard let id = try connection.query("""
                SELECT memory_id FROM memories
                WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND md5(memory_info) = md5(\(text))
                """).first?.decode("memory_id", as: UUID.self)
            else { throw StoreConflict("the memory was deleted while it was being written") }
            return id
        }
    }

    /// The user's memories most relevant to `query`, best first (recency breaks ties); when the
    /// user has no more than `limit` memories, all of them.
    public func recall(tenantID: String, userID: String, query: String, limit: Int) async throws -> [String] {
        try await pool.query(Self.recallQuery(tenantID: tenantID, userID: userID, query: query, limit: limit))
            .rows.map { try $0.decode("memory_info", as: String.self) }
    }

    static func recallQuery(tenantID: String, userID: String, query: String, limit: Int) -> PostgresQuery {
        """
        WITH scored AS (
            SELECT memory_info, created_at, ts_rank_cd(search, agentd_search_query(\(query))) AS score,
                   count(*) OVER () AS total
            FROM memories WHERE tenant_id = \(tenantID) AND user_id = \(userID)
        )
        SELECT memory_info FROM scored
        WHERE total <= \(limit) OR score > 0
        ORDER BY score DESC, created_at DESC
        LIMIT \(limit)
        """
    }
}
