import AgentKit
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A scripted OpenAI-compatible chat-completions server on 127.0.0.1, speaking the real
/// protocol over real HTTP, so that the service's real model client runs in tests. A request
/// with `stream: true` is answered as OpenAI streams: `chat.completion.chunk` events (text in
/// pieces, tool calls with their arguments in pieces, the usage last) and `data: [DONE]`.
public final class ScriptedModelServer: Sendable {
    /// What the server answers to one request.
    public indirect enum Reply: Sendable {
        /// An assistant message with this content and no tool calls.
        case text(String)
        /// An assistant message calling tools (arguments go on the wire as a JSON string).
        case toolCalls([ToolCall], content: String = "")
        /// An HTTP error.
        case failure(status: Int, body: String = #"{"error":{"message":"scripted failure"}}"#, retryAfter: String? = nil)
        /// Waits, then answers with the inner reply.
        case delayed(Duration, Reply)
        /// 200 with this raw body.
        case malformed(String)
        /// Text in these pieces, `interval` apart (a plain completion when the request does not stream).
        case streamed([String], interval: Duration)
        /// 200 `text/event-stream` with this raw body, for broken streams.
        case rawStream(String)
        /// `count` pieces `interval` apart, each the time it was written, `t=<µs since 1970>;`: for
        /// measuring how long text takes to reach a client.
        case clocked(count: Int, interval: Duration)
    }

    /// One request as received.
    public struct Request: Sendable {
        public var body: JSONValue
        public var model: String?
        /// The messages converted back to AgentKit's types.
        public var messages: [ChatMessage]
        /// Content of the first system message.
        public var systemMessage: String?
        public var toolNames: [String]
        public var authorization: String?
        /// The request asked for `stream: true`.
        public var streams: Bool
    }

    private struct State {
        var handler: @Sendable (Request) async -> Reply
        /// Off in benchmarks, where keeping every request would grow without bound.
        var recordsRequests: Bool
        var queue: [Reply] = []
        var requests: [Request] = []
        /// Answers 400 to a request that asks to stream, as some servers do.
        var refusesStreaming = false
        /// `/v1/embeddings`: the vector of each input text (nil: 500, a failure to retry).
        var embed: @Sendable (String) -> [Float]? = ScriptedModelServer.wordVector
        var embeddingRequests = 0
    }

    /// The default embedding: each word (a run of letters, digits or one CJK character) hashed
    /// into one of 64 dimensions. Texts that share words are near; it means nothing else.
    public static let wordVector: @Sendable (String) -> [Float]? = { text in
        var vector = [Float](repeating: 0, count: 64)
        var word = ""
        func flush() {
            guard !word.isEmpty else { return }
            var hash: UInt64 = 14_695_981_039_346_656_037
            for byte in word.lowercased().utf8 { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
            vector[Int(hash % 64)] += 1
            word = ""
        }
        for scalar in text.unicodeScalars {
            if (0x3400...0x9FFF).contains(scalar.value) {
                flush()
                word = String(scalar)
                flush()
            } else if scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
                word.unicodeScalars.append(scalar)
            } else {
                flush()
            }
        }
        flush()
        return vector
    }

    /// How `/v1/embeddings` turns a text into a vector from now on.
    public func setEmbedding(_ embed: @escaping @Sendable (String) -> [Float]?) {
        box.state.withLock { $0.embed = embed }
    }

    /// Requests `/v1/embeddings` has answered, failures included.
    public var embeddingRequestCount: Int { box.state.withLock { $0.embeddingRequests } }

    private let box: Box
    private let port: Int
    private let server: Task<Void, any Error>
    private let group: ServiceGroup

    public var baseURL: String { "http://127.0.0.1:\(port)/v1" }
    public var requests: [Request] { box.state.withLock { $0.requests } }
    public var requestCount: Int { box.state.withLock { $0.requests.count } }

    public func setRefusesStreaming(_ refuses: Bool) {
        box.state.withLock { $0.refusesStreaming = refuses }
    }

    public func setHandler(_ handler: @escaping @Sendable (Request) async -> Reply) {
        box.state.withLock { $0.handler = handler }
    }

    /// Replies used in order for the next requests, before falling back to the handler.
    public func enqueue(_ replies: Reply...) {
        box.state.withLock { $0.queue.append(contentsOf: replies) }
    }

    private init(box: Box, port: Int, server: Task<Void, any Error>, group: ServiceGroup) {
        self.group = group
        self.box = box
        self.port = port
        self.server = server
    }

    /// - Parameter control: when given, `POST /control` hands it the JSON body (the bench's model
    ///   server, a process of its own, is told its latency this way) and answers `{}`.
    public static func start(
        recordsRequests: Bool = true, control: (@Sendable (JSONValue) -> Void)? = nil,
        handler: @escaping @Sendable (Request) async -> Reply = { _ in .text("scripted answer") }
    ) async throws -> ScriptedModelServer {
        let box = Box(handler: handler, recordsRequests: recordsRequests)
        let router = Router()
        if let control {
            router.post("/control") { request, _ -> Response in
                let buffer = try await request.body.collect(upTo: 1 << 20)
                control((try? JSONValue(parsing: buffer.readableBytesView)) ?? .null)
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
            }
        }
        router.post("/v1/embeddings") { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 64 << 20)
            let body = (try? JSONValue(parsing: buffer.readableBytesView)) ?? .null
            let inputs: [String] =
                if case .array(let items)? = body["input"] { items.compactMap(\.stringValue) } else { body["input"]?.stringValue.map { [$0] } ?? [] }
            let embed = box.state.withLock { state in
                state.embeddingRequests += 1
                return state.embed
            }
            var data: [JSONValue] = []
            for (index, text) in inputs.enumerated() {
                guard let vector = embed(text) else {
                    return Response(
                        status: .internalServerError, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: #"{"error":{"message":"scripted embeddings failure"}}"#)))
                }
                data.append(["object": "embedding", "index": .number(Double(index)), "embedding": .array(vector.map { .number(Double($0)) })])
            }
            let reply: JSONValue = ["object": "list", "data": .array(data), "model": .string(body["model"]?.stringValue ?? "scripted")]
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: reply.jsonText)))
        }
        router.post("/v1/chat/completions") { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 64 << 20)
            // The hand-written parser: JSONDecoder was half the bench's model-server CPU.
            let body = (try? JSONValue(parsing: buffer.readableBytesView)) ?? .null
            let received = Self.parse(body, authorization: request.headers[.authorization])
            let reply = box.next(for: received)
            if received.streams, box.state.withLock({ $0.refusesStreaming }) {
                return await Self.respond(
                    .failure(status: 400, body: #"{"error":{"message":"stream is not supported by this server"}}"#), model: "", prompt: received)
            }
            return await Self.respond(reply(received), model: received.model ?? "scripted", prompt: received)
        }
        var logger = Logger(label: "scripted-model")
        logger.logLevel = .error
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "scripted-model"),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: logger)
        let server = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            server.cancel()
            throw ScriptedServerError()
        }
        return ScriptedModelServer(box: box, port: port, server: server, group: group)
    }

    struct ScriptedServerError: Error {}

    public func shutdown() async {
        await group.triggerGracefulShutdown()
        _ = try? await server.value
    }

    /// Shares the state between the route closure and the server object.
    private final class Box: Sendable {
        let state: Mutex<State>
        init(handler: @escaping @Sendable (Request) async -> Reply, recordsRequests: Bool) {
            state = Mutex(State(handler: handler, recordsRequests: recordsRequests))
        }

        /// Records the request and picks its reply (queued first, else the handler).
        func next(for request: Request) -> @Sendable (Request) async -> Reply {
            state.withLock { state in
                if state.recordsRequests { state.requests.append(request) }
                if !state.queue.isEmpty {
                    let reply = state.queue.removeFirst()
                    return { _ in reply }
                }
                return state.handler
            }
        }
    }

    // MARK: Wire format

    static func parse(_ body: JSONValue, authorization: String?) -> Request {
        var messages: [ChatMessage] = []
        if case .array(let wire)? = body["messages"] {
            for message in wire {
                let content = message["content"]?.stringValue ?? ""
                switch message["role"]?.stringValue {
                case "system": messages.append(.system(content))
                case "user": messages.append(.human(content))
                case "assistant":
                    var calls: [ToolCall] = []
                    if case .array(let wireCalls)? = message["tool_calls"] {
                        for call in wireCalls {
                            let arguments = call["function"]?["arguments"]?.stringValue ?? "{}"
                            calls.append(
                                ToolCall(
                                    id: call["id"]?.stringValue ?? "", name: call["function"]?["name"]?.stringValue ?? "",
                                    args: (try? JSONValue.parse(arguments))?.objectValue ?? [:]))
                        }
                    }
                    messages.append(.ai(content, toolCalls: calls))
                case "tool":
                    messages.append(ChatMessage(type: .tool, content: content, toolCallID: message["tool_call_id"]?.stringValue))
                default: continue
                }
            }
        }
        var toolNames: [String] = []
        if case .array(let tools)? = body["tools"] {
            toolNames = tools.compactMap { $0["function"]?["name"]?.stringValue }
        }
        return Request(
            body: body, model: body["model"]?.stringValue, messages: messages,
            systemMessage: messages.first { $0.type == .system }?.content, toolNames: toolNames, authorization: authorization,
            streams: body["stream"] == true)
    }

    static func respond(_ reply: Reply, model: String, prompt: Request) async -> Response {
        switch reply {
        case .delayed(let delay, let inner):
            try? await Task.sleep(for: delay)
            return await respond(inner, model: model, prompt: prompt)
        case .rawStream(let body):
            return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: .init(byteBuffer: ByteBuffer(string: body)))
        case .streamed(let pieces, let interval):
            guard prompt.streams else { return await respond(.text(pieces.joined()), model: model, prompt: prompt) }
            return stream(content: pieces, calls: [], interval: interval, model: model, prompt: prompt)
        case .clocked(let count, let interval):
            guard prompt.streams else { return await respond(.text(clock()), model: model, prompt: prompt) }
            return stream(content: Array(repeating: "", count: max(1, count)), calls: [], interval: interval, model: model, prompt: prompt, clocked: true)
        case .text(let content) where prompt.streams:
            return stream(content: pieces(of: content, count: 4), calls: [], interval: .zero, model: model, prompt: prompt)
        case .toolCalls(let calls, let content) where prompt.streams:
            return stream(content: content.isEmpty ? [] : [content], calls: calls, interval: .zero, model: model, prompt: prompt)
        case .failure(let status, let body, let retryAfter):
            var headers: HTTPFields = [.contentType: "application/json"]
            if let retryAfter { headers[.retryAfter] = retryAfter }
            return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
        case .malformed(let body):
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
        case .text(let content):
            return completion(message: ["role": "assistant", "content": .string(content)], finish: "stop", model: model, prompt: prompt)
        case .toolCalls(let calls, let content):
            let wire: [JSONValue] = calls.map { call in
                ["id": .string(call.id), "type": "function", "function": ["name": .string(call.name), "arguments": .string(JSONValue.object(call.args).jsonText)]]
            }
            return completion(
                message: ["role": "assistant", "content": content.isEmpty ? .null : .string(content), "tool_calls": .array(wire)],
                finish: "tool_calls", model: model, prompt: prompt)
        }
    }

    /// `content` split into at most `count` pieces of whole characters.
    public static func pieces(of content: String, count: Int) -> [String] {
        let characters = Array(content)
        guard !characters.isEmpty else { return [] }
        let size = max(1, (characters.count + count - 1) / count)
        return stride(from: 0, to: characters.count, by: size).map { String(characters[$0..<min($0 + size, characters.count)]) }
    }

    /// A streamed completion: the role, the text pieces `interval` apart, each tool call (its
    /// name, then its arguments in two pieces), the finish reason, the usage, and `[DONE]`.
    /// Now, as `.clocked` writes it.
    static func clock() -> String { "t=\(Int64(Date().timeIntervalSince1970 * 1_000_000));" }

    static func stream(
        content: [String], calls: [ToolCall], interval: Duration, model: String, prompt: Request, clocked: Bool = false
    ) -> Response {
        let id = "chatcmpl-\(UUID().uuidString.prefix(12))"
        let created = Double(Int(Date().timeIntervalSince1970))
        @Sendable func chunk(_ delta: JSONValue, finish: JSONValue = .null) -> String {
            let body: JSONValue = [
                "id": .string(id), "object": "chat.completion.chunk", "created": .number(created), "model": .string(model),
                "choices": [["index": 0, "delta": delta, "finish_reason": finish]],
            ]
            return "data: \(body.jsonText)\n\n"
        }
        var events = [chunk(["role": "assistant", "content": ""])]
        var text: [String] = []
        for piece in content { text.append(chunk(["content": .string(piece)])) }
        let clockedChunk: @Sendable () -> String = { chunk(["content": .string(clock())]) }
        for (index, call) in calls.enumerated() {
            let arguments = JSONValue.object(call.args).jsonText
            let half = arguments.index(arguments.startIndex, offsetBy: arguments.count / 2)
            events.append(
                chunk(["tool_calls": [["index": .number(Double(index)), "id": .string(call.id), "type": "function", "function": ["name": .string(call.name), "arguments": ""]]]]))
            for part in [String(arguments[..<half]), String(arguments[half...])] {
                events.append(chunk(["tool_calls": [["index": .number(Double(index)), "function": ["arguments": .string(part)]]]]))
            }
        }
        let (promptTokens, completionTokens) = usage(prompt: prompt, content: content.joined())
        var tail = [chunk([:], finish: .string(calls.isEmpty ? "stop" : "tool_calls"))]
        let usage: JSONValue = [
            "id": .string(id), "object": "chat.completion.chunk", "created": .number(created), "model": .string(model), "choices": [],
            "usage": [
                "prompt_tokens": .number(Double(promptTokens)), "completion_tokens": .number(Double(completionTokens)),
                "total_tokens": .number(Double(promptTokens + completionTokens)),
            ],
        ]
        tail.append("data: \(usage.jsonText)\n\n")
        tail.append("data: [DONE]\n\n")
        let head = events
        let (pieces, ending) = (text, tail)
        let body = ResponseBody { writer in
            // A reply that is all there at once goes in one write, as a server sends what it has.
            if interval == .zero, !clocked {
                try await writer.write(ByteBuffer(string: (head + pieces + ending).joined()))
                try await writer.finish(nil)
                return
            }
            try await writer.write(ByteBuffer(string: head.joined()))
            for piece in pieces {
                if interval > .zero { try await Task.sleep(for: interval) }
                try await writer.write(ByteBuffer(string: clocked ? clockedChunk() : piece))
            }
            try await writer.write(ByteBuffer(string: ending.joined()))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    /// Token counts as a server would report them, about four characters a token.
    static func usage(prompt: Request, content: String) -> (Int, Int) {
        (max(1, prompt.messages.reduce(0) { $0 + $1.content.count } / 4), max(1, content.count / 4))
    }

    static func completion(message: JSONValue, finish: String, model: String, prompt: Request) -> Response {
        let (promptTokens, completionTokens) = usage(prompt: prompt, content: message["content"]?.stringValue ?? "")
        let body: JSONValue = [
            "id": .string("chatcmpl-\(UUID().uuidString.prefix(12))"), "object": "chat.completion",
            "created": .number(Date().timeIntervalSince1970.rounded()), "model": .string(model),
            "choices": [["index": 0, "message": message, "finish_reason": .string(finish)]],
            "usage": [
                "prompt_tokens": .number(Double(promptTokens)), "completion_tokens": .number(Double(completionTokens)),
                "total_tokens": .number(Double(promptTokens + completionTokens)),
            ],
        ]
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body.jsonText)))
    }
}

extension ScriptedModelServer {
    /// The failure scenarios' workload (the process-death tests, `make failover`): a query that
    /// starts with "multiply" calls `multiply`, one with "hotel" asks to book a hotel (a tool that
    /// waits for approval), any other is answered at once; a tool's result is answered. Every call
    /// takes 100 ms, so that a process or database lost under load holds tasks mid-step.
    @Sendable public static func mixedWorkload(_ request: Request) async -> Reply {
        guard let last = request.messages.last else { return .text("empty") }
        let reply: Reply
        if last.type == .tool {
            reply = .text("final: \(last.content)")
        } else if last.content.hasPrefix("multiply") {
            reply = .toolCalls([ToolCall(id: "call_mul", name: "multiply", args: ["a": 6, "b": 7])])
        } else if last.content.hasPrefix("hotel") {
            reply = .toolCalls([ToolCall(id: "call_hotel", name: "book_hotel", args: ["hotel_name": "如家酒店"])])
        } else {
            reply = .text("done: \(last.content)")
        }
        return .delayed(.milliseconds(100), reply)
    }
}
