import AgentKit
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// `ChatModel` over any OpenAI-compatible `POST {baseURL}/chat/completions` with function
/// calling: OpenAI, DeepSeek, Qwen (DashScope compatible mode), vLLM, Ollama.
/// Retries 429, 5xx and connection failures with exponential backoff and jitter. Streams
/// (`stream: true`) unless told not to, and falls back to plain calls for a server that refuses.
public struct OpenAICompatibleModel: ChatModel {
    public struct Configuration: Sendable {
        public var baseURL: String
        public var apiKey: String?
        public var model: String
        /// Per HTTP attempt.
        public var timeout: Duration
        /// Extra attempts after the first.
        public var maxRetries: Int
        public var initialBackoff: Duration
        public var maxBackoff: Duration
        public var temperature: Double?
        /// Ask for the reply as a stream of chunks (text as it is written).
        public var stream: Bool

        public init(
            baseURL: String, apiKey: String? = nil, model: String, timeout: Duration = .seconds(60), maxRetries: Int = 3,
            initialBackoff: Duration = .milliseconds(500), maxBackoff: Duration = .seconds(8), temperature: Double? = nil,
            stream: Bool = true
        ) {
            self.baseURL = baseURL
            self.apiKey = apiKey
            self.model = model
            self.timeout = timeout
            self.maxRetries = max(0, maxRetries)
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.temperature = temperature
            self.stream = stream
        }
    }

    public let configuration: Configuration
    let httpClient: HTTPClient
    let logger: Logger
    let endpoint: String
    /// Set once the server refused a streamed call: later calls are plain.
    private let streamRefused = StreamRefusal()

    private final class StreamRefusal: Sendable {
        let refused = Atomic<Bool>(false)
    }

    /// Largest response body read.
    static let maxResponseBytes = 8 << 20

    public init(configuration: Configuration, httpClient: HTTPClient, logger: Logger) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
        var base = configuration.baseURL
        while base.hasSuffix("/") { base.removeLast() }
        endpoint = base + "/chat/completions"
    }

    public var name: String { configuration.model }

    public func complete(_ request: ModelRequest) async throws -> ModelReply {
        try await complete(request, deltas: { _ in })
    }

    public func complete(_ request: ModelRequest, deltas: @escaping @Sendable (ModelDelta) -> Void) async throws -> ModelReply {
        var attempt = 0
        var wrote = false
        while true {
            attempt += 1
            try Task.checkCancellation()
            let streaming = configuration.stream && !streamRefused.refused.load(ordering: .relaxed)
            let body = ByteBuffer(string: Self.requestBody(request, configuration: configuration, stream: streaming).jsonText)
            if wrote {
                deltas(.restart)
                wrote = false
            }
            let outcome = await send(body, model: request.model ?? configuration.model, streaming: streaming) { text in
                wrote = true
                deltas(.text(text))
            }
            switch outcome {
            case .success(let reply):
                return reply
            case .failure(let failure):
                if streaming, failure.refusedStreaming {
                    // Some OpenAI-compatible servers answer 400 to `stream`: plain calls from now on, this one at once.
                    logger.notice("the model server refused a streamed call; calling it without streaming from now on")
                    streamRefused.refused.store(true, ordering: .relaxed)
                    attempt -= 1
                    continue
                }
                // A call abandoned by cancellation is not the model's failure.
                try Task.checkCancellation()
                guard failure.retryable, attempt <= configuration.maxRetries else {
                    throw ModelError(message: failure.describe(attempts: attempt), kind: failure.kind)
                }
                let delay = backoff(attempt: attempt, retryAfter: failure.retryAfter)
                logger.debug("model call failed; retrying", metadata: ["attempt": "\(attempt)", "reason": "\(failure.reason)"])
                try await Task.sleep(for: delay)
            }
        }
    }

    // MARK: One attempt

    struct Failure: Error {
        var reason: String
        var retryable: Bool
        var kind: ModelError.Kind
        var retryAfter: Duration?
        /// A 4xx that names `stream`: the server does not stream.
        var refusedStreaming = false

        func describe(attempts: Int) -> String {
            "\(reason) (\(attempts) attempt\(attempts == 1 ? "" : "s"))"
        }
    }

    /// One attempt. A streamed reply hands its text to `onText` as chunks arrive; a server that
    /// answers a streamed call with a plain completion is read as one.
    private func send(_ body: ByteBuffer, model: String, streaming: Bool, onText: (String) -> Void) async -> Result<ModelReply, Failure> {
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: streaming ? "text/event-stream" : "application/json")
        if let key = configuration.apiKey, !key.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(body)
        let timeout = configuration.timeout
        do {
            let response = try await httpClient.execute(request, timeout: .milliseconds(Int64(timeout.milliseconds)))
            let status = Int(response.status.code)
            guard (200..<300).contains(status) else {
                let bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
                let excerpt = String(decoding: Data(bytes.readableBytesView).prefix(300), as: UTF8.self)
                return .failure(
                    Failure(
                        reason: "model server answered \(status) \(response.status.reasonPhrase): \(excerpt)",
                        retryable: status == 429 || status >= 500,
                        kind: status == 429 ? .rateLimited : status >= 500 ? .serverError : .httpStatus,
                        retryAfter: Self.retryAfter(response.headers.first(name: "Retry-After")),
                        refusedStreaming: streaming && (400..<500).contains(status) && status != 429 && excerpt.lowercased().contains("stream")))
            }
            if streaming, response.headers.first(name: "Content-Type")?.lowercased().contains("text/event-stream") == true {
                var stream = ChatStream()
                var received = 0
                for try await chunk in response.body {
                    received += chunk.readableBytes
                    guard received <= Self.maxResponseBytes else {
                        return .failure(Failure(reason: "model stream longer than \(Self.maxResponseBytes) bytes", retryable: false, kind: .tooLarge))
                    }
                    for text in try stream.feed(chunk.readableBytesView) { onText(text) }
                }
                return .success(try stream.finish(fallbackModel: model))
            }
            let bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
            return .success(try Self.parseReply(Data(bytes.readableBytesView), fallbackModel: model, logger: logger))
        } catch let error as ChatStream.Malformed {
            return .failure(Failure(reason: error.message, retryable: false, kind: .malformed))
        } catch is ChatStream.Truncated {
            return .failure(Failure(reason: "model stream ended before the reply was complete", retryable: true, kind: .truncated))
        } catch let error as ModelError {
            return .failure(Failure(reason: error.message, retryable: false, kind: error.kind))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .failure(Failure(reason: "model request timed out after \(timeout)", retryable: true, kind: .timeout))
        } catch is CancellationError {
            return .failure(Failure(reason: "cancelled", retryable: false, kind: .other))
        } catch let error as NIOTooManyBytesError {
            return .failure(Failure(reason: "model response larger than \(Self.maxResponseBytes) bytes: \(error)", retryable: false, kind: .tooLarge))
        } catch {
            return .failure(Failure(reason: "model server unreachable: \(error)", retryable: true, kind: .unreachable))
        }
    }

    private func backoff(attempt: Int, retryAfter: Duration?) -> Duration {
        if let retryAfter { return min(retryAfter, configuration.maxBackoff) }
        let base = configuration.initialBackoff * Int(1 << min(attempt - 1, 16))
        return min(base, configuration.maxBackoff) * Double.random(in: 0.8...1.2)
    }

    // MARK: Wire format

    static func requestBody(_ request: ModelRequest, configuration: Configuration, stream: Bool = false) -> JSONValue {
        var body: [String: JSONValue] = [
            "model": .string(request.model ?? configuration.model),
            "messages": .array(request.messages.map(wireMessage)),
        ]
        if stream {
            body["stream"] = true
            body["stream_options"] = ["include_usage": true]
        }
        if !request.tools.isEmpty {
            body["tools"] = .array(
                request.tools.map { ["type": "function", "function": ["name": .string($0.name), "description": .string($0.description), "parameters": $0.parameters]] })
            body["tool_choice"] = "auto"
        }
        if let temperature = configuration.temperature { body["temperature"] = .number(temperature) }
        return .object(body)
    }

    static func wireMessage(_ message: ChatMessage) -> JSONValue {
        switch message.type {
        case .system: return ["role": "system", "content": .string(message.content)]
        case .human: return ["role": "user", "content": .string(message.content)]
        case .tool:
            return ["role": "tool", "content": .string(message.content), "tool_call_id": .string(message.toolCallID ?? "")]
        case .ai:
            var wire: [String: JSONValue] = ["role": "assistant"]
            wire["content"] = message.content.isEmpty && !message.toolCalls.isEmpty ? .null : .string(message.content)
            if !message.toolCalls.isEmpty {
                wire["tool_calls"] = .array(
                    message.toolCalls.map { call in
                        ["id": .string(call.id), "type": "function", "function": ["name": .string(call.name), "arguments": .string(JSONValue.object(call.args).jsonText)]]
                    })
            }
            return .object(wire)
        }
    }

    static func parseReply(_ data: Data, fallbackModel: String, logger: Logger) throws -> ModelReply {
        guard let body = try? JSONValue(parsing: data),
            case .array(let choices)? = body["choices"], let message = choices.first?["message"]
        else {
            let excerpt = String(decoding: data.prefix(200), as: UTF8.self)
            throw ModelError(message: "model server answered 200 without a chat completion: \(excerpt)", kind: .malformed)
        }
        var calls: [ToolCall] = []
        if case .array(let wireCalls)? = message["tool_calls"] {
            for (index, call) in wireCalls.enumerated() {
                let name = call["function"]?["name"]?.stringValue ?? ""
                let raw = call["function"]?["arguments"]
                var args: [String: JSONValue] = [:]
                switch raw {
                case .string(let text)?:
                    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
                    if !trimmed.isEmpty {
                        if let parsed = (try? JSONValue.parse(trimmed))?.objectValue {
                            args = parsed
                        } else {
                            logger.warning("model sent tool arguments that are not a JSON object", metadata: ["tool": "\(name)"])
                        }
                    }
                case .object(let object)?:
                    args = object  // some servers (Ollama) send an object rather than a string
                default: break
                }
                let id = call["id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "call_\(UUID().uuidString.prefix(8).lowercased())_\(index)"
                calls.append(ToolCall(id: id, name: name, args: args))
            }
        }
        var usage: TokenUsage?
        if let prompt = tokenCount(body["usage"]?["prompt_tokens"]), let completion = tokenCount(body["usage"]?["completion_tokens"]) {
            usage = TokenUsage(promptTokens: prompt, completionTokens: completion)
        }
        return ModelReply(
            message: .ai(message["content"]?.stringValue ?? "", toolCalls: calls), usage: usage,
            model: body["model"]?.stringValue ?? fallbackModel)
    }
}

extension OpenAICompatibleModel {
    /// A token count as the `llm_calls` columns can hold it, or nil: `Int(Double)` traps on
    /// NaN, infinity and 1e300, and a model server may send any of them.
    static func tokenCount(_ value: JSONValue?) -> Int? {
        guard let number = value?.numberValue, number.isFinite, number >= 0, number <= Double(Int32.max) else { return nil }
        return Int(number)
    }

    /// A server's `Retry-After` in seconds, if it is a sane number (the same trap as above).
    static func retryAfter(_ header: String?) -> Duration? {
        guard let seconds = header.flatMap(Double.init), seconds.isFinite, seconds >= 0 else { return nil }
        return .seconds(min(seconds, 3600))
    }
}
