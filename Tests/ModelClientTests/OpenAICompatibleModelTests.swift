import AgentdProcess
#if canImport(Glibc)
import Glibc
#endif
import AgentKit
import AsyncHTTPClient
import Logging
import ModelClient
import Testing
import TestSupport

@Suite("OpenAI-compatible model client against the scripted server")
struct OpenAICompatibleModelTests {
    static let request = ModelRequest(
        messages: [
            .system("sys"), .human("book it"),
            .ai("", toolCalls: [ToolCall(id: "c1", name: "book_hotel", args: ["hotel_name": "如家"])]),
            .tool("booked", name: "book_hotel", callID: "c1"),
        ],
        tools: [BookHotelTool().spec, MultiplyTool().spec])

    func withModel(
        apiKey: String? = "sk-test", timeout: Duration = .seconds(5), retries: Int = 2, server: ScriptedModelServer? = nil,
        _ body: (OpenAICompatibleModel, ScriptedModelServer) async throws -> Void
    ) async throws {
        let scripted: ScriptedModelServer
        if let server { scripted = server } else { scripted = try await ScriptedModelServer.start() }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let model = OpenAICompatibleModel(
            configuration: .init(
                baseURL: scripted.baseURL + "/", apiKey: apiKey, model: "test-model", timeout: timeout, maxRetries: retries,
                initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(100)),
            httpClient: client, logger: Logger(label: "test"))
        do {
            try await body(model, scripted)
        } catch {
            try await client.shutdown()
            await scripted.shutdown()
            throw error
        }
        try await client.shutdown()
        await scripted.shutdown()
    }

    @Test("token counts and Retry-After values that are no sane number are ignored, not trapped on")
    func insaneNumbers() async throws {
        try await withModel { model, server in
            for usage in [#"{"prompt_tokens": 1e300, "completion_tokens": 2}"#, #"{"prompt_tokens": "nan", "completion_tokens": "inf"}"#,
                          #"{"prompt_tokens": -5, "completion_tokens": 3000000000}"#] {
                server.enqueue(.malformed(#"{"model": "m\u0000x", "choices": [{"message": {"role": "assistant", "content": "ok"}}], "usage": "# + usage + "}"))
                let reply = try await model.complete(Self.request)
                #expect(reply.message.content == "ok")
                #expect(reply.usage == nil, "\(usage)")
            }
            for retryAfter in ["1e300", "inf", "nan", "-1"] {
                server.enqueue(.failure(status: 503, retryAfter: retryAfter))
                server.enqueue(.text("after"))
                #expect(try await model.complete(Self.request).message.content == "after")
            }
        }
    }

    @Test("a text reply round trip, and the request on the wire")
    func textReply() async throws {
        try await withModel { model, server in
            server.enqueue(.text("你好"))
            let reply = try await model.complete(Self.request)
            #expect(reply.message.type == .ai)
            #expect(reply.message.content == "你好")
            #expect(reply.message.toolCalls.isEmpty)
            #expect(reply.model == "test-model")
            #expect((reply.usage?.promptTokens ?? 0) > 0)

            let wire = try #require(server.requests.first)
            #expect(wire.authorization == "Bearer sk-test")
            #expect(wire.model == "test-model")
            #expect(wire.toolNames == ["book_hotel", "multiply"])
            #expect(wire.body["tool_choice"] == "auto")
            guard case .array(let messages)? = wire.body["messages"] else {
                Issue.record("no messages")
                return
            }
            #expect(messages.map { $0["role"] } == ["system", "user", "assistant", "tool"])
            #expect(messages[2]["content"] == .null)
            #expect(messages[2]["tool_calls"]?.jsonText.contains(#""arguments":"{\"hotel_name\":\"如家\"}""#) == true)
            #expect(messages[3]["tool_call_id"] == "c1")
            // Round-tripped through the server's parser: the same conversation.
            #expect(wire.messages.map(\.type) == [.system, .human, .ai, .tool])
            #expect(wire.messages[2].toolCalls.first?.args == ["hotel_name": "如家"])
        }
    }

    @Test("tool calls come back with their ids and parsed arguments; no key, no Authorization header")
    func toolCalls() async throws {
        try await withModel(apiKey: nil) { model, server in
            server.enqueue(.toolCalls([ToolCall(id: "call_9", name: "multiply", args: ["a": 2, "b": 3.5])]))
            let reply = try await model.complete(ModelRequest(messages: [.human("2*3.5")], tools: []))
            #expect(reply.message.toolCalls == [ToolCall(id: "call_9", name: "multiply", args: ["a": 2, "b": 3.5])])
            #expect(server.requests.first?.authorization == nil)
            #expect(server.requests.first?.body["tools"] == nil)
        }
    }

    @Test("two 503s then success succeeds on the third attempt")
    func retriesServerErrors() async throws {
        try await withModel { model, server in
            server.enqueue(.failure(status: 503), .failure(status: 503), .text("ok"))
            let reply = try await model.complete(Self.request)
            #expect(reply.message.content == "ok")
            #expect(server.requestCount == 3)
        }
    }

    @Test("429 with Retry-After is retried")
    func retriesRateLimits() async throws {
        try await withModel { model, server in
            server.enqueue(.failure(status: 429, retryAfter: "0"), .text("ok"))
            let reply = try await model.complete(Self.request)
            #expect(reply.message.content == "ok")
            #expect(server.requestCount == 2)
        }
    }

    @Test("a server that always fails gives a ModelError naming the status and the attempts")
    func alwaysFails() async throws {
        try await withModel(retries: 2) { model, server in
            server.setHandler { _ in .failure(status: 500, body: "boom") }
            let error = await #expect(throws: ModelError.self) { try await model.complete(Self.request) }
            #expect(error?.message.contains("500") == true)
            #expect(error?.message.contains("boom") == true)
            #expect(error?.message.contains("3 attempts") == true)
            #expect(server.requestCount == 3)
        }
    }

    @Test("a 400 fails at once, without retries")
    func clientErrorsAreFinal() async throws {
        try await withModel { model, server in
            server.setHandler { _ in .failure(status: 400, body: #"{"error":{"message":"bad tools"}}"#) }
            let error = await #expect(throws: ModelError.self) { try await model.complete(Self.request) }
            #expect(error?.message.contains("400") == true)
            #expect(server.requestCount == 1)
        }
    }

    @Test("a reply slower than the timeout is a timeout error")
    func timeout() async throws {
        // A second is room for each attempt to reach the server on a machine busy with the whole suite.
        try await withModel(timeout: .seconds(1), retries: 1) { model, server in
            server.setHandler { _ in .delayed(.seconds(10), .text("too late")) }
            let error = await #expect(throws: ModelError.self) { try await model.complete(Self.request) }
            #expect(error?.message.contains("timed out") == true)
            #expect(server.requestCount == 2)
        }
    }

    @Test("a 200 that is not a chat completion fails without a retry")
    func malformed() async throws {
        try await withModel { model, server in
            server.enqueue(.malformed("<html>gateway</html>"))
            let error = await #expect(throws: ModelError.self) { try await model.complete(Self.request) }
            #expect(error?.message.contains("gateway") == true)
            #expect(server.requestCount == 1)
        }
    }

    @Test("tool arguments that are not JSON become empty arguments instead of a crash")
    func brokenArguments() async throws {
        try await withModel { model, server in
            server.enqueue(
                .malformed(
                    #"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"x","type":"function","function":{"name":"multiply","arguments":"{not json"}}]}}]}"#
                ))
            let reply = try await model.complete(Self.request)
            #expect(reply.message.toolCalls == [ToolCall(id: "x", name: "multiply", args: [:])])
            #expect(reply.usage == nil)
        }
    }

    @Test("an unreachable server is reported as such")
    func unreachable() async throws {
        let refusing = try FreePort.bind()
        defer { close(refusing.socket) }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let model = OpenAICompatibleModel(
            configuration: .init(
                baseURL: "http://127.0.0.1:\(refusing.port)/v1", model: "m", timeout: .seconds(2), maxRetries: 1,
                initialBackoff: .milliseconds(10)),
            httpClient: client, logger: Logger(label: "test"))
        let error = await #expect(throws: ModelError.self) { try await model.complete(Self.request) }
        #expect(error?.message.contains("unreachable") == true)
        #expect(error?.message.contains("2 attempts") == true)
        try await client.shutdown()
    }
}
