import AgentKit
import AgentdApp
import AgentdProcess
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import TestSupport

@Suite("request ids and JSON logs")
struct LogTests {
    @Test("a JSON line holds time, level, message, logger and the metadata as fields")
    func jsonLine() throws {
        let lines = Mutex<[[UInt8]]>([])
        var handler = JSONLogHandler(label: "agentd.test") { line in lines.withLock { $0.append(line) } }
        handler.logLevel = .info
        handler[metadataKey: "request_id"] = "r-1"
        let logger = Logger(label: "agentd.test") { _ in handler }
        logger.debug("not at info")
        logger.info("task failed", metadata: ["tenant": "default", "attempts": .stringConvertible(2), "nested": ["a": "b"]])
        let written = lines.withLock { $0 }
        #expect(written.count == 1)
        let line = try #require(written.first)
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(!line.dropLast().contains(UInt8(ascii: "\n")))
        let object = try JSONValue(parsing: line)
        #expect(object["message"] == "task failed")
        #expect(object["level"] == "info")
        #expect(object["logger"] == "agentd.test")
        #expect(object["request_id"] == "r-1")
        #expect(object["tenant"] == "default")
        #expect(object["attempts"] == "2")
        #expect(object["nested"] == ["a": "b"])
        #expect(object["time"]?.stringValue?.firstMatch(of: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) != nil)
    }

    @Test("x-request-id comes back on every response, follows an invoke into the worker's log lines, and only JSON is written")
    func requestIDFollowsTheTask() async throws {
        let database = try await TestDatabase.migrated()
        let model = try await ScriptedModelServer.start(handler: { request in
            request.messages.last?.content.hasPrefix("fail") == true ? .failure(status: 400) : .text("fine")
        })
        defer { Task { await model.shutdown() } }
        let agentd = try await AgentdProcess(
            executable: TestDatabase.sqlDirectory.deletingLastPathComponent().appendingPathComponent(".build/debug/agentd"),
            environment: [
                "DATABASE_URL": database, "LLM_BASE_URL": model.baseURL, "LLM_MODEL": "scripted", "LLM_MAX_RETRIES": "0", "LOG_FORMAT": "json",
                "LLM_API_KEY": "sk-secret-9911",
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin",
            ])
        defer { agentd.stop() }
        let base = "http://127.0.0.1:\(agentd.port)"
        func send(_ path: String, body: String? = nil, id: String? = nil) async throws -> HTTPClientResponse {
            var request = HTTPClientRequest(url: base + path)
            if let body {
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: body))
            }
            if let id { request.headers.add(name: "x-request-id", value: id) }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 1 << 20)
            return response
        }
        let invoked = try await send(
            "/agent/invoke", body: #"{"user_id":"u1","session_id":"s1","task_id":"t1","query":"fail: the secret query text 7731"}"#, id: "req-abc.1")
        #expect(invoked.status == .ok)
        #expect(invoked.headers.first(name: "x-request-id") == "req-abc.1")
        // Made here when absent or unusable (a space, or longer than 128).
        for sent in [nil, "has space", String(repeating: "a", count: 129)] {
            let reply = try await send("/agent/status/u1/s1/t1", id: sent)
            let made = try #require(reply.headers.first(name: "x-request-id"))
            #expect(made.firstMatch(of: /^[0-9a-f]{32}$/) != nil)
        }
        // Errors carry it too: a 404 of the router, a 422 of a handler.
        #expect(try await send("/nowhere", id: "req-404").headers.first(name: "x-request-id") == "req-404")
        let refused = try await send("/agent/invoke", body: "{}", id: "req-422")
        #expect(refused.status == .unprocessableEntity)
        #expect(refused.headers.first(name: "x-request-id") == "req-422")

        // The worker's line about the task's failure names the invoke's id, the tenant and the task.
        var failure: JSONValue?
        for _ in 0..<200 {
            let lines = agentd.log.split(separator: "\n").compactMap { try? JSONValue(parsing: Array($0.utf8)) }
            failure = lines.first { $0["message"] == "task failed" }
            if failure != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let line = try #require(failure)
        #expect(line["request_id"] == "req-abc.1")
        #expect(line["tenant"] == "default")
        #expect(line["task"]?.stringValue?.contains("t1") == true)
        #expect(line["level"]?.stringValue != nil)
        // Every line is one JSON object; none holds the query's text (at info).
        let log = agentd.log
        for text in log.split(separator: "\n") {
            let object = try? JSONValue(parsing: Array(text.utf8))
            #expect(object?["time"] != nil && object?["message"] != nil, "not a JSON log line: \(text.prefix(200))")
        }
        #expect(!log.contains("7731"))
        #expect(!log.contains("sk-secret-9911"))
    }
}
