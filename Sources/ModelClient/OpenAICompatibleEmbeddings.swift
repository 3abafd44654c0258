import AgentKit
import AsyncHTTPClient
import Foundation
import NIOCore

/// `TextEmbedder` over an OpenAI-compatible `POST {baseURL}/embeddings` (OpenAI, vLLM, Ollama,
/// text-embeddings-inference, a local server): `{"model", "input": [texts]}` →
/// `{"data": [{"index", "embedding"}]}`. One attempt per call: the caller decides when to try
/// again (the memory embedder backs off; recall goes on without the semantic pass).
///
/// `queryPrefix` and `documentPrefix` are put before each text (`EMBEDDINGS_QUERY_PREFIX`,
/// `EMBEDDINGS_DOCUMENT_PREFIX`): asymmetric models such as e5 ("query: ", "passage: ") are
/// trained on them, and OpenAI's endpoint has no field that says which a text is.
public struct OpenAICompatibleEmbeddings: TextEmbedder {
    /// The model's name, as sent.
    public let name: String
    public let queryPrefix: String
    public let documentPrefix: String
    /// The name, and the document prefix when there is one: memories embedded with another prefix
    /// are in another space.
    public var model: String { documentPrefix.isEmpty ? name : "\(name) [documents: \(documentPrefix)]" }
    let endpoint: String
    let apiKey: String?
    let timeout: Duration
    let httpClient: HTTPClient

    /// Largest response read: 256 vectors of 3,072 numbers written out are about 10 MiB.
    static let maxResponseBytes = 32 << 20

    public init(
        baseURL: String, model: String, apiKey: String?, queryPrefix: String = "", documentPrefix: String = "",
        timeout: Duration = .seconds(10), httpClient: HTTPClient
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        endpoint = base + "/embeddings"
        name = model
        self.queryPrefix = queryPrefix
        self.documentPrefix = documentPrefix
        self.apiKey = apiKey
        self.timeout = timeout
        self.httpClient = httpClient
    }

    public func embed(_ texts: [String], for purpose: EmbeddingPurpose) async throws -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        let prefix = purpose == .query ? queryPrefix : documentPrefix
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let apiKey, !apiKey.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        let body: JSONValue = ["model": .string(name), "input": .array(texts.map { .string(prefix + $0) })]
        request.body = .bytes(ByteBuffer(string: body.jsonText))
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await httpClient.execute(request, timeout: .milliseconds(Int64(timeout.milliseconds)))
            bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw EmbeddingError("embeddings server unreachable or too slow: \(error)", retryable: true)
        }
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let excerpt = String(decoding: Data(bytes.readableBytesView).prefix(300), as: UTF8.self)
            throw EmbeddingError("embeddings server answered \(status): \(excerpt)", retryable: status == 429 || status >= 500)
        }
        return try Self.vectors(from: Array(bytes.readableBytesView), count: texts.count)
    }

    /// The `data` items in `index` order, each normalized; the dimension must be the same for all.
    static func vectors(from body: [UInt8], count: Int) throws -> [[Float]] {
        guard case .array(let items)? = (try? JSONValue(parsing: body))?.objectValue?["data"], items.count == count else {
            throw EmbeddingError("embeddings reply without \(count) items in data", retryable: false)
        }
        var vectors = [[Float]?](repeating: nil, count: count)
        for (position, item) in items.enumerated() {
            let index = item.objectValue?["index"]?.numberValue.map { Int(exactly: $0) } ?? position
            guard let index, (0..<count).contains(index), vectors[index] == nil,
                case .array(let numbers)? = item.objectValue?["embedding"], !numbers.isEmpty, numbers.count <= 16_384
            else { throw EmbeddingError("embeddings reply with a malformed item at \(position)", retryable: false) }
            var vector: [Float] = []
            vector.reserveCapacity(numbers.count)
            for number in numbers {
                guard let value = number.numberValue, value.isFinite else {
                    throw EmbeddingError("embeddings reply with a value that is not a finite number", retryable: false)
                }
                vector.append(Float(value))
            }
            vectors[index] = normalized(vector)
        }
        let result = vectors.compactMap { $0 }
        guard result.count == count, Set(result.map(\.count)).count == 1 else {
            throw EmbeddingError("embeddings reply with missing items or vectors of different lengths", retryable: false)
        }
        return result
    }
}
