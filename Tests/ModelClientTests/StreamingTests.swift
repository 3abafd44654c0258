import AgentKit
import AsyncHTTPClient
import Logging
import ModelClient
import Synchronization
import Testing
import TestSupport

@Suite("streamed chat completions")
struct StreamingTests {
    let request = OpenAICompatibleModelTests.request

    /// Collects what a call hands to `deltas`.
    final class Deltas: Sendable {
        let seen = Mutex<[ModelDelta]>([])
        var text: String {
            seen.withLock { $0.compactMap { if case .text(let t) = $0 { t } else { nil } }.joined() }
        }
        func add(_ delta: ModelDelta) { seen.withLock { $0.append(delta) } }
    }

    func withModel(
        stream: Bool = true, retries: Int = 2, _ body: (OpenAICompatibleModel, ScriptedModelServer) async throws -> Void
    ) async throws {
        let server = try await ScriptedModelServer.start()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let model = OpenAICompatibleModel(
            configuration: .init(
                baseURL: server.baseURL, apiKey: "sk-test", model: "test-model", timeout: .seconds(5), maxRetries: retries,
                initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(50), stream: stream),
            httpClient: client, logger: Logger(label: "test"))
        do {
            try await body(model, server)
        } catch {
            try await client.shutdown()
            await server.shutdown()
            throw error
        }
        try await client.shutdown()
        await server.shutdown()
    }

    @Test("text arrives piece by piece; the reply is whole, with the usage from the last chunk")
    func text() async throws {
        try await withModel { model, server in
            server.enqueue(.streamed(["你好", "，我是", " the ", "assistant"], interval: .milliseconds(20)))
            let deltas = Deltas()
            let reply = try await model.complete(request, deltas: { deltas.add($0) })
            #expect(reply.message.content == "你好，我是 the assistant")
            #expect(deltas.seen.withLock { $0 } == [.text("你好"), .text("，我是"), .text(" the "), .text("assistant")])
            #expect(reply.usage != nil)
            #expect(reply.model == "test-model")
            let sent = try #require(server.requests.last)
            #expect(sent.streams)
            #expect(sent.body["stream_options"]?["include_usage"] == true)
        }
    }

    @Test("tool calls are put together from their pieces, several in one reply")
    func toolCalls() async throws {
        try await withModel { model, server in
            let calls = [
                ToolCall(id: "c1", name: "book_hotel", args: ["hotel_name": "如家酒店"]),
                ToolCall(id: "c2", name: "multiply", args: ["a": 6, "b": 7]),
            ]
            server.enqueue(.toolCalls(calls, content: "Let me do both."))
            let reply = try await model.complete(request)
            #expect(reply.message.toolCalls == calls)
            #expect(reply.message.content == "Let me do both.")
        }
    }

    @Test("tool calls without an index are told apart by their ids")
    func unindexedCalls() async throws {
        try await withModel { model, server in
            func chunk(_ delta: String) -> String { #"data: {"choices":[{"index":0,"delta":"# + delta + #","finish_reason":null}]}"# + "\n\n" }
            server.enqueue(.rawStream(
                chunk(#"{"tool_calls":[{"id":"a","function":{"name":"multiply","arguments":"{\"a\":"}}]}"#)
                    + chunk(#"{"tool_calls":[{"function":{"arguments":"2,\"b\":3}"}}]}"#)
                    + chunk(#"{"tool_calls":[{"id":"b","function":{"name":"book_hotel","arguments":"{\"hotel_name\":\"如家\"}"}}]}"#)
                    + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\n" + "data: [DONE]\n\n"))
            let reply = try await model.complete(request)
            #expect(reply.message.toolCalls == [
                ToolCall(id: "a", name: "multiply", args: ["a": 2, "b": 3]), ToolCall(id: "b", name: "book_hotel", args: ["hotel_name": "如家"]),
            ])
            // Neither index nor id: a second name starts a second call.
            server.enqueue(.rawStream(
                chunk(#"{"tool_calls":[{"function":{"name":"multiply","arguments":"{}"}},{"function":{"name":"book_hotel","arguments":"{}"}}]}"#)
                    + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\n" + "data: [DONE]\n\n"))
            let named = try await model.complete(request)
            #expect(named.message.toolCalls.map(\.name) == ["multiply", "book_hotel"])
        }
    }

    @Test("malformed and truncated streams are clear model errors, never a crash", arguments: [
        ("data: {not json\n\n", "not a JSON object"),
        ("data: [1, 2]\n\n", "not a JSON object"),
        ("data: {\"error\": {\"message\": \"overloaded\"}}\n\n", "overloaded"),
        (#"data: {"choices":[{"index":0,"delta":{"content":"half"},"finish_reason":null}]}"# + "\n\n", "ended before the reply was complete"),
        ("", "ended before the reply was complete"),
        (": just a comment\n\n", "ended before the reply was complete"),
        (#"data: {"choices":[{"index":0,"delta":{"content":"cut mid-chu"# , "ended before the reply was complete"),
    ])
    func brokenStreams(body: String, reason: String) async throws {
        try await withModel(retries: 1) { model, server in
            server.setHandler { _ in .rawStream(body) }
            do {
                _ = try await model.complete(request)
                Issue.record("a broken stream was accepted: \(body)")
            } catch let error as ModelError {
                #expect(error.message.contains(reason), "\(error.message)")
            }
        }
    }

    @Test("a truncated stream is tried again, and the client is told to drop the text so far")
    func truncatedThenWhole() async throws {
        try await withModel { model, server in
            server.enqueue(.rawStream(#"data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"# + "\n\n"))
            server.enqueue(.streamed(["Hello", " again"], interval: .zero))
            let deltas = Deltas()
            let reply = try await model.complete(request, deltas: { deltas.add($0) })
            #expect(reply.message.content == "Hello again")
            #expect(deltas.seen.withLock { $0 } == [.text("Hel"), .restart, .text("Hello"), .text(" again")])
        }
    }

    @Test("a server that refuses to stream is called without streaming, then and afterwards")
    func refusal() async throws {
        try await withModel { model, server in
            server.setRefusesStreaming(true)
            server.setHandler { _ in .text("plain answer") }
            let reply1 = try await model.complete(request)
            #expect(reply1.message.content == "plain answer")
            let reply2 = try await model.complete(request)
            #expect(reply2.message.content == "plain answer")
            #expect(server.requests.map(\.streams) == [true, false, false])
        }
    }

    @Test("a server that ignores stream and answers a plain completion is read as one")
    func ignoredStream() async throws {
        try await withModel { model, server in
            server.enqueue(.malformed(#"{"model":"m","choices":[{"message":{"role":"assistant","content":"whole"}}]}"#))
            let reply3 = try await model.complete(request)
            #expect(reply3.message.content == "whole")
        }
    }

    @Test("LLM_STREAM=0: plain calls, no stream parameter")
    func off() async throws {
        try await withModel(stream: false) { model, server in
            server.enqueue(.streamed(["a", "b"], interval: .zero))
            let reply4 = try await model.complete(request)
            #expect(reply4.message.content == "ab")
            #expect(server.requests.last?.streams == false)
            #expect(server.requests.last?.body["stream"] == nil)
        }
    }
}
