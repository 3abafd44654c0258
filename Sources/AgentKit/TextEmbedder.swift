/// Turns texts into vectors that are near when the texts mean the same: an OpenAI-compatible
/// `/embeddings` endpoint (`EMBEDDINGS_BASE_URL`), for memory recall's semantic pass.
public protocol TextEmbedder: Sendable {
    /// Where the vectors live: the model, and how a memory is prepared for it. Vectors of two
    /// spaces are never compared, and memories stored in another space are embedded again.
    var model: String { get }
    /// One vector per text, in order, each of unit length.
    func embed(_ texts: [String], for purpose: EmbeddingPurpose) async throws -> [[Float]]
}

/// What a text is embedded as. Asymmetric models (e5, bge, nomic-embed, …) want a query and the
/// text it should find marked apart, each with its own prefix.
public enum EmbeddingPurpose: Sendable {
    /// A recall query.
    case query
    /// A memory, to be found by queries.
    case document
}

/// Why an embedding call failed, and whether trying again later may help.
public struct EmbeddingError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var retryable: Bool

    public init(_ message: String, retryable: Bool) {
        self.message = message
        self.retryable = retryable
    }

    public var description: String { message }
}

/// `vector` scaled to unit length (a zero vector stays zero), so that a dot product is the cosine.
public func normalized(_ vector: [Float]) -> [Float] {
    var sum: Float = 0
    for value in vector { sum += value * value }
    guard sum > 0, sum.isFinite else { return vector.map { _ in 0 } }
    let scale = 1 / sum.squareRoot()
    return vector.map { $0 * scale }
}
