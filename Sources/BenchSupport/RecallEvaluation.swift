import Foundation
import Store

/// A labelled set of memories and queries (bench/memory/*.json) and the measures of how well
/// recall finds the expected memories.
public struct RecallSet: Decodable, Sendable {
    public struct User: Decodable, Sendable {
        public var user_id: String
        public var memories: [Memory]
    }
    public struct Memory: Decodable, Sendable {
        public var key: String
        public var text: String
        /// Ground truth only (the service is not told): the earlier memory of the user that this
        /// one gives a new value for.
        public var replaces: String?
    }
    public struct Query: Decodable, Sendable {
        public var user_id: String
        public var query: String
        /// Empty: nothing should be recalled (categories "negative" and "unrelated").
        public var expected: [String]
        /// "exact", "numbers", "morphology", "typo", "script", "update", "noisy", "synonym",
        /// "cross_language", "negative", "unrelated"; nil in sets without categories.
        public var category: String?
        /// Older memories that `expected` replaced: an expected memory counts only when none of
        /// these is ranked above it.
        public var superseded: [String]?
    }
    public var users: [User]
    public var queries: [Query]

    public init(users: [User], queries: [Query]) {
        self.users = users
        self.queries = queries
    }

    public static func load(_ path: String) throws -> RecallSet {
        try JSONDecoder().decode(RecallSet.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public var memoryCount: Int { users.reduce(0) { $0 + $1.memories.count } }
}

/// recall@k and MRR@depth of a group of queries (all of them, or one category).
public struct RecallFigures: Sendable {
    public var queries = 0
    public var recallSum = 0.0
    public var reciprocalSum = 0.0
    /// Negatives: those that recalled at least one memory.
    public var negatives = 0
    public var negativesRecalling = 0

    /// Mean over the queries with expected memories of the share of them among the first k.
    public var recallAtK: Double { Double(recallSum) / Double(max(1, queries)) }
    /// Mean reciprocal rank of the first expected memory within the depth (0 when absent).
    public var meanReciprocalRank: Double { reciprocalSum / Double(max(1, queries)) }
}

public struct RecallScore: Sendable {
    public var k: Int
    public var depth: Int
    public var overall: RecallFigures
    /// By category, in the order they first appear in the set.
    public var categories: [(name: String, figures: RecallFigures)]
    /// Queries whose expected memories were all recalled within k (negatives: that recalled nothing).
    public var perfect: Int
    /// Queries that missed something: the query, what came back (keys with their scores, best first).
    public var misses: [(query: RecallSet.Query, recalled: [String])]
    /// Recall latency of the set's queries, ms.
    public var latencies: [Double]
    /// Every query with what came back, one line each (category, expected keys, hits with scores).
    public var dump: [String] = []

    public var recallAtK: Double { overall.recallAtK }
    public var meanReciprocalRank: Double { overall.meanReciprocalRank }
}

public enum RecallEvaluation {
    /// Writes the set's memories under `tenantID` (in order, one at a time, as users would), runs
    /// every query through `MemoryStore.recall` with limit `depth` (at least `k`), and scores the
    /// first `k` for recall and all `depth` for the reciprocal rank.
    public static func run(_ set: RecallSet, store: MemoryStore, tenantID: String, k: Int, depth: Int? = nil) async throws -> RecallScore {
        try await evaluate(set, keys: try await write(set, store: store, tenantID: tenantID).keys, store: store, tenantID: tenantID, k: k, depth: depth)
    }

    /// What writing a set did: each stored memory's key, and the replacements agentd made by
    /// itself, against the set's own (`Memory.replaces`).
    public struct Written: Sendable {
        public var keys: [UUID: String] = [:]
        /// (older key, newer key) as agentd replaced them.
        public var replaced: [(older: String, newer: String)] = []
        /// The set's ground truth: updates it holds, as (older key, newer key).
        public var updates: Set<[String]> = []

        public var correct: Int { replaced.filter { updates.contains([$0.older, $0.newer]) }.count }
        /// Replacements the set does not have: false merges.
        public var wrong: [(older: String, newer: String)] { replaced.filter { !updates.contains([$0.older, $0.newer]) } }
    }

    /// Writes the set's memories in order, as a client that never says `replaces` would, or
    /// (`sayingReplaces`) as one that names every memory an update replaces.
    public static func write(_ set: RecallSet, store: MemoryStore, tenantID: String, sayingReplaces: Bool = false) async throws -> Written {
        var written = Written()
        var idByKey: [String: UUID] = [:]
        for user in set.users {
            for memory in user.memories {
                let replaces = sayingReplaces ? memory.replaces.flatMap { idByKey[$0] } : nil
                let result = try await store.write(tenantID: tenantID, userID: user.user_id, text: memory.text, replaces: replaces)
                idByKey[memory.key] = result.id
                written.keys[result.id] = memory.key
                if let older = result.replaced { written.replaced.append((written.keys[older] ?? "?", memory.key)) }
                if let replaces = memory.replaces { written.updates.insert([replaces, memory.key]) }
            }
        }
        return written
    }

    /// Runs the set's queries against memories already written (`write`'s keys).
    public static func evaluate(
        _ set: RecallSet, keys keyByID: [UUID: String], store: MemoryStore, tenantID: String, k: Int, depth: Int? = nil
    ) async throws -> RecallScore {
        let depth = max(k, depth ?? k)
        var overall = RecallFigures()
        var categories: [(name: String, figures: RecallFigures)] = []
        var perfect = 0
        var misses: [(RecallSet.Query, [String])] = []
        var latencies: [Double] = []
        var dump: [String] = []
        let clock = ContinuousClock()
        for query in set.queries {
            let start = clock.now
            let hits = try await store.recall(tenantID: tenantID, userID: query.user_id, query: query.query, limit: depth)
            let elapsed = clock.now - start
            latencies.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
            let keys = hits.map { keyByID[$0.id] ?? "?" }
            let shown = hits.map {
                (keyByID[$0.id] ?? "?") + ($0.score.map { String(format: "=%.2f", $0) } ?? "") + ($0.coverage.map { String(format: "/%.2f", $0) } ?? "")
            }
            let (recall, reciprocal, complete) = score(keys, expected: query.expected, superseded: query.superseded ?? [], k: k)
            func add(_ figures: inout RecallFigures) {
                if query.expected.isEmpty {
                    figures.negatives += 1
                    if !keys.isEmpty { figures.negativesRecalling += 1 }
                } else {
                    figures.queries += 1
                    figures.recallSum += recall
                    figures.reciprocalSum += reciprocal
                }
            }
            add(&overall)
            let name = query.category ?? "all"
            if let index = categories.firstIndex(where: { $0.name == name }) {
                add(&categories[index].figures)
            } else {
                var figures = RecallFigures()
                add(&figures)
                categories.append((name, figures))
            }
            if complete { perfect += 1 } else { misses.append((query, shown)) }
            dump.append([query.category ?? "", query.expected.joined(separator: ","), (query.superseded ?? []).joined(separator: ","), shown.joined(separator: " ")].joined(separator: "\t"))
        }
        return RecallScore(
            k: k, depth: depth, overall: overall, categories: categories, perfect: perfect, misses: misses, latencies: latencies, dump: dump)
    }

    /// recall@k, the reciprocal rank within all of `keys`, and whether the query is fully answered.
    /// An expected memory with a superseded one ranked above it does not count.
    static func score(_ keys: [String], expected: [String], superseded: [String], k: Int) -> (Double, Double, Bool) {
        guard !expected.isEmpty else { return (0, 0, keys.isEmpty) }
        let stale = Set(superseded)
        let firstStale = keys.firstIndex(where: stale.contains) ?? Int.max
        let wanted = Set(expected)
        let counted = keys.enumerated().filter { wanted.contains($0.element) && $0.offset < firstStale }
        let found = counted.filter { $0.offset < k }.count
        let reciprocal = counted.first.map { 1 / Double($0.offset + 1) } ?? 0
        return (Double(found) / Double(expected.count), reciprocal, found == expected.count)
    }
}
