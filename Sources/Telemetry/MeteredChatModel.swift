import AgentKit

/// A `ChatModel` whose calls are counted: duration and tokens by model (the OpenTelemetry GenAI
/// names), failures by kind. The wrapped model does the work.
public struct MeteredChatModel: ChatModel {
    let model: any ChatModel
    let metrics: ServiceMetrics

    public init(_ model: any ChatModel, metrics: ServiceMetrics) {
        self.model = model
        self.metrics = metrics
    }

    public var name: String { model.name }

    public func complete(_ request: ModelRequest) async throws -> ModelReply {
        try await measured(request) { try await model.complete(request) }
    }

    public func complete(_ request: ModelRequest, deltas: @escaping @Sendable (ModelDelta) -> Void) async throws -> ModelReply {
        try await measured(request) { try await model.complete(request, deltas: deltas) }
    }

    private func measured(_ request: ModelRequest, _ call: () async throws -> ModelReply) async throws -> ModelReply {
        let clock = ContinuousClock()
        let start = clock.now
        let requested = request.model ?? model.name
        do {
            let reply = try await call()
            metrics.modelCall(
                model: requested, nanoseconds: (clock.now - start).nanoseconds, inputTokens: reply.usage?.promptTokens,
                outputTokens: reply.usage?.completionTokens)
            return reply
        } catch let error as ModelError {
            metrics.modelFailed(model: requested, kind: error.kind.rawValue, nanoseconds: (clock.now - start).nanoseconds)
            throw error
        }
        // A cancelled call (shutdown, a client's cancel) is nobody's failure: not counted.
    }
}

extension Duration {
    /// Whole nanoseconds, for swift-metrics' timers.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
