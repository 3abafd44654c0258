import Foundation
import Store

/// A labelled set of memories and queries (bench/memory/recall-set.json) and the measures
/// of how well recall finds the expected memories.
public struct RecallSet: Decodable, Sendable {
    public struct User: Decodable, Sendable {
        public var user_id: String
        public var memories: [Memory]
    }
    public struct Memory: Decodable, Sendable {
        public var key: String
        public var text: String
    }
    public struct Query: Decodable, Sendable {
        public var user_id: String
        public var query: String
        public var expected: [String]
    }
    public var users: [User]
    public var queries: [Query]

    public static func load(_ path: String) throws -> RecallSet {
        try JSONDecoder().decode(RecallSet.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public var memoryCount: Int { users.reduce(0) { $0 + $1.memories.count } }
}

public struct RecallScore: Sendable {
    /// Mean over queries of the share of expected memories among the first k recalled.
    public var recallAtK: Double
    /// Mean reciprocal rank of the first expected memory (0 when none is recalled).
    public var meanReciprocalRank: Double
    /// Queries whose expected memories were all recalled.
    public var perfect: Int
    /// Queries that missed something: the query, what was expected, what came back.
    public var misses: [(query: RecallSet.Query, recalled: [String])]
}

public enum RecallEvaluation {
    /// Writes the set's memories under `tenantID`, runs every query through `MemoryStore.recall`
    /// with limit `k`, and scores what comes back.
    public static func run(_ set: RecallSet, store: MemoryStore, tenantID: String, k: Int) async throws -> RecallScore {
        var keyByText: [String: String] = [:]
        for user in set.users {
            for memory in user.memories {
                _ = try await store.write(tenantID: tenantID, userID: user.user_id, text: memory.text)
                keyByText[user.user_id + "\u{1}" + memory.text] = memory.key
            }
        }
        var recallSum = 0.0
        var reciprocalSum = 0.0
        var perfect = 0
        var misses: [(RecallSet.Query, [String])] = []
        for query in set.queries {
            let hits = try await store.recall(tenantID: tenantID, userID: query.user_id, query: query.query, limit: k)
            let keys = hits.map { keyByText[query.user_id + "\u{1}" + $0.text] ?? "?" }
            let expected = Set(query.expected)
            let found = expected.intersection(keys).count
            recallSum += Double(found) / Double(max(1, expected.count))
            if let rank = keys.firstIndex(where: expected.contains) { reciprocalSum += 1 / Double(rank + 1) }
            if found == expected.count { perfect += 1 } else { misses.append((query, keys)) }
        }
        let count = Double(max(1, set.queries.count))
        return RecallScore(recallAtK: recallSum / count, meanReciprocalRank: reciprocalSum / count, perfect: perfect, misses: misses)
    }
}
