import AgentKit
import AgentdApp
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Postgres
import ServiceLifecycle
import Testing
import TestSupport

/// One agentd process (in this test process): its own migrated database, a scripted model
/// server, the real HTTP server on a free port, and a real HTTP client.
final class ServiceHarness: Sendable {
    let baseURL: String
    let databaseURL: String
    let model: ScriptedModelServer
    let client: HTTPClient
    private let server: Task<Void, any Error>
    private let group: ServiceGroup

    struct Reply: Sendable {
        var status: Int
        var body: JSONValue
        var headers: HTTPHeaders
        subscript(key: String) -> JSONValue? { body[key] }
    }

    private init(
        baseURL: String, databaseURL: String, model: ScriptedModelServer, client: HTTPClient, server: Task<Void, any Error>, group: ServiceGroup
    ) {
        self.group = group
        self.baseURL = baseURL
        self.databaseURL = databaseURL
        self.model = model
        self.client = client
        self.server = server
    }

    /// - Parameter database: another service's database, to run a second process on it.
    static func start(
        model handler: @escaping @Sendable (ScriptedModelServer.Request) async -> ScriptedModelServer.Reply = { _ in .text("scripted answer") },
        database: String? = nil, logs: LogCapture? = nil, configure: (inout AgentdConfiguration) -> Void = { _ in }
    ) async throws -> ServiceHarness {
        let databaseURL: String
        if let database { databaseURL = database } else { databaseURL = try await TestDatabase.migrated() }
        let model = try await ScriptedModelServer.start(handler: handler)
        var configuration = AgentdConfiguration(
            databaseURL: databaseURL, host: "127.0.0.1", port: 0, llmBaseURL: model.baseURL, llmAPIKey: "test-key",
            llmModel: "scripted", llmTimeout: .seconds(10), llmMaxRetries: 2, workerSlots: 64, dbPoolSize: 4)
        configure(&configuration)
        var logger = Logger(label: "agentd.test")
        logger.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        if let logs { logger = logs.logger(label: "agentd.test") }
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let frozen = configuration
        let group = ServiceGroup(
            services: [AgentdServer.AsService(frozen, logger: logger) { port in portContinuation.yield(port) }],
            gracefulShutdownSignals: [], logger: logger)
        let server = Task {
            // A server that fails to start must not leave the caller waiting for its port.
            defer { portContinuation.finish() }
            try await group.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            _ = try await server.value
            throw HarnessError(message: "the server stopped before it listened")
        }
        return ServiceHarness(
            baseURL: "http://127.0.0.1:\(port)", databaseURL: databaseURL, model: model,
            client: HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration), server: server, group: group)
    }

    struct HarnessError: Error { var message: String }

    /// Tests send many requests at once (30 sessions' invokes): 8 connections at a time (more
    /// would only queue at the service's 4 database connections), and the rest wait for one
    /// as long as a machine busy with the whole suite may need, not the default 10 s.
    static var clientConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(60)
        return configuration
    }

    /// Graceful shutdown of the service alone (the model server and client stay up).
    func stopService() async {
        await group.triggerGracefulShutdown()
        _ = try? await server.value
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await server.value
        try? await client.shutdown()
        await model.shutdown()
    }

    // MARK: HTTP

    func send(
        _ method: HTTPMethod, _ path: String, body: String? = nil, contentType: String? = "application/json", authorization: String? = nil,
        rawBody: [UInt8]? = nil, extraHeaders: [(String, String)] = []
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        for (name, value) in extraHeaders { request.headers.add(name: name, value: value) }
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        if let rawBody { request.body = .bytes(ByteBuffer(bytes: rawBody)) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        let data = Data(buffer: bytes)
        let json = (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self))
        return Reply(status: Int(response.status.code), body: json, headers: response.headers)
    }

    func post(_ path: String, _ json: JSONValue) async throws -> Reply {
        try await send(.POST, path, body: json.jsonText)
    }

    func get(_ path: String) async throws -> Reply { try await send(.GET, path) }
    func delete(_ path: String) async throws -> Reply { try await send(.DELETE, path) }

    func invoke(_ user: String, _ session: String, _ task: String, _ query: String, system: String? = nil) async throws -> Reply {
        var body: [String: JSONValue] = ["user_id": .string(user), "session_id": .string(session), "task_id": .string(task), "query": .string(query)]
        if let system { body["system_message"] = .string(system) }
        return try await post("/agent/invoke", .object(body))
    }

    func resume(_ user: String, _ session: String, _ task: String, _ type: String, args: JSONValue? = nil) async throws -> Reply {
        var body: [String: JSONValue] = [
            "user_id": .string(user), "session_id": .string(session), "task_id": .string(task), "response_type": .string(type),
        ]
        if let args { body["args"] = args }
        return try await post("/agent/resume", .object(body))
    }

    func status(_ user: String, _ session: String, _ task: String) async throws -> Reply {
        try await get("/agent/status/\(user)/\(session)/\(task)")
    }

    /// Polls the status endpoint, as clients do, until the task leaves "running".
    func settle(_ user: String, _ session: String, _ task: String, timeout: Duration = .seconds(30)) async throws -> Reply {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let reply = try await status(user, session, task)
            if let state = reply["status"]?.stringValue, state != "running" { return reply }
            if clock.now > deadline { return reply }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    // MARK: Database

    func scalar(_ sql: PostgresQuery) throws -> Int {
        let connection = try PostgresConnection.connect(databaseURL)
        defer { connection.close() }
        let row = try connection.query(sql).first
        return try row?.decode(row?.columns.first?.name ?? "", as: Int.self) ?? 0
    }

    /// A task of the default tenant that a dead worker holds on its `attempts`-th claim, its
    /// lease running out `leaseSeconds` from now (negative: already expired), with its query message.
    func insertOrphan(
        _ user: String, _ session: String, _ task: String, attempts: Int, leaseSeconds: Double, owner: String = "dead-host:1:gone"
    ) throws {
        let connection = try PostgresConnection.connect(databaseURL)
        defer { connection.close() }
        try connection.query("INSERT INTO sessions (user_id, session_id) VALUES (\(user), \(session))")
        try connection.query("""
            INSERT INTO tasks (user_id, session_id, task_id, query, state, attempts, lease_owner, lease_expires_at)
            VALUES (\(user), \(session), \(task), 'hi', 'running', \(attempts), \(owner),
                    now() + make_interval(secs => \(leaseSeconds)))
            """)
        try connection.query("""
            INSERT INTO messages (user_id, session_id, task_id, position, type, content) VALUES (\(user), \(session), \(task), 0, 'human', 'hi')
            """)
    }

    func rows(_ sql: PostgresQuery) throws -> [PostgresRow] {
        let connection = try PostgresConnection.connect(databaseURL)
        defer { connection.close() }
        return try connection.query(sql).rows
    }
}

extension JSONValue {
    /// The `messages` of a completed status reply.
    var resultMessages: [JSONValue] {
        if case .array(let messages)? = self["last_response"]?["result"]?["messages"] { return messages }
        return []
    }
}
