import AgentdProcess
import AgentKit
import Foundation
import Postgres
import Testing
import TestSupport

/// Agents with the tools of a real MCP server (Tests/Fixtures/mcp_test_server.py), through the
/// whole service: listing, approval per tool, each decision, each failure as a tool result,
/// secrets, and a call never run twice.
// Serialized: each test starts an agentd, and all at once they would load the two cores enough
// to trip the timing-bound tests of other suites.
@Suite("agents with remote MCP tools", .serialized)
struct MCPAgentTests {
    static func start(logs: LogCapture? = nil) async throws -> ServiceHarness {
        try await ServiceHarness.start(model: namedToolModel, logs: logs) {
            $0.secretsKey = testSecretsKey
            $0.outboundAllowedHosts = ["127.0.0.1"]
        }
    }

    func putAgent(_ service: ServiceHarness, _ id: String = "maps", servers: [JSONValue]) async throws -> ServiceHarness.Reply {
        try await service.send(.PUT, "/agents/\(id)", body: JSONValue.object(["mcp_servers": .array(servers)]).jsonText)
    }

    func invoke(_ service: ServiceHarness, _ task: String, _ query: String, agent: String = "maps") async throws {
        let reply = try await service.post(
            "/agent/invoke", ["user_id": "u1", "session_id": .string("s-\(task)"), "task_id": .string(task), "query": .string(query), "agent_id": .string(agent)])
        #expect(reply.status == 200, "\(reply.body)")
    }

    func settle(_ service: ServiceHarness, _ task: String) async throws -> ServiceHarness.Reply {
        try await service.settle("u1", "s-\(task)", task)
    }

    /// Calls of `tool` with this argument (tests share the server and count their own).
    func calls(_ server: MCPTestServer, _ tool: String, _ argument: String) async throws -> Int {
        Int(try await server.stats()["calls"]?["\(tool):\(argument)"]?.numberValue ?? 0)
    }

    @Test("a read-only tool runs without approval; its result goes to the model and to tool_calls with the server's label")
    func readOnlyRuns() async throws {
        let mcp = try await MCPTestServer.shared()
        let service = try await Self.start()
        defer { Task { await service.stop() } }
        #expect(try await putAgent(service, servers: [["label": "maps", "url": .string(mcp.url), "require_approval": ["never": ["read_only": true]]]]).status == 200)
        try await invoke(service, "t1", #"maps__lookup {"city": "Lyon"}"#)
        let done = try await settle(service, "t1")
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages.last?["content"] == "final: weather in Lyon: sunny, 21°C")
        let offered = Set(service.model.requests.first?.toolNames ?? [])
        #expect(offered.isSuperset(of: ["maps__lookup", "maps__book", "book_hotel"]))
        let row = try #require(try service.rows("SELECT tool_name, status, server_label, outcome FROM tool_calls WHERE task_id = 't1'").first)
        #expect(try row.decode("tool_name", as: String.self) == "maps__lookup")
        #expect(try row.decode("status", as: String.self) == "ok")
        #expect(try row.decode("server_label", as: String?.self) == "maps")
        #expect(try row.decode("outcome", as: String?.self) == nil)
        #expect(try await calls(mcp, "lookup", "Lyon") == 1)
    }

    @Test("a tool that needs approval interrupts like book_hotel; each decision works as for it", arguments: [
        ("accept", JSONValue.null, "final: booked a table at Chez Paul accept", "Chez Paul accept"),
        ("edit", JSONValue.object(["args": ["place": "Le Bistro"]]), "final: booked a table at Le Bistro", "Le Bistro"),
        ("reject", JSONValue.null, "final: \(HumanDecision.rejectionMessage)", nil),
        ("response", JSONValue.object(["args": "no bookings today"]), "final: no bookings today", nil),
    ] as [(String, JSONValue, String, String?)])
    func approvals(decision: String, args: JSONValue, answer: String, booked: String?) async throws {
        let mcp = try await MCPTestServer.shared()
        let place = "Chez Paul \(decision)"
        let service = try await Self.start()
        defer { Task { await service.stop() } }
        #expect(try await putAgent(service, servers: [["label": "maps", "url": .string(mcp.url)]]).status == 200)
        try await invoke(service, "t1", #"maps__book {"place": "\#(place)"}"#)
        let waiting = try await settle(service, "t1")
        #expect(waiting["status"] == "interrupted")
        let data = try #require(waiting["last_response"]?["interrupt_data"])
        #expect(data["action_request"] == ["action": "maps__book", "args": ["place": .string(place)]])
        #expect(data["config"] == ["allow_accept": true, "allow_edit": true, "allow_respond": true, "allow_ignore": true])
        #expect(data["interrupt_type"] == "tool_approval")
        #expect(data["description"]?.stringValue?.contains("MCP server maps at 127.0.0.1:\(mcp.port)") == true)
        #expect(try await calls(mcp, "book", place) == 0)
        #expect(try await service.resume("u1", "s-t1", "t1", decision, args: args == .null ? nil : args).status == 200)
        let done = try await settle(service, "t1")
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages.last?["content"]?.stringValue == answer)
        if let booked { #expect(try await calls(mcp, "book", booked) == 1) }
        #expect(try await calls(mcp, "book", place) == (decision == "accept" ? 1 : 0))
        #expect(try service.scalar("SELECT count(*) FROM tool_calls WHERE task_id = 't1' AND server_label = 'maps'") == 1)
    }

    @Test("failures are tool results, recorded with their outcome, and the task goes on: isError, timeout, too big, unreachable")
    func failures() async throws {
        let mcp = try await MCPTestServer.shared()
        let refusing = try FreePort.bind()
        defer { close(refusing.socket) }
        let goneURL = "http://127.0.0.1:\(refusing.port)/mcp"
        let service = try await Self.start()
        defer { Task { await service.stop() } }
        #expect(
            try await putAgent(
                service,
                servers: [
                    ["label": "maps", "url": .string(mcp.url), "require_approval": "never", "timeout_s": 1],
                    ["label": "gone", "url": .string(goneURL), "require_approval": "never"],
                ]
            ).status == 200)
        let cases: [(String, String, String, String)] = [
            ("t1", "maps__fails {}", "tool_error", "the tool failed on purpose"),
            ("t2", #"maps__slow {"seconds": 5}"#, "timeout", "within 1.0 s"),
            ("t3", "maps__big {}", "truncated", "the result was 106496 bytes"),
        ]
        for (task, query, outcome, text) in cases {
            try await invoke(service, task, query)
            let done = try await settle(service, task)
            #expect(done["status"] == "completed", "\(task)")
            let row = try #require(try service.rows("SELECT status, outcome, output FROM tool_calls WHERE task_id = \(task)").first)
            #expect(try row.decode("outcome", as: String?.self) == outcome, "\(task)")
            #expect(try row.decode("status", as: String.self) == (outcome == "truncated" ? "ok" : "failed"))
            let recorded = try row.decode("output", as: String.self).contains(text)
            let answered = done.body.resultMessages.last?["content"]?.stringValue?.contains(text) == true
            #expect(recorded, "\(task)")
            #expect(answered, "\(task)")
        }
        // A server that cannot be listed offers no tools; the others still do, and the task completes.
        try await invoke(service, "t4", "gone__lookup {}")
        let done = try await settle(service, "t4")
        #expect(done["status"] == "completed")
        let offered = try #require(service.model.requests.last?.toolNames)
        #expect(offered.contains("maps__lookup"))
        #expect(!offered.contains { $0.hasPrefix("gone__") })
    }

    @Test("header values are never shown, never logged, stored sealed, and still reach the server")
    func secrets() async throws {
        let mcp = try await MCPTestServer.shared(["--require-auth", "t0p-s3cret"])
        let logs = LogCapture()
        let service = try await Self.start(logs: logs)
        defer { Task { await service.stop() } }
        let server: JSONValue = [
            "label": "maps", "url": .string(mcp.url), "headers": ["Authorization": "Bearer t0p-s3cret"], "require_approval": "never",
        ]
        let put = try await putAgent(service, servers: [server])
        #expect(put.status == 200)
        #expect(put["mcp_servers"]?.arrayItems.first?["headers"] == ["Authorization": "***"])
        try await invoke(service, "t1", #"maps__lookup {"city": "Oslo"}"#)
        #expect(try await settle(service, "t1").body.resultMessages.last?["content"] == "final: weather in Oslo: sunny, 21°C")
        let answers = [
            put.body.jsonText, try await service.get("/agents/maps").body.jsonText, try await service.get("/agents").body.jsonText,
            try await service.status("u1", "s-t1", "t1").body.jsonText, try await service.get("/agent/events/u1/s-t1/t1?format=json").body.jsonText,
        ]
        for answer in answers { #expect(!answer.contains("s3cret")) }
        #expect(try service.scalar("SELECT count(*) FROM agent_versions WHERE config::text LIKE '%s3cret%'") == 0)
        #expect(try service.scalar("SELECT count(*) FROM agent_versions WHERE config::text LIKE '%enc:v1:%'") == 1)
        // Sending "***" back (as read) would store the redaction: refused.
        let echoed = try await service.send(.PUT, "/agents/maps", body: JSONValue.object(["mcp_servers": [put["mcp_servers"]?.arrayItems.first ?? .null]]).jsonText)
        #expect(echoed.status == 422)
        #expect(!logs.text.isEmpty)
        #expect(!logs.text.contains("s3cret"))
    }

    @Test("a started call whose run died is not run again: the next run answers it as unknown")
    func neverTwice() async throws {
        let mcp = try await MCPTestServer.shared()
        let service = try await ServiceHarness.start(model: namedToolModel) {
            $0.outboundAllowedHosts = ["127.0.0.1"]
            $0.lease = .seconds(2)
        }
        defer { Task { await service.stop() } }
        #expect(try await putAgent(service, servers: [["label": "maps", "url": .string(mcp.url), "require_approval": "never"]]).status == 200)
        // A clean run commits the start, then the result in its place: one row.
        try await invoke(service, "t1", #"maps__book {"place": "once A"}"#)
        #expect(try await settle(service, "t1")["status"] == "completed")
        #expect(try service.scalar("SELECT count(*) FROM tool_calls WHERE task_id = 't1' AND status = 'ok'") == 1)
        #expect(try await calls(mcp, "book", "once A") == 1)

        // A worker that committed the start of maps__book and died: its lease has run out.
        let connection = try PostgresConnection.connect(service.databaseURL)
        defer { connection.close() }
        try connection.execute("INSERT INTO sessions (user_id, session_id) VALUES ('u1', 's-t2')")
        try connection.execute("""
            INSERT INTO tasks (user_id, session_id, task_id, query, state, attempts, lease_owner, lease_expires_at, agent_id, agent_version)
            VALUES ('u1', 's-t2', 't2', 'book B', 'running', 1, 'dead-host:1:gone', now() - interval '1 second', 'maps', 1)
            """)
        try connection.execute("""
            INSERT INTO messages (user_id, session_id, task_id, position, type, content, tool_calls) VALUES
                ('u1', 's-t2', 't2', 0, 'human', 'book B', NULL),
                ('u1', 's-t2', 't2', 1, 'ai', '', '[{"id": "call_b", "name": "maps__book", "args": {"place": "once B"}}]')
            """)
        try connection.execute("""
            INSERT INTO tool_calls (user_id, session_id, task_id, tool_call_id, tool_name, args, output, status, server_label)
            VALUES ('u1', 's-t2', 't2', 'call_b', 'maps__book', '{"place": "once B"}', '', 'started', 'maps')
            """)
        let done = try await service.settle("u1", "s-t2", "t2", timeout: .seconds(60))
        #expect(done["status"] == "completed")
        #expect(try await calls(mcp, "book", "once B") == 0, "not run again")
        let row = try #require(try service.rows("SELECT status, outcome FROM tool_calls WHERE task_id = 't2'").first)
        #expect(try row.decode("status", as: String.self) == "failed")
        #expect(try row.decode("outcome", as: String?.self) == "unknown")
        #expect(done.body.resultMessages.last?["content"]?.stringValue?.contains("not run again") == true)
    }
}

