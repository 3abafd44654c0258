import AgentKit
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The load generator's side of the REST contract, over keep-alive HTTP/1.1 connections.
struct LoadClient: Sendable {
    let http: HTTPClient
    let base: String
    /// Short polling instead of `?wait=`.
    let polling: Bool
    /// `Bearer <key>` on every request (`--keyed`), none in open mode.
    var authorization: String? = nil

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// An HTTP client keeping up to `connections` connections to the service.
    static func make(connections: Int) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connections
        configuration.timeout.connect = .seconds(10)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func send(_ method: HTTPMethod, _ path: String, body: String? = nil) async throws -> (status: Int, body: ByteBuffer) {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let authorization { request.headers.add(name: "authorization", value: authorization) }
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.execute(request, timeout: .seconds(60))
        return (Int(response.status.code), try await response.body.collect(upTo: 16 << 20))
    }

    /// Ids in the bench are ASCII letters, digits and dashes, so they go into JSON and paths as they are.
    func invoke(user: String, session: String, task: String, query: String, agent: String? = nil) async throws {
        let agentField = agent.map { #","agent_id":"\#($0)""# } ?? ""
        let (status, body) = try await send(
            .POST, "/agent/invoke",
            body: #"{"user_id":"\#(user)","session_id":"\#(session)","task_id":"\#(task)","query":"\#(query)"\#(agentField)}"#)
        guard status == 200 else { throw Failure(description: "invoke answered \(status): \(String(buffer: body))") }
    }

    func resume(user: String, session: String, task: String, decision: String) async throws {
        let (status, body) = try await send(
            .POST, "/agent/resume",
            body: #"{"user_id":"\#(user)","session_id":"\#(session)","task_id":"\#(task)","response_type":"\#(decision)"}"#)
        guard status == 200 else { throw Failure(description: "resume answered \(status): \(String(buffer: body))") }
    }

    func status(user: String, session: String, task: String, wait: Int? = nil) async throws -> String {
        let (code, body) = try await send(.GET, "/agent/status/\(user)/\(session)/\(task)" + (wait.map { "?wait=\($0)" } ?? ""))
        guard code == 200 else { throw Failure(description: "status answered \(code): \(String(buffer: body))") }
        guard let status = (try? JSONValue(parsing: body.readableBytesView))?["status"]?.stringValue else {
            throw Failure(description: "status answered without a status: \(String(buffer: body))")
        }
        return status
    }

    /// Waits for the task's status to be one of `states` and returns it: with `GET ...?wait=30`
    /// (the service answers when the task pauses or ends), or, when `polling`, as the original's
    /// clients do, polling 2 ms after asking and backing off to 50 ms.
    func wait(user: String, session: String, task: String, for states: Set<String>, timeout: Duration = .seconds(120)) async throws
        -> String
    {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var delay = Duration.milliseconds(2)
        while clock.now < deadline {
            if polling { try await Task.sleep(for: delay) }
            let state = try await status(user: user, session: session, task: task, wait: polling ? nil : 30)
            if states.contains(state) { return state }
            delay = min(delay * 2, .milliseconds(50))
        }
        throw Failure(description: "\(user)/\(session)/\(task) not \(states.sorted()) after \(timeout)")
    }
}
