import AgentKit
import AsyncHTTPClient
import Foundation
import Logging
import Outbound
import NIOCore
import NIOHTTP1

/// One server's tool as it listed it.
struct MCPToolInfo: Sendable, Equatable {
    var name: String
    var description: String
    /// The JSON Schema of its arguments (`inputSchema`).
    var inputSchema: JSONValue
    /// `annotations.readOnlyHint`: the server says it changes nothing.
    var readOnly: Bool
}

/// Why a request to an MCP server failed, and how, for `tool_calls.outcome`.
struct MCPFailure: Error, Sendable, CustomStringConvertible {
    enum Outcome: String, Sendable {
        case unreachable, timeout, refused
        case protocolError = "protocol_error"
    }

    var outcome: Outcome
    var message: String
    var description: String { message }
}

/// A client session with one MCP server over streamable HTTP (protocol revisions 2025-03-26 and
/// later): `initialize` then `notifications/initialized`, the `Mcp-Session-Id` the server gave
/// on every later request (a 404 for it starts a new session), `tools/list` page by page and
/// `tools/call`. An answer to a POST may be `application/json` or a `text/event-stream` that
/// carries the response among notifications. While the session lives it also listens on the
/// server's GET stream, when the server offers one, for `notifications/tools/list_changed`.
///
/// Why our own client rather than modelcontextprotocol/swift-sdk's `HTTPClientTransport`: on
/// Linux that transport does not read `text/event-stream` answers (the Python SDK's default),
/// it uses URLSession rather than the service's AsyncHTTPClient (so none of the outbound rules
/// above would hold), and the service needs only these four messages.
actor MCPSession {
    let server: MCPServerConfig
    let http: OutboundHTTP
    let logger: Logger
    /// How long a listed tool set is used before it is listed again.
    let ttl: Duration

    private var sessionID: String?
    private var protocolVersion: String?
    private var initializing: Task<Void, any Error>?
    private var ready = false
    private var nextID = 1
    private var tools: [MCPToolInfo]?
    private var listedAt: ContinuousClock.Instant?
    private var stale = false
    private var lastFailure: (MCPFailure, ContinuousClock.Instant)?
    /// How long a failed listing is the answer, for a server with no list at hand.
    static let failureMemory: Duration = .seconds(5)
    private var listener: Task<Void, Never>?
    /// Set by `close`: the session was let go of (evicted, or the process stops). A task still
    /// holding one of its tools may set it up again, without the GET stream.
    private var closed = false
    /// One listing at a time: tasks that start together share it.
    private var listing: Task<[MCPToolInfo], any Error>?

    /// Revisions this client speaks, newest first; the first is asked for.
    static let protocolVersions = ["2025-06-18", "2025-03-26"]
    static let maxResponseBytes = 4 << 20
    static let maxToolPages = 100
    static let maxTools = 2000

    init(server: MCPServerConfig, http: OutboundHTTP, ttl: Duration, logger: Logger) {
        self.server = server
        self.http = http
        self.ttl = ttl
        var logger = logger
        logger[metadataKey: "mcp_server"] = "\(server.label)"
        self.logger = logger
    }

    // MARK: Tools

    /// The server's tools, listed again when the list is older than the TTL or the server said
    /// it changed. A listing that fails while an older list is at hand keeps the older list.
    func listTools() async throws -> [MCPToolInfo] {
        if let tools, !stale, let listedAt, ContinuousClock.now - listedAt < ttl { return tools }
        // A server that just failed is not asked again by every task that starts meanwhile.
        if tools == nil, let (failure, at) = lastFailure, ContinuousClock.now - at < Self.failureMemory { throw failure }
        do {
            let fresh: [MCPToolInfo]
            if let listing {
                fresh = try await listing.value
            } else {
                let started = Task { try await self.listAll() }
                listing = started
                defer { listing = nil }
                fresh = try await started.value
            }
            tools = fresh
            listedAt = .now
            stale = false
            lastFailure = nil
            return fresh
        } catch let failure as MCPFailure {
            lastFailure = (failure, .now)
            guard let tools else { throw failure }
            logger.warning("listing the MCP server's tools failed; using the list from before", metadata: ["error": "\(failure.message)"])
            return tools
        }
    }

    private func listAll() async throws -> [MCPToolInfo] {
        var listed: [MCPToolInfo] = []
        var cursor: String?
        for _ in 0..<Self.maxToolPages {
            let params: JSONValue = cursor.map { ["cursor": .string($0)] } ?? [:]
            let result = try await request("tools/list", params: params)
            guard case .array(let items)? = result["tools"] else {
                throw MCPFailure(outcome: .protocolError, message: "tools/list answered without a tools array")
            }
            for item in items {
                guard let name = item["name"]?.stringValue, !name.isEmpty else { continue }
                var schema = item["inputSchema"] ?? ["type": "object", "properties": [:]]
                if schema.objectValue == nil { schema = ["type": "object", "properties": [:]] }
                let readOnly = item["annotations"]?["readOnlyHint"] == .bool(true)
                listed.append(
                    MCPToolInfo(
                        name: name, description: item["description"]?.stringValue ?? item["title"]?.stringValue ?? "",
                        inputSchema: schema, readOnly: readOnly))
                if listed.count > Self.maxTools {
                    throw MCPFailure(outcome: .protocolError, message: "the server lists more than \(Self.maxTools) tools")
                }
            }
            guard let next = result["nextCursor"]?.stringValue, !next.isEmpty, next != cursor else { return listed }
            cursor = next
        }
        throw MCPFailure(outcome: .protocolError, message: "tools/list did not end after \(Self.maxToolPages) pages")
    }

    /// `tools/call`: the call's result object (`content`, `structuredContent`, `isError`).
    func callTool(_ name: String, arguments: [String: JSONValue]) async throws -> JSONValue {
        try await request("tools/call", params: ["name": .string(name), "arguments": .object(arguments)])
    }

    /// The server said its tools changed: list them again at the next use.
    func markStale() {
        stale = true
    }

    /// Ends the session: stops listening and tells the server (DELETE), best effort.
    func close() async {
        closed = true
        ready = false
        listener?.cancel()
        listener = nil
        guard let sessionID else { return }
        self.sessionID = nil
        protocolVersion = nil
        var headers = baseHeaders()
        headers.replaceOrAdd(name: "Mcp-Session-Id", value: sessionID)
        if let response = try? await http.execute(
            url: server.url, method: .DELETE, headers: headers, body: nil, deadline: .now() + .seconds(2), credentials: server.headers.map(\.name))
        {
            _ = try? await response.body.collect(upTo: 64 << 10)
        }
    }

    // MARK: JSON-RPC over streamable HTTP

    /// A request's result, after the session is set up; a session the server no longer knows
    /// (404) is set up again once.
    private func request(_ method: String, params: JSONValue) async throws -> JSONValue {
        try await ensureReady()
        do {
            return try await send(method, params: params)
        } catch let expired as SessionExpired {
            // Only the session the 404 was about: another request may have set up a new one since.
            if sessionID == expired.sessionID {
                ready = false
                sessionID = nil
            }
            try await ensureReady()
            return try await send(method, params: params)
        }
    }

    /// The server no longer knows the session this request carried.
    private struct SessionExpired: Error {
        var sessionID: String
    }

    private func ensureReady() async throws {
        if ready { return }
        if let initializing {
            try await initializing.value
            return
        }
        let task = Task { try await self.initialize() }
        initializing = task
        defer { initializing = nil }
        try await task.value
    }

    private func initialize() async throws {
        // A new session: nothing of the one before is sent again.
        sessionID = nil
        protocolVersion = nil
        let result = try await send(
            "initialize",
            params: [
                "protocolVersion": .string(Self.protocolVersions[0]), "capabilities": [:],
                "clientInfo": ["name": "agentd", "version": "1"],
            ], initializing: true)
        guard let version = result["protocolVersion"]?.stringValue else {
            throw MCPFailure(outcome: .protocolError, message: "initialize answered without a protocolVersion")
        }
        guard Self.protocolVersions.contains(version) else {
            throw MCPFailure(
                outcome: .protocolError,
                message: "the server speaks MCP \(version); agentd speaks streamable HTTP, \(Self.protocolVersions.last ?? "") and later")
        }
        protocolVersion = version
        try await notify("notifications/initialized")
        ready = true
        if listener == nil, !closed, result["capabilities"]?["tools"]?["listChanged"] == .bool(true) {
            listener = Task { await self.listen() }
        }
    }

    private func baseHeaders() -> HTTPHeaders {
        var headers = HTTPHeaders()
        for header in server.headers { headers.add(name: header.name, value: header.value) }
        headers.replaceOrAdd(name: "Accept", value: "application/json, text/event-stream")
        if let protocolVersion { headers.replaceOrAdd(name: "MCP-Protocol-Version", value: protocolVersion) }
        return headers
    }

    private var deadline: NIODeadline { .now() + .milliseconds(Int64(server.timeoutSeconds * 1000)) }

    private func post(_ message: JSONValue) async throws -> HTTPClientResponse {
        var headers = baseHeaders()
        headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        if let sessionID { headers.replaceOrAdd(name: "Mcp-Session-Id", value: sessionID) }
        do {
            return try await http.execute(
                url: server.url, method: .POST, headers: headers, body: ByteBuffer(string: message.jsonText), deadline: deadline,
                credentials: server.headers.map(\.name))
        } catch let refused as OutboundHTTP.Refused {
            throw MCPFailure(outcome: .refused, message: "refused by OUTBOUND_ALLOWED_HOSTS: \(refused.reason)")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw MCPFailure(outcome: .timeout, message: "no answer within \(server.timeoutSeconds) s")
        } catch let error as HTTPClientError where error == .cancelled {
            throw CancellationError()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw MCPFailure(outcome: .unreachable, message: "cannot reach \(Self.hostAndPort(server.url)): \(error)")
        }
    }

    /// `text` with every configured header value masked: servers echo tokens in their errors,
    /// and error text reaches the model, `tool_calls` and the event stream.
    private func masked(_ text: some StringProtocol) -> String {
        var text = String(text)
        for header in server.headers where header.value.count >= 4 {
            text = text.replacingOccurrences(of: header.value, with: MCPServerConfig.redactedValue)
        }
        return text
    }

    private func notify(_ method: String) async throws {
        let response = try await post(["jsonrpc": "2.0", "method": .string(method)])
        _ = try? await response.body.collect(upTo: 64 << 10)
        guard (200..<300).contains(response.status.code) else {
            throw MCPFailure(outcome: .protocolError, message: "\(method) answered HTTP \(response.status.code)")
        }
    }

    /// One request and its response, read from a JSON body or an event stream.
    private func send(_ method: String, params: JSONValue, initializing: Bool = false) async throws -> JSONValue {
        let id = nextID
        nextID += 1
        let carried = sessionID
        let response = try await post(["jsonrpc": "2.0", "id": .number(Double(id)), "method": .string(method), "params": params])
        let status = response.status.code
        if status == 404, let carried, !initializing {
            _ = try? await response.body.collect(upTo: 64 << 10)
            throw SessionExpired(sessionID: carried)
        }
        guard (200..<300).contains(status) else {
            let body = (try? await response.body.collect(upTo: 64 << 10)).map { masked(String(buffer: $0).prefix(300)) } ?? ""
            throw MCPFailure(outcome: .protocolError, message: "\(method) answered HTTP \(status) \(response.status.reasonPhrase) \(body)")
        }
        if initializing, let session = response.headers.first(name: "Mcp-Session-Id"), !session.isEmpty {
            guard session.utf8.count <= 1024, session.unicodeScalars.allSatisfy({ $0.value >= 0x21 && $0.value <= 0x7e }) else {
                throw MCPFailure(outcome: .protocolError, message: "the server sent an invalid Mcp-Session-Id")
            }
            sessionID = session
        }
        let message: JSONValue
        do {
            message = try await withDeadline(server.timeoutSeconds) {
                try await Self.readResponse(response, id: id, onNotification: { [weak self] method in
                    if method == "notifications/tools/list_changed" { Task { await self?.markStale() } }
                })
            }
        } catch let failure as MCPFailure {
            throw failure
        } catch is DeadlineExceeded {
            throw MCPFailure(outcome: .timeout, message: "\(method): no whole answer within \(server.timeoutSeconds) s")
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw MCPFailure(outcome: .unreachable, message: "\(method): the answer broke off: \(error)")
        }
        if let error = message["error"], error != .null {
            // Any number may come back; only an integer in range is printed as one.
            let code = error["code"]?.numberValue.flatMap { $0.rounded() == $0 && abs($0) < 1e15 ? " \(Int($0))" : nil } ?? ""
            let text = masked((error["message"]?.stringValue ?? error.jsonText).prefix(1000))
            throw MCPFailure(outcome: .protocolError, message: "\(method) failed (JSON-RPC error\(code)): \(text)")
        }
        guard let result = message["result"], result.objectValue != nil else {
            throw MCPFailure(outcome: .protocolError, message: "\(method) answered without a result object")
        }
        return result
    }

    /// The JSON-RPC response with `id`, from a JSON body (one message or a batch) or an event stream.
    private static func readResponse(
        _ response: HTTPClientResponse, id: Int, onNotification: @Sendable (String) -> Void
    ) async throws -> JSONValue {
        func matches(_ message: JSONValue) -> Bool {
            message["id"]?.numberValue == Double(id) && (message["result"] != nil || message["error"] != nil)
        }
        let type = response.headers.first(name: "Content-Type")?.lowercased() ?? ""
        if type.hasPrefix("text/event-stream") {
            var events = ServerSentEvents()
            var received = 0
            for try await chunk in response.body {
                received += chunk.readableBytes
                guard received <= maxResponseBytes else {
                    throw MCPFailure(outcome: .protocolError, message: "the answer is larger than \(maxResponseBytes) bytes")
                }
                for event in try events.feed(chunk.readableBytesView) where event.type == "message" {
                    guard let message = try? JSONValue(parsing: Array(event.data.utf8)) else {
                        throw MCPFailure(outcome: .protocolError, message: "the event stream sent a message that is not JSON")
                    }
                    for item in message.batch {
                        if matches(item) { return item }
                        if let method = item["method"]?.stringValue { onNotification(method) }
                    }
                }
            }
            throw MCPFailure(outcome: .protocolError, message: "the event stream ended without the response")
        }
        guard type.hasPrefix("application/json") else {
            throw MCPFailure(outcome: .protocolError, message: "the server answered \(type.isEmpty ? "no content type" : type), not JSON or an event stream")
        }
        let bytes: ByteBuffer
        do {
            bytes = try await response.body.collect(upTo: maxResponseBytes)
        } catch is NIOTooManyBytesError {
            throw MCPFailure(outcome: .protocolError, message: "the answer is larger than \(maxResponseBytes) bytes")
        }
        guard let message = try? JSONValue(parsing: bytes.readableBytesView) else {
            throw MCPFailure(outcome: .protocolError, message: "the server's answer is not JSON")
        }
        for item in message.batch {
            if matches(item) { return item }
            if let method = item["method"]?.stringValue { onNotification(method) }
        }
        throw MCPFailure(outcome: .protocolError, message: "the answer does not carry the response to request \(id)")
    }

    // MARK: The server's own stream

    /// Holds the GET stream open while the session lives, marking the tools stale on
    /// `notifications/tools/list_changed`. A server without one (405) is left to the TTL.
    private func listen() async {
        // Whatever ends it, a session set up again may listen anew.
        defer { listener = nil }
        var failures = 0
        while !Task.isCancelled, !closed {
            var headers = baseHeaders()
            headers.replaceOrAdd(name: "Accept", value: "text/event-stream")
            if let sessionID { headers.replaceOrAdd(name: "Mcp-Session-Id", value: sessionID) }
            do {
                let response = try await http.execute(
                    url: server.url, method: .GET, headers: headers, body: nil, deadline: .now() + .hours(1), credentials: server.headers.map(\.name))
                let type = response.headers.first(name: "Content-Type")?.lowercased() ?? ""
                guard response.status.code == 200, type.hasPrefix("text/event-stream") else {
                    _ = try? await response.body.collect(upTo: 64 << 10)
                    if [404, 405].contains(response.status.code) || (400..<500).contains(response.status.code) { return }
                    throw MCPFailure(outcome: .protocolError, message: "GET answered \(response.status.code)")
                }
                failures = 0
                var events = ServerSentEvents()
                for try await chunk in response.body {
                    for event in try events.feed(chunk.readableBytesView) where event.type == "message" {
                        let message = try? JSONValue(parsing: Array(event.data.utf8))
                        if message?.batch.contains(where: { $0["method"]?.stringValue == "notifications/tools/list_changed" }) == true {
                            markStale()
                        }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                logger.debug("the MCP server's event stream broke; listening again", metadata: ["error": "\(error)"])
            }
            // Whatever was missed while not listening: list again at the next use.
            markStale()
            let delay = min(60.0, pow(2.0, Double(min(failures, 6))))
            guard (try? await Task.sleep(for: .seconds(delay))) != nil else { return }
        }
    }

    static func hostAndPort(_ url: String) -> String {
        guard let components = URLComponents(string: url), let host = components.host else { return url }
        return components.port.map { "\(host):\($0)" } ?? host
    }
}

extension JSONValue {
    /// The messages of a JSON-RPC batch, or this one message.
    fileprivate var batch: [JSONValue] {
        if case .array(let items) = self { return items }
        return [self]
    }
}

struct DeadlineExceeded: Error {}

/// Runs `body`, cancelling it once `seconds` have passed (an answer's body can outlast the
/// request's own deadline, which covers its head).
func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw DeadlineExceeded() }
        guard let value = first else { throw DeadlineExceeded() }
        return value
    }
}
