import AgentKit
import AsyncHTTPClient
@testable import ModelClient
import Synchronization
import Testing
import TestSupport

@Suite("OpenAI-compatible embeddings")
struct EmbeddingsTests {
    @Test("a reply's items are put in index order and normalized; malformed replies are refused, not guessed at")
    func parsing() throws {
        let reply = #"{"data":[{"index":1,"embedding":[0,2]},{"index":0,"embedding":[3,4]}],"model":"m"}"#
        let vectors = try OpenAICompatibleEmbeddings.vectors(from: Array(reply.utf8), count: 2)
        #expect(vectors == [[0.6, 0.8], [0, 1]])
        for bad in [
            #"{"data":[{"index":0,"embedding":[1,2]}]}"#,  // one item for two texts
            #"{"data":[{"index":0,"embedding":[1,2]},{"index":0,"embedding":[1,2]}]}"#,  // an index twice
            #"{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[1,2,3]}]}"#,  // two lengths
            #"{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[1]}]}"#,  // an empty vector
            #"{"data":[{"index":0,"embedding":["x"]},{"index":1,"embedding":[1]}]}"#,  // not a number
            #"{"data":[{"index":5,"embedding":[1]},{"index":1,"embedding":[1]}]}"#,  // an index out of range
            #"{"error":{"message":"no"}}"#, "not json",
        ] {
            #expect(throws: EmbeddingError.self, "\(bad)") { try OpenAICompatibleEmbeddings.vectors(from: Array(bad.utf8), count: 2) }
        }
    }

    @Test("against the scripted server: one request for a batch, unit vectors in order, a 500 reported as worth retrying")
    func overHTTP() async throws {
        let server = try await ScriptedModelServer.start()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let embeddings = OpenAICompatibleEmbeddings(baseURL: server.baseURL + "/", model: "m", apiKey: "k", httpClient: http)
        let vectors = try await embeddings.embed(["I am vegetarian", "我喜欢靠窗的座位", "I am vegetarian"], for: .document)
        #expect(vectors.count == 3 && vectors[0] == vectors[2] && vectors[0] != vectors[1])
        #expect(vectors.allSatisfy { abs($0.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5 })
        #expect(server.embeddingRequestCount == 1)
        server.setEmbedding { _ in nil }
        let error = await #expect(throws: EmbeddingError.self) { try await embeddings.embed(["x"], for: .query) }
        #expect(error?.retryable == true)
        #expect(try await embeddings.embed([], for: .query) == [])
        try await http.shutdown()
        await server.shutdown()
    }

    @Test("queries and memories carry their own prefixes to the server; the prefix of memories names their space")
    func prefixes() async throws {
        let server = try await ScriptedModelServer.start()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let seen = Mutex<[String]>([])
        server.setEmbedding { text in
            seen.withLock { $0.append(text) }
            return [1, Float(text.count)]
        }
        let e5 = OpenAICompatibleEmbeddings(
            baseURL: server.baseURL, model: "e5", apiKey: nil, queryPrefix: "query: ", documentPrefix: "passage: ", httpClient: http)
        _ = try await e5.embed(["我的护照"], for: .query)
        _ = try await e5.embed(["passport expires in May", "护照五月到期"], for: .document)
        #expect(seen.withLock { $0 } == ["query: 我的护照", "passage: passport expires in May", "passage: 护照五月到期"])
        #expect(e5.model == "e5 [documents: passage: ]")
        let plain = OpenAICompatibleEmbeddings(baseURL: server.baseURL, model: "e5", apiKey: nil, httpClient: http)
        _ = try await plain.embed(["x"], for: .query)
        #expect(seen.withLock { $0.last } == "x")
        #expect(plain.model == "e5", "no prefix: the space is the model's name, as before")
        try await http.shutdown()
        await server.shutdown()
    }
}
