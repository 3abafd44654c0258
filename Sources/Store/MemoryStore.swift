import AgentKit
import Foundation
import Postgres

/// One stored memory, with its relevance when it was found by a search.
public struct MemoryHit: Sendable, Hashable {
    public var id: UUID
    public var text: String
    /// Unix seconds.
    public var createdAt: Double
    /// `ts_rank_cd` against the query; nil when listed without one.
    public var score: Double?
}

/// Long-term memories, found by full-text search: `agentd_search_document` /
/// `agentd_search_query` in sql/001_core.sql tokenise Chinese into overlapping two-character
/// pieces and other text into English stems, for documents and queries alike.
public struct MemoryStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    /// Recall and search read this many Unicode scalars from the start of a query, and no more.
    /// An invoke's query may be 1 MiB; tokenising all of it at every task start held a pooled
    /// connection for seconds, and a tsquery of a million pieces finds nothing better than one
    /// of a thousand: what a query is about is in its opening, and the model sees all of it anyway.
    public static let searchedQueryScalars = 1_000

    static func searched(_ query: String) -> String {
        query.unicodeScalars.count <= searchedQueryScalars
            ? query : String(String.UnicodeScalarView(query.unicodeScalars.prefix(searchedQueryScalars)))
    }

    /// Stores the memory once per user and text; writing the same text again returns the first id.
    public func write(tenantID: String, userID: String, text: String) async throws -> UUID {
        try await pool.tenant(tenantID) { connection in
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

    /// What the agent sees: the user's memories most relevant to `query`, best first (recency
    /// breaks ties). When the user has no more than `limit` memories, all of them, since then
    /// nothing needs choosing.
    public func recall(tenantID: String, userID: String, query: String, limit: Int) async throws -> [MemoryHit] {
        guard let statement = Self.recallStatement(tenantID: tenantID, userID: userID, query: query, limit: limit) else { return [] }
        return try await hits(tenantID, statement)
    }

    /// `recall`'s statement (nil: nothing to recall), for a caller that sends it with others.
    static func recallStatement(tenantID: String, userID: String, query: String, limit: Int) -> PostgresQuery? {
        guard limit > 0 else { return nil }
        let query = Self.searched(query)
        // Two branches behind one-time filters: "all of them" reads the user's few rows; the
        // search reads only matching rows through the (tenant_id, user_id, search) GIN index.
        return """
            WITH search AS (SELECT agentd_search_query(\(query)) AS q),
                 few AS (SELECT count(*) <= \(limit) AS all_fit
                         FROM (SELECT 1 FROM memories WHERE tenant_id = \(tenantID) AND user_id = \(userID) LIMIT \(limit + 1)) AS s)
            SELECT memory_id, memory_info, extract(epoch FROM created_at) AS created, score FROM (
                SELECT m.memory_id, m.memory_info, m.created_at, ts_rank_cd(m.search, search.q) AS score
                FROM memories m, search
                WHERE m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND (SELECT all_fit FROM few)
                UNION ALL
                SELECT m.memory_id, m.memory_info, m.created_at, ts_rank_cd(m.search, search.q) AS score
                FROM memories m, search
                WHERE m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND NOT (SELECT all_fit FROM few)
                  AND m.search @@ search.q
            ) AS hits
            ORDER BY score DESC, created_at DESC
            LIMIT \(limit)
            """
    }

    /// The user's memories that match `query`, best first.
    public func search(tenantID: String, userID: String, query: String, limit: Int) async throws -> [MemoryHit] {
        let query = Self.searched(query)
        return try await hits(tenantID, """
            WITH search AS (SELECT agentd_search_query(\(query)) AS q)
            SELECT m.memory_id, m.memory_info, extract(epoch FROM m.created_at) AS created, ts_rank_cd(m.search, search.q) AS score
            FROM memories m, search
            WHERE m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND m.search @@ search.q
            ORDER BY score DESC, m.created_at DESC
            LIMIT \(limit)
            """)
    }

    /// The user's memories, newest first.
    public func list(tenantID: String, userID: String, limit: Int) async throws -> [MemoryHit] {
        try await hits(tenantID, """
            SELECT memory_id, memory_info, extract(epoch FROM created_at) AS created, NULL::float8 AS score
            FROM memories WHERE tenant_id = \(tenantID) AND user_id = \(userID)
            ORDER BY created_at DESC, memory_id
            LIMIT \(limit)
            """)
    }

    /// Deletes one memory; false when the user has no such memory.
    public func delete(tenantID: String, userID: String, memoryID: UUID) async throws -> Bool {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                DELETE FROM memories WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND memory_id = \(memoryID)
                RETURNING 1 AS deleted
                """).count == 1
        }
    }

    private func hits(_ tenantID: String, _ query: PostgresQuery) async throws -> [MemoryHit] {
        try Self.hits(in: try await pool.tenant(tenantID) { try $0.query(query) })
    }

    static func hits(in result: PostgresResult) throws -> [MemoryHit] {
        try result.rows.map { row in
            MemoryHit(
                id: try row.decode("memory_id"), text: try row.decode("memory_info"), createdAt: try row.decode("created"),
                score: try row.decode("score", as: Double?.self))
        }
    }
}

extension MemoryStore: MemoryRecall {
    public func recalledMemories(tenantID: String, userID: String, query: String, limit: Int) async throws -> [String] {
        try await recall(tenantID: tenantID, userID: userID, query: query, limit: limit).map(\.text)
    }
}
