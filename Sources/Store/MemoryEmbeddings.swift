import AgentKit
import Foundation
import Postgres

/// The semantic pass's queue (sql/021): memories whose vectors are due, claimed across tenants
/// by any process's `MemoryEmbedder`, and the vectors (or the failure) stored back.
extension MemoryStore {
    /// One memory waiting for its vector.
    public struct EmbeddingJob: Sendable {
        public var tenantID: String
        public var userID: String
        public var memoryID: UUID
        public var text: String
        /// Attempts so far, this one included.
        public var attempt: Int
    }

    /// Sent with a write that queued a vector: embedders wake.
    static let notifyToEmbed: PostgresQuery = "SELECT pg_notify(\(Notifier.Channel.memories.rawValue), '')"

    /// Puts in the queue what has no vector of `model`: memories written while embeddings were
    /// off, and vectors of another model. Runs when an embedder starts; `limit` rows at a time,
    /// returns how many it queued.
    public func queueMissingEmbeddings(model: String, limit: Int = 10_000) async throws -> Int {
        try await pool.system { connection in
            try connection.query("""
                UPDATE memories SET embedding_due = now(), embedding_attempts = 0
                WHERE ctid = ANY (ARRAY(
                    SELECT ctid FROM memories
                    WHERE embedding_due IS NULL AND (embedding IS NULL OR embedding_model IS DISTINCT FROM \(model))
                    LIMIT \(limit)))
                """).affectedRows
        }
    }

    /// Claims up to `limit` due memories for `lease` (another process retries them after it).
    public func claimEmbeddings(limit: Int, lease: Duration) async throws -> [EmbeddingJob] {
        try await pool.system { connection in
            try connection.query("""
                WITH due AS (
                    SELECT tenant_id, user_id, memory_id FROM memories
                    WHERE embedding_due IS NOT NULL AND embedding_due <= now()
                    ORDER BY embedding_due
                    LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE memories m SET embedding_due = now() + make_interval(secs => \(lease.seconds)),
                                      embedding_attempts = m.embedding_attempts + 1
                FROM due
                WHERE m.tenant_id = due.tenant_id AND m.user_id = due.user_id AND m.memory_id = due.memory_id
                RETURNING m.tenant_id, m.user_id, m.memory_id, m.memory_info, m.embedding_attempts
                """).rows.map { row in
                EmbeddingJob(
                    tenantID: try row.decode("tenant_id"), userID: try row.decode("user_id"), memoryID: try row.decode("memory_id"),
                    text: try row.decode("memory_info"), attempt: try row.decode("embedding_attempts"))
            }
        }
    }

    /// Stores a claimed memory's vector, unless its text changed meanwhile (a rewrite queued it again).
    public func storeEmbedding(_ job: EmbeddingJob, vector: [Float], model: String) async throws {
        let literal = SemanticQuery.literal(vector)
        try await pool.tenant(job.tenantID) { connection in
            try connection.query("""
                UPDATE memories SET embedding = \(literal)::real[], embedding_model = \(model), embedding_due = NULL, embedding_error = NULL
                WHERE tenant_id = \(job.tenantID) AND user_id = \(job.userID) AND memory_id = \(job.memoryID)
                  AND memory_info = \(job.text)
                """)
        }
    }

    /// Records a failed attempt; the memory is due again after `retryAfter`.
    public func failEmbedding(_ job: EmbeddingJob, error: String, retryAfter: Duration) async throws {
        try await pool.tenant(job.tenantID) { connection in
            try connection.query("""
                UPDATE memories SET embedding_due = now() + make_interval(secs => \(retryAfter.seconds)), embedding_error = \(String(error.prefix(500)))
                WHERE tenant_id = \(job.tenantID) AND user_id = \(job.userID) AND memory_id = \(job.memoryID)
                  AND memory_info = \(job.text)
                """)
        }
    }

    /// Memories queued for their vectors.
    public func embeddingsWaiting() async throws -> Int {
        try await pool.system { connection in
            try connection.query("SELECT count(*) AS n FROM memories WHERE embedding_due IS NOT NULL").first?.decode("n", as: Int.self) ?? 0
        }
    }

    /// Seconds until the next memory is due by the database's clock (which set the due times),
    /// if any is queued; at most 0 when one is due now.
    public func secondsUntilNextEmbedding() async throws -> Double? {
        try await pool.system { connection in
            try connection.query("""
                SELECT extract(epoch FROM min(embedding_due) - clock_timestamp())::float8 AS seconds FROM memories WHERE embedding_due IS NOT NULL
                """).first?.decode("seconds", as: Double?.self)
        }
    }
}
