import AgentKit
import Foundation
import Postgres
import Synchronization

/// One stored memory, with its relevance when it was found by a search.
public struct MemoryHit: Sendable, Hashable {
    public var id: UUID
    public var text: String
    /// Unix seconds.
    public var createdAt: Double
    /// Its BM25 score against the query (README, "Long-term memory"); nil when listed without one.
    public var score: Double?
    /// The share of the weight of the query's words it could be about that it holds (with a
    /// score; `Ranking.minimumShare`).
    public var coverage: Double? = nil
}

/// Long-term memories, found by full-text search and ranked by BM25 over each user's own
/// memories: sql/019's `agentd_search_text` folds both scripts (full-width, traditional Chinese)
/// and splits Chinese into characters and overlapping two-character pieces and other text into
/// English stems, for memories and queries alike; its tables keep each user's term statistics
/// and the synonym groups.
public struct MemoryStore: Sendable {
    let pool: PostgresPool
    /// A write that restates an older memory with a new value replaces it (`restated`).
    let replacesRestatements: Bool
    /// The optional semantic pass (`EMBEDDINGS_BASE_URL`); nil: words only.
    let semantic: Semantic?

    /// Vectors for memories and queries, and how near they must be (they depend on the model).
    public struct Semantic: Sendable {
        public var embedder: any TextEmbedder
        /// A memory the words did not find is recalled from this cosine with the query up.
        public var minimumSimilarity: Double
        /// A memory the words found must be at least this near the query too.
        public var supportingSimilarity: Double
        /// Told when the query's vector could not be made (recall goes on with words only).
        public var onFailure: @Sendable (any Error) -> Void
        /// Set after a failure: until it ends, recall asks for no vector.
        let paused = Pause()
        static let pause: Duration = .seconds(30)

        final class Pause: Sendable {
            private let until = Mutex<ContinuousClock.Instant?>(nil)
            var active: Bool { until.withLock { $0.map { ContinuousClock.now < $0 } ?? false } }
            func start(for duration: Duration) { until.withLock { $0 = .now + duration } }
        }

        public init(
            embedder: any TextEmbedder, minimumSimilarity: Double, supportingSimilarity: Double,
            onFailure: @escaping @Sendable (any Error) -> Void = { _ in }
        ) {
            self.embedder = embedder
            self.minimumSimilarity = minimumSimilarity
            self.supportingSimilarity = supportingSimilarity
            self.onFailure = onFailure
        }
    }

    public init(pool: PostgresPool, replacesRestatements: Bool = true, semantic: Semantic? = nil, ranking: Ranking = Ranking()) {
        self.pool = pool
        self.replacesRestatements = replacesRestatements
        self.semantic = semantic
        self.ranking = ranking
    }

    /// The query's vector when the semantic pass is on and the embeddings server answers. After
    /// a failure the pass is left out for `Semantic.pause`, so that a server that is down does
    /// not add its timeout to every task's start.
    func semanticQuery(_ query: String) async -> SemanticQuery? {
        guard let semantic, !query.isEmpty, !semantic.paused.active else { return nil }
        do {
            guard let vector = try await semantic.embedder.embed([Self.searched(query)], for: .query).first else { return nil }
            return SemanticQuery(
                vector: vector, model: semantic.embedder.model, minimumSimilarity: semantic.minimumSimilarity,
                supportingSimilarity: semantic.supportingSimilarity)
        } catch {
            if !(error is CancellationError) {
                semantic.paused.start(for: Semantic.pause)
                semantic.onFailure(error)
            }
            return nil
        }
    }

    /// Recall and search read this many Unicode scalars from the start of a query, and no more.
    /// An invoke's query may be 1 MiB; tokenising all of it at every task start held a pooled
    /// connection for seconds, and a tsquery of a million pieces finds nothing better than one
    /// of a thousand: what a query is about is in its opening, and the model sees all of it anyway.
    public static let searchedQueryScalars = 1_000

    static func searched(_ query: String) -> String {
        query.unicodeScalars.count <= searchedQueryScalars
            ? query : String(String.UnicodeScalarView(query.unicodeScalars.prefix(searchedQueryScalars)))
    }

    /// What a write did.
    public struct Written: Sendable, Equatable {
        /// The memory that holds the text: new, or the current one that already held it.
        public var id: UUID
        /// The memory it replaced: the one named by `replaces`, or an older one it restates with
        /// a new value (`automaticReplacement`).
        public var replaced: UUID?
    }

    /// Why a write or a rewrite did not happen.
    public enum UpdateRefusal: Error, Sendable, Equatable {
        /// No such memory of the user.
        case notFound(UUID)
        /// That memory was replaced already, by this one.
        case superseded(UUID, by: UUID)
        /// Another current memory of the user holds that text.
        case duplicate(of: UUID)
    }

    /// Stores the memory once per user and text among the current ones (writing the same text
    /// again returns that memory). With `replaces`, that current memory of the user is marked
    /// replaced by this one; without, an older memory this one restates with a new value is
    /// (`automaticReplacement`), unless the store was made without `replacesRestatements`.
    public func write(tenantID: String, userID: String, text: String, replaces: UUID? = nil) async throws -> Written {
        let automatic = replacesRestatements
        let embeds = semantic != nil
        // An UpdateRefusal thrown inside rolls the transaction back and reaches the caller as it is.
        return try await pool.tenantTransaction(tenantID) { connection in
            if let replaces {
                // Locked first, so that two writes replacing it cannot both succeed.
                guard let row = try connection.query("""
                    SELECT superseded_by FROM memories
                    WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND memory_id = \(replaces)
                    FOR UPDATE
                    """).first
                else { throw UpdateRefusal.notFound(replaces) }
                if let newer = try row.decode("superseded_by", as: UUID?.self) { throw UpdateRefusal.superseded(replaces, by: newer) }
            }
            let inserted = try connection.query("""
                INSERT INTO memories (tenant_id, user_id, memory_info, embedding_due)
                VALUES (\(tenantID), \(userID), \(text), CASE WHEN \(embeds) THEN now() END)
                ON CONFLICT (tenant_id, user_id, md5(memory_info)) WHERE superseded_by IS NULL DO NOTHING
                RETURNING memory_id
                """).first?.decode("memory_id", as: UUID.self)
            if inserted != nil, embeds { try connection.query(Self.notifyToEmbed) }
            let id: UUID
            if let inserted {
                id = inserted
            } else {
                // Locked: a concurrent write cannot replace it before this one is answered.
                guard let existing = try connection.query("""
                    SELECT memory_id FROM memories
                    WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND md5(memory_info) = md5(\(text)) AND superseded_by IS NULL
                    FOR UPDATE
                    """).first?.decode("memory_id", as: UUID.self)
                else { throw StoreConflict("the memory was deleted while it was being written") }
                id = existing
            }
            var target = replaces
            if target == nil, automatic, inserted != nil {
                target = try Self.restated(by: id, tenantID: tenantID, userID: userID, on: connection)
            }
            guard let target, target != id else { return Written(id: id, replaced: nil) }
            // The memory replaced, and those it had replaced (they point to the current one). It
            // is named as replaced only if this statement replaced it: a concurrent write may
            // have been first (the rows are locked here until the commit).
            let replaced = try connection.query("""
                UPDATE memories SET superseded_by = \(id), superseded_at = coalesce(superseded_at, now())
                WHERE tenant_id = \(tenantID) AND user_id = \(userID)
                  AND ((memory_id = \(target) AND superseded_by IS NULL) OR superseded_by = \(target))
                RETURNING memory_id
                """).rows.contains { (try? $0.decode("memory_id", as: UUID.self)) == target }
            return Written(id: id, replaced: replaced ? target : nil)
        }
    }

    /// When a memory gives a new value for a fact an older memory states, the older one is
    /// replaced by itself, but only with high confidence (README, "Memories that change"): the new
    /// one says something changed (`updateCue`) and both hold a number, and the terms they share
    /// weigh at least `shared` (BM25's rarity among the user's memories) and at least `overlap`
    /// of all their terms' weight (single Chinese characters left out). On the hard set this
    /// caught 13 of the 51 updates and merged none of the other pairs.
    public struct AutomaticReplacement: Sendable {
        public var shared = 4.0
        public var overlap = 0.12
    }

    public static let automaticReplacement = AutomaticReplacement()

    /// The older current memory that `id` restates with a new value, if any.
    static func restated(by id: UUID, tenantID: String, userID: String, on connection: PostgresConnection) throws -> UUID? {
        let rule = automaticReplacement
        return try connection.query("""
            WITH new AS (
                SELECT memory_id, memory_info, created_at,
                       ARRAY(SELECT l FROM unnest(tsvector_to_array(search)) AS l WHERE l !~ \(singleCharacter)) AS lexemes
                FROM memories
                WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND memory_id = \(id)
                  AND memory_info ~* \(updateCue) AND memory_info ~ '[0-9０-９]'
            ), st AS (
                SELECT memories AS n FROM memory_users WHERE tenant_id = \(tenantID) AND user_id = \(userID)
            ), older AS (
                SELECT m.memory_id,
                       ARRAY(SELECT l FROM unnest(tsvector_to_array(m.search)) AS l WHERE l !~ \(singleCharacter)) AS lexemes
                FROM memories m, new
                WHERE m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND m.memory_id <> new.memory_id
                  AND m.superseded_by IS NULL AND m.created_at <= new.created_at AND m.memory_info ~ '[0-9０-９]'
                  AND m.search @@ agentd_any_lexeme(new.lexemes)
                LIMIT 200
            ), weighed AS (
                SELECT o.memory_id,
                       sum(w.idf) FILTER (WHERE w.lexeme = ANY (o.lexemes) AND w.lexeme = ANY (new.lexemes)) AS shared,
                       sum(w.idf) AS total
                FROM older o, new, st,
                     LATERAL (
                         SELECT u.lexeme, ln(1 + (st.n - coalesce(t.memories, 0) + 0.5) / (coalesce(t.memories, 0) + 0.5)) AS idf
                         FROM (SELECT unnest(o.lexemes) UNION SELECT unnest(new.lexemes)) AS u(lexeme)
                         LEFT JOIN memory_terms t ON t.tenant_id = \(tenantID) AND t.user_id = \(userID) AND t.lexeme = u.lexeme
                     ) AS w
                GROUP BY o.memory_id
            )
            SELECT memory_id FROM weighed
            WHERE shared >= \(rule.shared) AND shared >= \(rule.overlap) * total
            ORDER BY shared / total DESC, memory_id
            LIMIT 1
            """).first?.decode("memory_id", as: UUID.self)
    }

    /// Rewrites a current memory's text in place (`PUT /agent/memory/{user_id}/{memory_id}`): the
    /// earlier text goes to `memory_history`. Returns the new version (the same, when unchanged).
    public func rewrite(tenantID: String, userID: String, memoryID: UUID, text: String) async throws -> Int {
        let embeds = semantic != nil
        return try await pool.tenantTransaction(tenantID) { connection in
            guard let row = try connection.query("""
                SELECT memory_info, version, superseded_by FROM memories
                WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND memory_id = \(memoryID)
                FOR UPDATE
                """).first
            else { throw UpdateRefusal.notFound(memoryID) }
            if let newer = try row.decode("superseded_by", as: UUID?.self) { throw UpdateRefusal.superseded(memoryID, by: newer) }
            let version: Int = try row.decode("version")
            guard try row.decode("memory_info", as: String.self) != text else { return version }
            if let other = try connection.query("""
                SELECT memory_id FROM memories
                WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND md5(memory_info) = md5(\(text)) AND superseded_by IS NULL
                """).first?.decode("memory_id", as: UUID.self) {
                throw UpdateRefusal.duplicate(of: other)
            }
            try connection.query("""
                INSERT INTO memory_history (tenant_id, user_id, memory_id, version, memory_info, written_at)
                SELECT tenant_id, user_id, memory_id, version, memory_info, coalesce(updated_at, created_at) FROM memories
                WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND memory_id = \(memoryID)
                """)
            // The vector described the old text: a new one is due (or none, without embeddings).
            let rewritten = try connection.query("""
                UPDATE memories SET memory_info = \(text), version = version + 1, updated_at = now(),
                    embedding = NULL, embedding_model = NULL, embedding_attempts = 0, embedding_error = NULL,
                    embedding_due = CASE WHEN \(embeds) THEN now() END
                WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND memory_id = \(memoryID)
                RETURNING version
                """).first?.decode("version", as: Int.self) ?? version + 1
            if embeds { try connection.query(Self.notifyToEmbed) }
            return rewritten
        }
    }

    /// What the agent sees: the user's memories most relevant to `query`, best first (recency
    /// breaks ties), and only those with enough evidence: a query about nothing the user wrote
    /// recalls nothing. When the user has no more than `limit` memories, all of them, since then
    /// nothing needs choosing.
    public func recall(tenantID: String, userID: String, query: String, limit: Int) async throws -> [MemoryHit] {
        guard let statement = await recallStatement(tenantID: tenantID, userID: userID, query: query, limit: limit) else { return [] }
        return try await hits(tenantID, statement)
    }

    /// `recall`'s statement (nil: nothing to recall), for a caller that sends it with others;
    /// with the semantic pass, the query's vector is made first.
    func recallStatement(tenantID: String, userID: String, query: String, limit: Int) async -> PostgresQuery? {
        guard limit > 0 else { return nil }
        return Self.rankedStatement(
            tenantID: tenantID, userID: userID, query: query, limit: limit, mode: .recall, semantic: await semanticQuery(query), ranking: ranking)
    }

    /// The user's memories that match `query` with the minimum evidence, best first, each with
    /// its score: what recall would give, without "all of them" for a user with few.
    public func search(tenantID: String, userID: String, query: String, limit: Int) async throws -> [MemoryHit] {
        guard limit > 0 else { return [] }
        let semantic = await semanticQuery(query)
        return try await hits(
            tenantID, Self.rankedStatement(tenantID: tenantID, userID: userID, query: query, limit: limit, mode: .search, semantic: semantic, ranking: ranking))
    }

    /// What recall's ranking reads for `query` (for tuning it: `agentd-bench memory --explain`),
    /// as JSON: the user's number of memories; the query's terms kept (weight, rarity among the
    /// user's memories, single character or not); its words in order (Zipf figure, weight,
    /// whether the user's memories hold them, a near spelling or a synonym); the weight none
    /// holds; and every candidate, best first (the words' 20 best and the vectors' nearest), each
    /// with its ranking score, BM25 score, coverage, matched terms, and whether it has recall's
    /// evidence: those that have it are what `search` gives, in its order. Nil for a user
    /// without memories.
    public func explainRecall(tenantID: String, userID: String, query: String) async throws -> String? {
        let statement = Self.rankedStatement(
            tenantID: tenantID, userID: userID, query: query, limit: 1, mode: .explain, semantic: await semanticQuery(query), ranking: ranking)
        return try await pool.tenant(tenantID) { try $0.query(statement) }.first?.decode("explanation", as: String?.self)
    }

    /// How recall ranks (README, "Long-term memory"): BM25 over the user's own memories.
    public struct Ranking: Sendable {
        /// BM25's saturation of a term repeated in one memory, and its correction for length.
        public var k1 = 1.2
        public var b = 0.75
        /// A query term that is a single CJK character counts this much of a two-character piece
        /// or a word: it is often part of a longer word in one text and not in the other.
        public var characterWeight = 0.5
        /// A term that a synonym group gives for the query's own.
        public var synonymWeight = 0.85
        /// A word of the user's that is spelt like a query word the user never wrote (a typo, an
        /// inflection the stemmer leaves apart), by trigram similarity from `minimumSimilarity`.
        public var similarWeight = 0.85
        public var minimumSimilarity = 0.45
        /// The query's most distinctive terms kept (by weight × rarity), and the memories that
        /// hold any of them read at most: the work per recall is bounded whatever the query's length.
        public var maximumTerms = 24
        public var maximumCandidates = 300
        /// Memories the semantic pass ranks by their vectors, at most, and what its ranking weighs
        /// in the fusion against the words' (reciprocal rank fusion, each rank r as
        /// 1 / (`fusionRank` + r)). A small constant and half the weight keep a strong match of
        /// words first: with the usual 60 and equal weights, any memory near the top of both
        /// lists outranked the words' first, and recall@5 fell from 0.77 to 0.71 on the hard set.
        public var semanticCandidates = 20
        public var semanticWeight = 0.5
        public var fusionRank = 10.0
        /// A memory that says a fact changed is ranked by its vector as if nearer by this share of
        /// the spread between the user's nearest memory and their mean (a model's cosines crowd in
        /// a band of its own: 0.1–0.5 for one, 0.75–0.9 for another): the older memory it updates
        /// is as near the query, or nearer, since it says the subject plainly.
        public var semanticUpdateLift = 0.3
        /// The minimum evidence (`MEMORY_MIN_SHARE`): a memory is recalled when it holds this
        /// share of the weight of the query's words that the user's memories can explain: the
        /// words it holds, and those that none of them holds (as itself, a synonym or a near
        /// spelling), the latter divided by the query's number of words to `lengthPower` (a long
        /// message says much that no memory is about). Or when its score by words and pieces
        /// (single characters aside) reaches `strongScore`.
        /// Higher keeps more queries that no memory answers from recalling anything, at a cost
        /// in recall (BENCHMARKS.md, "Issue 19, sixth look": the curve on the hard set).
        public var minimumShare = 0.4
        public var lengthPower = 0.75
        public var strongScore = 8.0
        /// How common a term is in the language (Zipf, sql/022's `agentd_general_zipf`): from
        /// `specificZipf` down it weighs fully, from `commonZipf` up `leastGenerality`, linearly
        /// between. A word everybody writes is weak evidence, however rare among the user's memories.
        public var specificZipf = 4.0
        public var commonZipf = 7.0
        public var leastGenerality = 0.15
        /// A newer memory that says something changed is put above an older one on the same
        /// subject (this share of the query's weight they match in common) when its score is
        /// at least this share of the older one's.
        public var updateShare = 0.25
        public var updateOverlap = 0.2

        public init() {}
    }

    public let ranking: Ranking

    /// The query's vector for the semantic pass, and how near a memory's must be.
    struct SemanticQuery: Sendable {
        var vector: [Float]
        var model: String
        /// A memory the words did not find is recalled from this cosine up.
        var minimumSimilarity: Double
        /// A memory the words found must be at least this near too.
        var supportingSimilarity: Double

        /// `{0.1,-0.2,…}`, the text of a real[] (each Float written so that it reads back the same).
        var vectorLiteral: String { Self.literal(vector) }

        static func literal(_ vector: [Float]) -> String { "{" + vector.map { $0.isFinite ? "\($0)" : "0" }.joined(separator: ",") + "}" }
    }

    /// Words that say a fact changed, in Chinese (simplified and traditional) and English.
    static let updateCue =
        "(换|換|改|调|調|搬|涨|漲|升|降|不再|以后|以後|现在|現在|停了|新的|新号|新號|新地址|新老板|新老闆|"
        + "\\m(now|new|moved|switched|changed|raised|instead|replaced|updated|no longer|taken over|goes up|from next|took over)\\M)"

    /// How much a term weighs for how common it is in the language, given its Zipf figure (an
    /// SQL expression; NULL, unknown to the lists, weighs fully).
    static func generality(_ zipf: String, _ r: Ranking) -> PostgresQuery {
        // The span floored: equal bounds make a step, not a division by zero.
        """
        least(1, greatest(\(r.leastGenerality)::float8, (\(r.commonZipf)::float8 - coalesce(\(fragment: PostgresQuery(unsafeSQL: zipf)), 0))
                          / \(max(r.commonZipf - r.specificZipf, 0.001))::float8))
        """
    }

    /// A term that is one CJK character (Chinese, kana, hangul), and one that is two.
    static let cjkCharacter = "[\\u3400-\\u4dbf\\u4e00-\\u9fff\\uf900-\\ufaff\\u3040-\\u30ff\\uac00-\\ud7af]"
    static let singleCharacter = "^\(cjkCharacter)$"
    static let cjkPiece = "^\(cjkCharacter){2}$"

    enum RankingMode {
        /// The agent's context: minimum evidence, or every memory of a user who has no more than the limit.
        case recall
        /// Minimum evidence only.
        case search
        /// What the ranking read, as one JSON text, every candidate in it (`explainRecall`).
        case explain
    }

    /// One statement: the query's terms (folded and split as documents are) that the user's
    /// memories hold, with their rarity among them; the terms synonym groups give for the query's
    /// (shipped and the tenant's); for an English word the user never wrote, the user's words that
    /// are spelt like it (pg_trgm); the most distinctive of all these; the memories that hold any
    /// of them; and each memory's BM25 score over them.
    static func rankedStatement(
        tenantID: String, userID: String, query: String, limit: Int, mode: RankingMode, semantic: SemanticQuery? = nil,
        ranking r: Ranking = Ranking()
    ) -> PostgresQuery {
        let query = Self.searched(query)
        // Every memory of a user who has no more than the limit (recall only): a one-time filter.
        let everything: PostgresQuery = mode == .recall ? "(SELECT n FROM st) <= \(limit)" : "false"
        let result: PostgresQuery =
            mode == .explain
            ? """
            SELECT json_build_object(
                'memories', (SELECT n FROM st),
                'terms', (SELECT json_agg(json_build_object('lexeme', lexeme, 'weight', weight, 'idf', idf, 'single', single) ORDER BY place) FROM ranked),
                'words', (SELECT json_agg(json_build_object('lexeme', lexeme, 'zipf', zipf, 'word', word, 'weight', weight, 'held', held,
                                                            'spelt_like', spelt_like, 'by_synonym', by_synonym) ORDER BY lexeme) FROM words),
                'unexplained', (SELECT weight FROM unexplained),
                'candidates', (
                    SELECT json_agg(json_build_object(
                               'memory_id', f.memory_id, 'created_at', extract(epoch FROM f.created_at), 'score', f.score,
                               'lexical_score', x.score, 'coverage', f.coverage, 'matched', x.matched, 'worded', x.worded,
                               'strong', x.strong, 'evident', f.evident)
                           ORDER BY f.score DESC, f.created_at DESC)
                    FROM fused f
                    LEFT JOIN scored x ON x.memory_id = f.memory_id)
            )::text AS explanation
            WHERE EXISTS (SELECT 1 FROM st)
            """
            : """
            SELECT memory_id, memory_info, extract(epoch FROM created_at) AS created, score, coverage
            FROM pool
            ORDER BY score DESC, created_at DESC
            LIMIT \(limit)
            """
        // Evidence (`Ranking.minimumShare`): more than single characters, and either enough of the
        // query's words or a strong match by words; with the semantic pass, also a vector not far
        // from the query's.
        var lexicalEvidence: PostgresQuery = """
            l.worded AND (l.coverage >= \(r.minimumShare) OR l.strong)
            """
        // The user's memories nearest the query by their vectors (the newest 2,000 with a vector
        // of the same model: the pass is bounded per user), ranked; fused with the lexical
        // ranking by reciprocal rank (`Ranking.fusionRank`, `semanticWeight`).
        let nearest: PostgresQuery
        let supported: PostgresQuery
        let fusedScore: PostgresQuery
        var semanticEvidence: PostgresQuery = "false"
        if let semantic {
            // The vectors of the memories the words found, nearest or not (a memory without a
            // vector yet counts as near: no evidence against it).
            supported = """
                SELECT l.memory_id, agentd_dot(m.embedding, \(semantic.vectorLiteral)::real[]) AS similarity
                FROM lifted l
                JOIN memories m ON m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND m.memory_id = l.memory_id
                                AND m.embedding_model = \(semantic.model)
                """
            nearest = """
                SELECT y.memory_id, m.memory_info, y.created_at, y.similarity,
                       row_number() OVER (
                           ORDER BY y.similarity + CASE WHEN m.memory_info ~* \(Self.updateCue) THEN \(r.semanticUpdateLift) * y.spread ELSE 0 END DESC,
                                    y.created_at DESC) AS place
                FROM (
                    -- Narrow rows through the window; the texts (and the cue read on them: a pattern
                    -- over 2,000 texts cost 40 ms) for the nearest few only.
                    SELECT x.memory_id, x.created_at, x.similarity, max(x.similarity) OVER () - avg(x.similarity) OVER () AS spread
                    FROM (
                        SELECT v.memory_id, v.created_at, agentd_dot(v.embedding, \(semantic.vectorLiteral)::real[]) AS similarity
                        FROM (
                            SELECT memory_id, created_at, embedding FROM memories
                            WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND superseded_by IS NULL
                              AND embedding_model = \(semantic.model) AND EXISTS (SELECT 1 FROM st)
                            ORDER BY created_at DESC
                            LIMIT 2000
                        ) AS v
                        OFFSET 0  -- kept a subquery: pulled up, the product would be computed once per use
                    ) AS x
                    ORDER BY x.similarity DESC, x.created_at DESC
                    LIMIT \(r.semanticCandidates * 2)
                ) AS y
                JOIN memories m ON m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND m.memory_id = y.memory_id
                ORDER BY place
                LIMIT \(r.semanticCandidates)
                """
            fusedScore = "coalesce(1.0 / (\(r.fusionRank) + l.place), 0) + \(r.semanticWeight) * coalesce(1.0 / (\(r.fusionRank) + s.place), 0)"
            lexicalEvidence = "(\(fragment: lexicalEvidence)) AND coalesce(sp.similarity, 1) >= \(semantic.supportingSimilarity)"
            semanticEvidence = "s.similarity >= \(semantic.minimumSimilarity)"
        } else {
            nearest = "SELECT NULL::uuid AS memory_id, NULL::text AS memory_info, NULL::timestamptz AS created_at, NULL::float8 AS similarity, NULL::bigint AS place WHERE false"
            supported = "SELECT NULL::uuid AS memory_id, NULL::float8 AS similarity WHERE false"
            fusedScore = "l.score"
        }
        return """
            WITH st AS (
                SELECT memories AS n, lexemes::float8 / greatest(memories, 1) AS avgdl
                FROM memory_users WHERE tenant_id = \(tenantID) AND user_id = \(userID)
            ), q AS (
                -- Nothing below runs for a user without memories. The query's terms are an array
                -- looked up with = ANY: one index scan, whatever the planner guesses of their number.
                SELECT agentd_search_lexemes(\(query)) AS lexemes WHERE EXISTS (SELECT 1 FROM st)
            ), own AS (
                SELECT t.lexeme, t.memories AS df,
                       CASE WHEN t.lexeme ~ \(Self.singleCharacter) THEN \(r.characterWeight) ELSE 1 END::float8 AS weight
                FROM memory_terms t
                WHERE t.tenant_id = \(tenantID) AND t.user_id = \(userID) AND t.lexeme = ANY ((SELECT lexemes FROM q)::text[])
            ), named AS (
                -- Synonym terms whose every lexeme the query has.
                SELECT s.tenant_id, s.group_name, s.term, array_agg(s.lexeme) AS lexemes
                FROM memory_synonym_lexemes s
                WHERE s.lexeme = ANY ((SELECT lexemes FROM q)::text[]) AND s.tenant_id IN ('', \(tenantID))
                GROUP BY s.tenant_id, s.group_name, s.term, s.lexemes
                HAVING count(*) = s.lexemes
            ), synonym AS (
                SELECT t.lexeme, t.memories AS df
                FROM memory_terms t
                WHERE t.tenant_id = \(tenantID) AND t.user_id = \(userID)
                  AND t.lexeme = ANY ((
                      SELECT array_agg(DISTINCT o.lexeme)
                      FROM named n
                      JOIN memory_synonym_lexemes o ON o.tenant_id = n.tenant_id AND o.group_name = n.group_name AND o.term <> n.term
                      -- A Chinese term's own characters add nothing its pieces do not say better.
                      WHERE length(o.lexeme) > 1 OR o.lexemes = 1)::text[])
            ), explained_by_synonym AS (
                -- The query's synonym terms that another term of their group stands for in the user's memories.
                SELECT n.lexemes FROM named n
                WHERE EXISTS (
                    SELECT 1 FROM memory_synonym_lexemes o JOIN synonym y ON y.lexeme = o.lexeme
                    WHERE o.tenant_id = n.tenant_id AND o.group_name = n.group_name AND o.term <> n.term
                      AND (length(o.lexeme) > 1 OR o.lexemes = 1))
            ), unknown AS (
                -- English words the user never wrote, the longest first: the likeliest to be misspelt content.
                SELECT l.lexeme FROM q, unnest(q.lexemes) AS l(lexeme)
                WHERE l.lexeme ~ '^[a-z]{4,}$' AND NOT EXISTS (SELECT 1 FROM own WHERE own.lexeme = l.lexeme)
                ORDER BY length(l.lexeme) DESC, l.lexeme
                LIMIT 8
            ), spelt AS (
                SELECT u.lexeme AS typed, near.lexeme, near.memories AS df
                FROM unknown u
                CROSS JOIN LATERAL (
                    -- OFFSET 0: a scan of the user's words of that initial for each word, never a join of all.
                    SELECT t.lexeme, t.memories FROM memory_terms t
                    WHERE t.tenant_id = \(tenantID) AND t.user_id = \(userID) AND left(t.lexeme, 1) = left(u.lexeme, 1)
                      AND similarity(t.lexeme, u.lexeme) >= \(r.minimumSimilarity)
                    OFFSET 0
                ) AS near
            ), spelt_like AS (
                SELECT DISTINCT ON (lexeme) lexeme, df FROM spelt ORDER BY lexeme
            ), every_term AS (
                SELECT lexeme, max(weight) AS weight, max(df) AS df FROM (
                    SELECT lexeme, weight, df FROM own
                    UNION ALL
                    SELECT lexeme, \(r.synonymWeight)::float8, df FROM synonym
                    UNION ALL
                    SELECT lexeme, \(r.similarWeight)::float8, df FROM spelt_like
                ) AS every_term
                GROUP BY lexeme
            ), terms AS (
                -- A word or piece that is common in the language weighs less, down to
                -- `leastGenerality` (sql/022); a piece the language's words lack is estimated
                -- from its two characters. Single characters are weighed by `characterWeight` alone.
                SELECT e.lexeme, e.df, e.single,
                       e.weight * CASE WHEN e.single THEN 1 ELSE \(fragment: generality("agentd_general_zipf(e.lexeme)", r)) END AS weight
                FROM (SELECT *, lexeme ~ \(Self.singleCharacter) AS single FROM every_term) AS e
            ), words AS (
                -- The query's terms, single characters aside: each a word (of the language, or
                -- any not Chinese; a piece across two Chinese words is not one), its weight by
                -- generality, and whether the user's memories hold it, as itself, a synonym or
                -- a near spelling.
                SELECT l.lexeme, g.zipf, g.lexeme IS NOT NULL OR l.lexeme !~ \(Self.cjkPiece) AS word,
                       \(fragment: generality("g.zipf", r)) AS weight,
                       EXISTS (SELECT 1 FROM own WHERE own.lexeme = l.lexeme) AS held,
                       EXISTS (SELECT 1 FROM spelt WHERE spelt.typed = l.lexeme) AS spelt_like,
                       EXISTS (SELECT 1 FROM explained_by_synonym x WHERE l.lexeme = ANY (x.lexemes)) AS by_synonym
                FROM unnest((SELECT lexemes FROM q)::text[]) AS l(lexeme)
                LEFT JOIN memory_general_terms g ON g.lexeme = l.lexeme
                WHERE l.lexeme !~ \(Self.singleCharacter)
            ), unexplained AS (
                -- The weight of the query's words that none of the user's memories holds, over
                -- the query's number of terms (single characters aside) to `lengthPower`.
                SELECT coalesce(sum(weight) FILTER (WHERE word AND NOT held AND NOT spelt_like AND NOT by_synonym), 0)
                       / greatest(count(*), 1) ^ \(r.lengthPower) AS weight
                FROM words
            ), ranked AS (
                SELECT lexeme, weight, single, idf, row_number() OVER (ORDER BY weight * idf DESC, lexeme) AS place
                FROM (SELECT terms.lexeme, terms.weight, terms.single, ln(1 + (st.n - terms.df + 0.5) / (terms.df + 0.5)) AS idf FROM terms, st) AS t
                ORDER BY place
                LIMIT \(r.maximumTerms)
            ), candidates AS (
                -- Replaced memories too: a memory that replaced another answers what that one
                -- answered, so each stands for its successor (`successor`), below.
                SELECT m.memory_id, coalesce(m.superseded_by, m.memory_id) AS successor, m.search
                FROM memories m
                WHERE m.tenant_id = \(tenantID) AND m.user_id = \(userID)
                  -- Built once (a sub-select), not once for each memory it is matched against; of
                  -- the query's words and pieces, not its single characters when it has any (a
                  -- common character is in most of a user's Chinese memories: they would fill the
                  -- candidates and push out the ones the words find).
                  AND m.search @@ (
                      SELECT agentd_any_lexeme(array_agg(lexeme)) FROM ranked
                      WHERE NOT single OR NOT EXISTS (SELECT 1 FROM ranked WHERE NOT single))
                -- Past the bound, the newest: an update outranks what it replaced.
                ORDER BY m.created_at DESC
                LIMIT \(r.maximumCandidates)
            ), matches AS (
                -- BM25, and the share of the weight of the query's words the memory could be about that it holds.
                SELECT c.memory_id, c.successor,
                       sum(p.bm25) AS score,
                       coalesce(sum(ranked.weight) FILTER (WHERE NOT ranked.single), 0)
                           / greatest(coalesce(sum(ranked.weight) FILTER (WHERE NOT ranked.single), 0) + (SELECT weight FROM unexplained), 1e-9) AS coverage,
                       array_agg(ranked.lexeme) AS matched,
                       -- Single characters alone are no evidence: they match across words.
                       bool_or(NOT ranked.single) AS worded,
                       -- A strong match by words and pieces: single characters add to the score, not to this.
                       coalesce(sum(p.bm25) FILTER (WHERE NOT ranked.single), 0) >= \(r.strongScore) AS strong
                FROM candidates c
                CROSS JOIN LATERAL unnest(c.search) AS u(lexeme, positions, weights)
                JOIN ranked ON ranked.lexeme = u.lexeme
                CROSS JOIN st
                CROSS JOIN LATERAL (SELECT coalesce(array_length(u.positions, 1), 1)::float8 AS tf) AS f
                CROSS JOIN LATERAL (
                    SELECT ranked.weight * ranked.idf * f.tf * \(r.k1 + 1)
                           / (f.tf + \(r.k1) * (1 - \(r.b) + \(r.b) * length(c.search) / greatest(st.avgdl, 1))) AS bm25
                ) AS p
                GROUP BY c.memory_id, c.successor
            ), scored AS (
                -- Each current memory with its own match or its predecessors', whichever is best.
                SELECT DISTINCT ON (m.memory_id) m.memory_id, m.memory_info, m.created_at, x.score, x.coverage, x.matched, x.worded, x.strong
                FROM matches x
                JOIN memories m ON m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND m.memory_id = x.successor AND m.superseded_by IS NULL
                ORDER BY m.memory_id, x.score DESC
            ), top AS (
                SELECT * FROM scored ORDER BY score DESC, created_at DESC LIMIT 20
            ), lifted AS (
                -- A newer memory on the same subject that says it changed ("moved to", "换成", "now")
                -- is put just above the older one it may replace, when it is nearly as relevant.
                SELECT t.memory_id, t.memory_info, t.created_at, t.coverage, t.worded, t.strong,
                       greatest(t.score, coalesce(max(o.score) * 1.001, 0)) AS score
                FROM top t
                LEFT JOIN top o ON o.created_at < t.created_at AND t.score >= \(r.updateShare) * o.score AND t.score < o.score
                    AND t.memory_info ~* \(Self.updateCue)
                    AND (SELECT sum(r.weight * r.idf) FROM ranked r WHERE r.lexeme = ANY (t.matched) AND r.lexeme = ANY (o.matched))
                        >= \(r.updateOverlap) * (SELECT sum(r.weight * r.idf) FROM ranked r WHERE r.lexeme = ANY (t.matched) OR r.lexeme = ANY (o.matched))
                GROUP BY t.memory_id, t.memory_info, t.created_at, t.coverage, t.worded, t.strong, t.score
            ), nearest AS (
                \(fragment: nearest)
            ), supported AS (
                \(fragment: supported)
            ), fused AS (
                SELECT coalesce(l.memory_id, s.memory_id) AS memory_id, coalesce(l.memory_info, s.memory_info) AS memory_info,
                       coalesce(l.created_at, s.created_at) AS created_at, \(fragment: fusedScore) AS score, l.coverage,
                       coalesce(\(fragment: lexicalEvidence), false) OR coalesce(\(fragment: semanticEvidence), false) AS evident
                FROM (SELECT *, row_number() OVER (ORDER BY score DESC, created_at DESC) AS place FROM lifted) AS l
                FULL JOIN nearest s ON s.memory_id = l.memory_id
                LEFT JOIN supported sp ON sp.memory_id = l.memory_id
                CROSS JOIN st
            ), pool AS (
                SELECT m.memory_id, m.memory_info, m.created_at, coalesce(s.score, 0) AS score, s.coverage
                FROM memories m LEFT JOIN fused s ON s.memory_id = m.memory_id
                WHERE m.tenant_id = \(tenantID) AND m.user_id = \(userID) AND m.superseded_by IS NULL AND \(fragment: everything)
                UNION ALL
                SELECT s.memory_id, s.memory_info, s.created_at, s.score, s.coverage
                FROM fused s
                WHERE NOT \(fragment: everything) AND s.evident
            )
            \(fragment: result)
            """
    }

    /// The user's memories, newest first.
    public func list(tenantID: String, userID: String, limit: Int) async throws -> [MemoryHit] {
        try await hits(tenantID, """
            SELECT memory_id, memory_info, extract(epoch FROM created_at) AS created, NULL::float8 AS score
            FROM memories WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND superseded_by IS NULL
            ORDER BY created_at DESC, memory_id
            LIMIT \(limit)
            """)
    }

    /// Deletes one memory with everything it said: its earlier texts (`memory_history`) and the
    /// memories it had replaced, with theirs. False when the user has no such memory.
    public func delete(tenantID: String, userID: String, memoryID: UUID) async throws -> Bool {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                WITH gone AS (
                    DELETE FROM memories
                    WHERE tenant_id = \(tenantID) AND user_id = \(userID) AND (memory_id = \(memoryID) OR superseded_by = \(memoryID))
                    RETURNING memory_id
                ), history AS (
                    DELETE FROM memory_history h USING gone
                    WHERE h.tenant_id = \(tenantID) AND h.user_id = \(userID) AND h.memory_id = gone.memory_id
                )
                SELECT count(*) FILTER (WHERE memory_id = \(memoryID)) AS deleted FROM gone
                """).first?.decode("deleted", as: Int.self) == 1
        }
    }

    private func hits(_ tenantID: String, _ query: PostgresQuery) async throws -> [MemoryHit] {
        try Self.hits(in: try await pool.tenant(tenantID) { try $0.query(query) })
    }

    static func hits(in result: PostgresResult) throws -> [MemoryHit] {
        try result.rows.map { row in
            MemoryHit(
                id: try row.decode("memory_id"), text: try row.decode("memory_info"), createdAt: try row.decode("created"),
                score: try row.decode("score", as: Double?.self),
                coverage: row.columns.contains { $0.name == "coverage" } ? try row.decode("coverage", as: Double?.self) : nil)
        }
    }
}

extension MemoryStore: MemoryRecall {
    public func recalledMemories(tenantID: String, userID: String, query: String, limit: Int) async throws -> [String] {
        try await recall(tenantID: tenantID, userID: userID, query: query, limit: limit).map(\.text)
    }
}
