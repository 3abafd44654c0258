import AgentKit
import Foundation
import ScriptedModel
import Synchronization
import Testing
import TestSupport

/// Recall's optional semantic pass (`EMBEDDINGS_BASE_URL`), against the scripted server's
/// OpenAI-compatible `/v1/embeddings`.
@Suite("memory recall's semantic pass")
struct SemanticMemoryTests {
    /// Vectors by concept: a text that names any word of a concept points along its dimension,
    /// so that "steak" and "vegetarian" are near and share no word.
    static let concepts: [[String]] = [
        ["vegetarian", "meat", "steak", "素", "吃肉"],
        ["seat", "window", "aisle", "座位"],
        ["budget", "money", "cost", "预算"],
    ]

    /// A heavy dimension per concept named, then the scripted server's word hashing: texts of one
    /// concept are near (cosine above 0.9), others as near as the words they share.
    static let conceptVector: @Sendable (String) -> [Float]? = { text in
        let lower = text.lowercased()
        let concepts = Self.concepts.map { words in words.contains(where: { lower.contains($0) }) ? Float(10) : 0 }
        return concepts + (ScriptedModelServer.wordVector(text) ?? [])
    }

    static let filler = [
        "周三下午有部门例会", "Gym membership renews in March", "喜欢听爵士乐", "Keys are with the neighbour on the 3rd floor",
        "每月5号交物业费", "Favourite colour is green", "老家在湖南长沙",
    ]

    func write(_ service: ServiceHarness, _ user: String, _ text: String) async throws -> String {
        let reply = try await service.post("/agent/write/longterm", ["user_id": .string(user), "memory_info": .string(text)])
        #expect(reply.status == 200)
        return try #require(reply["memory_id"]?.stringValue)
    }

    func search(_ service: ServiceHarness, _ user: String, _ query: String) async throws -> [String] {
        let reply = try await service.get("/agent/memory/\(user)?q=" + (query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))
        guard case .array(let items)? = reply["memories"] else { return [] }
        return items.compactMap { $0["memory_info"]?.stringValue }
    }

    /// Waits until no memory waits for its vector (the embedder works after the writes).
    func embedded(_ service: ServiceHarness, timeout: Duration = .seconds(30)) async throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if try service.scalar("SELECT count(*) FROM memories WHERE embedding IS NULL") == 0 { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    @Test("memories get vectors after they are written, and recall finds by meaning what shares no word with the query")
    func findsByMeaning() async throws {
        let service = try await ServiceHarness.start(configure: { $0.embeddingsBaseURL = $0.llmBaseURL; $0.embeddingsMinimumSimilarity = 0.9 })
        defer { Task { await service.stop() } }
        service.model.setEmbedding(Self.conceptVector)
        for text in Self.filler { _ = try await write(service, "u1", text) }
        _ = try await write(service, "u1", "I am vegetarian")
        _ = try await write(service, "u1", "出差预算每晚不超过800元")
        #expect(try await embedded(service))
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE embedding_model = 'text-embedding-3-small' AND cardinality(embedding) = 67") == 9)
        // No word in common, not even through a synonym group: the vector finds it.
        #expect(try await search(service, "u1", "shall I order the steak tonight?") == ["I am vegetarian"])
        // Words and vectors agree: still first.
        #expect(try await search(service, "u1", "出差的预算是多少").first == "出差预算每晚不超过800元")
        // Neither words nor vectors: nothing.
        #expect(try await search(service, "u1", "what is the capital of Peru") == [])

        // A task's recall goes through the same pass into the system message.
        _ = try await service.invoke("u1", "s1", "t1", "shall I order the steak tonight?")
        _ = try await service.settle("u1", "s1", "t1")
        #expect(service.model.requests.last?.systemMessage?.contains("I am vegetarian") == true)

        // A rewrite's vector is made again for the new text.
        let seat = try await write(service, "u1", "Prefers aisle seats on trains")
        #expect(try await embedded(service))
        #expect(try await service.send(.PUT, "/agent/memory/u1/\(seat)", body: #"{"memory_info": "Keys are at the front desk"}"#).status == 200)
        #expect(try await embedded(service))
        #expect(try await search(service, "u1", "which window seat do I like") == [])
    }

    @Test("a failing embeddings server: vectors are retried until it answers, and recall goes on by words meanwhile")
    func retried() async throws {
        let service = try await ServiceHarness.start(configure: { $0.embeddingsBaseURL = $0.llmBaseURL })
        defer { Task { await service.stop() } }
        service.model.setEmbedding { _ in nil }
        for text in Self.filler { _ = try await write(service, "u1", text) }
        _ = try await write(service, "u1", "I am vegetarian")
        // Failures are recorded and the memories wait for their next attempt.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        while clock.now < deadline, try service.scalar("SELECT count(*) FROM memories WHERE embedding_attempts >= 2") < 8 {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE embedding_attempts >= 2 AND embedding_error LIKE '%500%'") == 8)
        #expect(try await search(service, "u1", "any vegetarian restaurants near the hotel?") == ["I am vegetarian"])
        // The server recovers: every memory gets its vector.
        service.model.setEmbedding(ScriptedModelServer.wordVector)
        #expect(try await embedded(service, timeout: .seconds(30)))
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE embedding_error IS NOT NULL OR embedding_due IS NOT NULL") == 0)
    }

    @Test("by vectors too, a memory that says a fact changed comes before the one it updates, though that one is nearer")
    func updateLiftedByVector() async throws {
        // Both kept: this is about ranking, not the restatement rule.
        let service = try await ServiceHarness.start(configure: {
            $0.embeddingsBaseURL = $0.llmBaseURL
            $0.embeddingsMinimumSimilarity = 0.5
            $0.memoryReplacesRestated = false
        })
        defer { Task { await service.stop() } }
        // The query shares no word with either memory: only the vectors find them. The older one
        // is the nearer (0.95 against 0.90); the others are far.
        service.model.setEmbedding { text in
            if text.contains("report to") { return [1, 0, 0] }
            if text.contains("Aisha") { return [0.95, 0.312, 0] }
            if text.contains("Dan") { return [0.9, 0, 0.436] }
            return [0, 0.6, 0.8]
        }
        for text in Self.filler { _ = try await write(service, "u1", text) }
        _ = try await write(service, "u1", "我的经理是Aisha")
        _ = try await write(service, "u1", "我的经理换成了Dan")
        #expect(try await embedded(service))
        #expect(try await search(service, "u1", "who do I report to") == ["我的经理换成了Dan", "我的经理是Aisha"])
    }

    @Test("EMBEDDINGS_QUERY_PREFIX and EMBEDDINGS_DOCUMENT_PREFIX reach the model; memories of another document prefix are embedded again")
    func prefixes() async throws {
        let seen = Mutex<[String]>([])
        let embedding: @Sendable (String) -> [Float]? = { text in
            seen.withLock { $0.append(text) }
            var bare = Substring(text)
            for prefix in ["query: ", "passage: "] where bare.hasPrefix(prefix) { bare = bare.dropFirst(prefix.count) }
            return Self.conceptVector(String(bare))
        }
        let service = try await ServiceHarness.start(configure: {
            $0.embeddingsBaseURL = $0.llmBaseURL
            $0.embeddingsMinimumSimilarity = 0.9
            $0.embeddingsQueryPrefix = "query: "
            $0.embeddingsDocumentPrefix = "passage: "
        })
        defer { Task { await service.stop() } }
        service.model.setEmbedding(embedding)
        for text in Self.filler { _ = try await write(service, "u1", text) }
        _ = try await write(service, "u1", "I am vegetarian")
        #expect(try await embedded(service))
        #expect(try await search(service, "u1", "shall I order the steak tonight?") == ["I am vegetarian"])
        let texts = seen.withLock { $0 }
        #expect(texts.contains("passage: I am vegetarian"))
        #expect(texts.contains { $0.hasPrefix("query: ") && $0.contains("steak") })
        #expect(!texts.contains { !$0.hasPrefix("query: ") && !$0.hasPrefix("passage: ") })
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE embedding_model = 'text-embedding-3-small [documents: passage: ]'") == 8)
    }

    @Test("without EMBEDDINGS_BASE_URL nothing is queued and no embeddings request is made")
    func offByDefault() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        for text in Self.filler + ["I am vegetarian"] { _ = try await write(service, "u1", text) }
        #expect(try await search(service, "u1", "vegetarian") == ["I am vegetarian"])
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE embedding_due IS NOT NULL OR embedding IS NOT NULL") == 0)
        #expect(service.model.embeddingRequestCount == 0)
    }
}
