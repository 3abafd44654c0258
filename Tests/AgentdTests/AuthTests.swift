import AgentKit
import Foundation
import NIOHTTP1
import Postgres
import Store
import Testing
import TestSupport

@Suite("tenants and API keys")
struct AuthTests {
    /// Keys of two tenants: A's tenant key, A's key for u1 only, B's tenant key, and a revoked A key.
    struct Keys {
        var tenantA: String
        var userA1: String
        var tenantB: String
        var revoked: String
        var adminB: String
    }

    static func makeKeys(_ service: ServiceHarness) async throws -> Keys {
        let pool = PostgresPool(configuration: .init(conninfo: service.databaseURL, size: 1, connectionSettings: .init(role: "agentd_service")))
        let store = KeyStore(pool: pool)
        func create(_ tenant: String, user: String? = nil, admin: Bool = false) async throws -> String {
            try await store.create(tenantID: tenant, userID: user, isAdmin: admin, name: nil, requestsPerSecond: nil, maxTasksInFlight: nil).key
        }
        let keys = Keys(
            tenantA: try await create("A"), userA1: try await create("A", user: "u1"), tenantB: try await create("B"),
            revoked: try await create("A"), adminB: try await create("B", admin: true))
        let revokedID = try #require(keys.revoked.split(separator: "_").dropFirst().first.map(String.init))
        #expect(try await store.revoke(keyID: revokedID))
        await pool.shutdown()
        return keys
    }

    func call(_ service: ServiceHarness, _ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil, key: String?) async throws
        -> ServiceHarness.Reply
    {
        try await service.send(method, path, body: body?.jsonText, authorization: key.map { "Bearer \($0)" })
    }

    func counts(_ service: ServiceHarness) throws -> [Int] {
        try ["sessions", "tasks", "messages", "memories", "interrupts", "tool_calls"].map {
            try service.scalar(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \($0)"))
        }
    }

    @Test("the matrix: own resources, another user's, another tenant's, revoked, missing and malformed keys")
    func matrix() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        let keys = try await Self.makeKeys(service)
        // Open mode ended with the first key.
        #expect(try await service.get("/agent/sessionids/u1").status == 401)

        // Tenant A: u1 and u2 each have s1/t1 waiting for approval and a memory; tenant B has its own u1 with s9/t9.
        for (user, key) in [("u1", keys.tenantA), ("u2", keys.tenantA)] {
            let body: JSONValue = ["user_id": .string(user), "session_id": "s1", "task_id": "t1", "query": "帮我预定如家酒店"]
            #expect(try await call(service, .POST, "/agent/invoke", body, key: key).status == 200)
            #expect(try await call(service, .POST, "/agent/write/longterm", ["user_id": .string(user), "memory_info": "我喜欢靠窗的座位"], key: key).status == 200)
        }
        #expect(try await call(service, .POST, "/agent/invoke", ["user_id": "u1", "session_id": "s9", "task_id": "t9", "query": "hello"], key: keys.tenantB).status == 200)
        #expect(try await call(service, .POST, "/agent/write/longterm", ["user_id": "u1", "memory_info": "B's secret"], key: keys.tenantB).status == 200)
        for (user, key) in [("u1", keys.tenantA), ("u2", keys.tenantA)] {
            for _ in 0..<500 {
                if try await call(service, .GET, "/agent/status/\(user)/s1/t1", key: key)["status"] == "interrupted" { break }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        // The user key acts for u1: everything of u1's works.
        let own: [(HTTPMethod, String, JSONValue?)] = [
            (.GET, "/agent/status/u1/s1/t1", nil), (.GET, "/agent/sessionids/u1", nil), (.GET, "/agent/tasks/u1/s1", nil),
            (.GET, "/agent/active/sessionid/u1", nil), (.GET, "/agent/memory/u1", nil), (.GET, "/system/info", nil),
        ]
        for (method, path, body) in own {
            let reply = try await call(service, method, path, body, key: keys.userA1)
            #expect(reply.status == 200, "\(path): \(reply.body)")
        }
        #expect(try await call(service, .GET, "/agent/sessionids/u1", key: keys.userA1).body == ["session_ids": ["s1"]])
        #expect(try await call(service, .GET, "/system/info", key: keys.userA1).body == ["sessions_count": 1, "active_users": ["u1"]])
        #expect(try await call(service, .GET, "/system/info", key: keys.tenantA).body == ["sessions_count": 2, "active_users": ["u1", "u2"]])
        #expect(try await call(service, .GET, "/system/info", key: keys.adminB).body == ["sessions_count": 3, "active_users": ["u1", "u2"]])

        // And the user key's own writes work: invoke, resume, memory, delete.
        let ownWrites: [(HTTPMethod, String, JSONValue?)] = [
            (.POST, "/agent/invoke", ["user_id": "u1", "session_id": "s2", "task_id": "t1", "query": "hello"]),
            (.POST, "/agent/resume", ["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": "reject"]),
            (.POST, "/agent/write/longterm", ["user_id": "u1", "memory_info": "I am vegetarian"]),
        ]
        for (method, path, body) in ownWrites {
            let reply = try await call(service, method, path, body, key: keys.userA1)
            #expect(reply.status == 200, "\(path): \(reply.body)")
        }
        #expect(try await service.status("u1", "s2", "t1").status == 401)  // polling without a key is refused
        var settled = JSONValue.null
        for _ in 0..<500 {
            settled = try await call(service, .GET, "/agent/status/u1/s1/t1", key: keys.userA1).body
            if settled["status"] == "completed" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(settled["status"] == "completed")
        #expect(try await call(service, .DELETE, "/agent/session/u1/s2", key: keys.userA1).status == 200)

        // Refused requests change nothing.
        let before = try counts(service)
        let otherUser: [(HTTPMethod, String, JSONValue?)] = [
            (.GET, "/agent/status/u2/s1/t1", nil), (.GET, "/agent/sessionids/u2", nil), (.GET, "/agent/tasks/u2/s1", nil),
            (.GET, "/agent/active/sessionid/u2", nil), (.GET, "/agent/memory/u2", nil),
            (.POST, "/agent/invoke", ["user_id": "u2", "session_id": "s1", "task_id": "t2", "query": "hi"]),
            (.POST, "/agent/resume", ["user_id": "u2", "session_id": "s1", "task_id": "t1", "response_type": "accept"]),
            (.POST, "/agent/write/longterm", ["user_id": "u2", "memory_info": "planted"]),
            (.DELETE, "/agent/session/u2/s1/t1", nil), (.DELETE, "/agent/task/u2/s1/t1", nil), (.DELETE, "/agent/session/u2/s1", nil),
            (.DELETE, "/agent/memory/u2/00000000-0000-0000-0000-000000000000", nil),
        ]
        for (method, path, body) in otherUser {
            let reply = try await call(service, method, path, body, key: keys.userA1)
            #expect(reply.status == 403, "\(method) \(path): \(reply.status) \(reply.body)")
            #expect(reply["detail"]?.stringValue?.contains("u1") == true)
        }
        // Tenant B's key sees B's u1, never A's, and cannot touch A's rows.
        #expect(try await call(service, .GET, "/agent/status/u1/s1/t1", key: keys.tenantB)["status"] == "not_found")
        #expect(try await call(service, .GET, "/agent/sessionids/u1", key: keys.tenantB).body == ["session_ids": ["s9"]])
        #expect(try await call(service, .GET, "/agent/tasks/u1/s1", key: keys.tenantB).body == ["task_ids": []])
        #expect(try await call(service, .GET, "/agent/active/sessionid/u1", key: keys.tenantB).body == ["active_session_id": "s9"])
        let bMemories = try await call(service, .GET, "/agent/memory/u1", key: keys.tenantB)
        #expect(bMemories["memories"].map { $0.jsonText.contains("靠窗") } == false)
        #expect(try await call(service, .POST, "/agent/resume", ["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": "accept"], key: keys.tenantB).status == 404)
        #expect(try await call(service, .DELETE, "/agent/session/u1/s1", key: keys.tenantB).status == 404)
        #expect(try await call(service, .DELETE, "/agent/session/u1/s1/t1", key: keys.tenantB).status == 404)
        // A's key likewise cannot see B's session of the same-named user.
        #expect(try await call(service, .GET, "/agent/status/u1/s9/t9", key: keys.tenantA)["status"] == "not_found")

        // Bad keys: 401 everywhere, with WWW-Authenticate.
        // The wrong secret differs in its last character (which is random, so it may be X already).
        let badHeaders: [String?] = [
            nil, "Basic dTE6cGFzcw==", "Bearer", "Bearer agentd_short_x", "Bearer " + keys.revoked,
            "Bearer " + String(keys.tenantA.dropLast()) + (keys.tenantA.hasSuffix("X") ? "Y" : "X"), "bearer  " + keys.tenantA + "extra",
            // No space after the scheme; a look-alike letter in the key (one Character, two bytes);
            // an underscore where the secret begins; a token of spaces only.
            "Bearer" + keys.tenantA, "Bearer " + String(keys.tenantA.dropLast()) + "é",
            "Bearer " + keys.tenantA.replacingOccurrences(of: "_", with: "-"), "Bearer    ",
        ]
        for header in badHeaders {
            for (method, path, body) in own + otherUser {
                let reply = try await service.send(method, path, body: body?.jsonText, authorization: header)
                #expect(reply.status == 401, "\(header ?? "no header") \(method) \(path)")
                #expect(reply.headers.first(name: "WWW-Authenticate") == "Bearer")
            }
        }
        #expect(try counts(service) == before)

        // The header scheme is case-insensitive; the right key still works after all that.
        #expect(try await service.send(.GET, "/agent/sessionids/u1", authorization: "bearer " + keys.userA1).status == 200)
        #expect(try await service.send(.GET, "/agent/sessionids/u1", authorization: "BEARER \t" + keys.userA1 + " \t").status == 200)
        // Health needs no key.
        #expect(try await service.get("/health").status == 200)
    }

    @Test("row-level security returns no foreign rows even to a query without a tenant filter")
    func rowLevelSecurity() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let keys = try await Self.makeKeys(service)
        _ = try await call(service, .POST, "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t1", "query": "hi"], key: keys.tenantA)
        _ = try await call(service, .POST, "/agent/invoke", ["user_id": "u1", "session_id": "s2", "task_id": "t1", "query": "hi"], key: keys.tenantB)
        _ = try await call(service, .POST, "/agent/write/longterm", ["user_id": "u1", "memory_info": "A's memory"], key: keys.tenantA)

        // As the service's role, with a tenant set per transaction, and no WHERE tenant_id.
        let connection = try PostgresConnection.connect(service.databaseURL, settings: .init(role: "agentd_service"))
        defer { connection.close() }
        func count(_ table: String, tenant: String?) throws -> Int {
            let settings: [(name: String, value: String)] = tenant.map { [(name: "agentd.tenant_id", value: $0)] } ?? []
            return try connection.withTransaction(settings: settings) { connection in
                try connection.query(PostgresQuery(unsafeSQL: "SELECT count(*) AS n FROM \(table)")).first?.decode("n", as: Int.self) ?? -1
            }
        }
        #expect(try count("sessions", tenant: "A") == 1)
        #expect(try count("sessions", tenant: "B") == 1)
        #expect(try count("sessions", tenant: nil) == 0)
        #expect(try count("memories", tenant: "B") == 0)
        #expect(try count("tasks", tenant: "C") == 0)
        // Writing another tenant's row is refused by the policy.
        let refused = #expect(throws: PostgresError.self) {
            try connection.withTransaction(settings: [(name: "agentd.tenant_id", value: "A")]) { connection in
                try connection.query("INSERT INTO sessions (tenant_id, user_id, session_id) VALUES ('B', 'u9', 's9')")
            }
        }
        #expect(refused?.sqlState == "42501")
        // A superuser still sees everything (operators' reports).
        #expect(try service.scalar("SELECT count(*) FROM sessions") == 2)
    }

    @Test("open mode refuses to start on a non-loopback address with no key")
    func openModeRefusesPublicBind() async throws {
        let error = await #expect(throws: (any Error).self) {
            _ = try await ServiceHarness.start(configure: { $0.host = "0.0.0.0" })
        }
        #expect("\(error.map { String(describing: $0) } ?? "")".contains("no API key"))
    }

    @Test("AUTH=required needs a key even with none created")
    func requiredMode() async throws {
        let service = try await ServiceHarness.start(configure: { $0.authRequired = true })
        defer { Task { await service.stop() } }
        #expect(try await service.get("/agent/sessionids/u1").status == 401)
        #expect(try await service.get("/health").status == 200)
    }

    @Test("a key's request rate and tasks in flight are limited, with Retry-After")
    func limits() async throws {
        let service = try await ServiceHarness.start(model: { _ in .delayed(.seconds(2), .text("slow")) })
        defer { Task { await service.stop() } }
        let pool = PostgresPool(configuration: .init(conninfo: service.databaseURL, size: 1))
        let store = KeyStore(pool: pool)
        // One request every five seconds: the burst below cannot be refilled in time, however slow the machine.
        let slow = try await store.create(tenantID: "A", userID: nil, isAdmin: false, name: "slow", requestsPerSecond: 0.2, maxTasksInFlight: nil).key
        let few = try await store.create(tenantID: "A", userID: nil, isAdmin: false, name: "few", requestsPerSecond: nil, maxTasksInFlight: 1).key
        await pool.shutdown()

        let replies = try await withThrowingTaskGroup(of: ServiceHarness.Reply.self) { group in
            for _ in 0..<5 { group.addTask { try await call(service, .GET, "/agent/sessionids/u1", key: slow) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(replies.filter { $0.status == 200 }.count == 1)
        #expect(replies.filter { $0.status == 429 }.count == 4)
        let retryAfter = replies.first { $0.status == 429 }?.headers.first(name: "Retry-After")
        #expect((1...5).contains(Int(retryAfter ?? "") ?? 0))

        #expect(try await call(service, .POST, "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t1", "query": "a"], key: few).status == 200)
        let second = try await call(service, .POST, "/agent/invoke", ["user_id": "u2", "session_id": "s1", "task_id": "t1", "query": "b"], key: few)
        #expect(second.status == 429)
        #expect(second.headers.first(name: "Retry-After") == "1")
        #expect(try service.scalar("SELECT count(*) FROM tasks") == 1)
    }
}
