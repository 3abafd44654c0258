import AgentKit
import Foundation
import NIOHTTP1
import Postgres
import Store
import Testing
import TestSupport

/// A scripted model that calls the tool its query names — `<tool> <JSON arguments>` — and answers
/// with the tool's result once it has one.
@Sendable func namedToolModel(_ request: ScriptedModelServer.Request) async -> ScriptedModelServer.Reply {
    guard let last = request.messages.last else { return .text("empty") }
    if last.type == .tool { return .text("final: \(last.content)") }
    let parts = last.content.split(separator: " ", maxSplits: 1)
    guard let name = parts.first, request.toolNames.contains(String(name)) else { return .text("no tool: \(last.content)") }
    let args = parts.count > 1 ? ((try? JSONValue.parse(String(parts[1])))?.objectValue ?? [:]) : [:]
    return .toolCalls([ToolCall(id: "call_\(name)", name: String(name), args: args)])
}

/// A key for sealing header values in the tests (32 bytes, base64).
let testSecretsKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

@Suite("agents: named configurations per tenant")
struct AgentsTests {
    func put(_ service: ServiceHarness, _ id: String, _ body: JSONValue, key: String? = nil) async throws -> ServiceHarness.Reply {
        try await service.send(.PUT, "/agents/\(id)", body: body.jsonText, authorization: key.map { "Bearer \($0)" })
    }

    @Test("PUT creates and replaces with a new version each time; GET, the list's pages and DELETE; numbering survives a delete")
    func lifecycle() async throws {
        let service = try await ServiceHarness.start(configure: { $0.secretsKey = testSecretsKey })
        defer { Task { await service.stop() } }
        let created = try await put(service, "helper", ["model": "m1", "tools": ["multiply"], "max_steps": 3])
        #expect(created.status == 200)
        #expect(created["agent_id"] == "helper")
        #expect(created["version"] == 1)
        #expect(created["model"] == "m1")
        #expect(created["tools"] == ["multiply"])
        #expect(created["system_message"] == .null)
        #expect(created["mcp_servers"] == [])
        #expect(created["created_at"]?.numberValue != nil)
        let replaced = try await put(service, "helper", ["model": "m2"])
        #expect(replaced["version"] == 2)
        #expect(replaced["tools"] == .null)
        #expect(replaced["created_at"] == created["created_at"])
        let read = try await service.get("/agents/helper")
        #expect(read.body == replaced.body)
        for id in ["a1", "a2", "a3"] { #expect(try await put(service, id, [:]).status == 200) }
        let first = try await service.get("/agents?limit=2")
        #expect(first["agents"]?.arrayItems.map { $0["agent_id"] } == ["a1", "a2"])
        let cursor = try #require(first["next_cursor"]?.stringValue)
        let second = try await service.get("/agents?limit=2&cursor=\(cursor)")
        #expect(second["agents"]?.arrayItems.map { $0["agent_id"] } == ["a3", "helper"])
        #expect(second["next_cursor"] == .null)
        #expect(try await service.get("/agents?limit=0").status == 422)
        #expect(try await service.get("/agents?cursor=%25%25").status == 422)

        #expect(try await service.delete("/agents/helper").body == ["status": "success", "message": "agent helper deleted"])
        #expect(try await service.get("/agents/helper").status == 404)
        #expect(try await service.delete("/agents/helper").status == 404)
        #expect(try await service.get("/agents/nobody").status == 404)
        let again = try await put(service, "helper", [:])
        #expect(again["version"] == 3, "a version number is never used twice")
        #expect(try service.scalar("SELECT count(*) FROM agent_versions WHERE agent_id = 'helper'") == 3)
    }

    @Test("invalid definitions are 422 naming the field, and store nothing")
    func validation() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let cases: [(JSONValue, String)] = [
            (["tools": ["shell"]], "tools[0]"),
            (["max_steps": 0], "max_steps"),
            (["unknown": 1], "unknown"),
            (["mcp_servers": [["label": "maps"]]], "mcp_servers[0].url"),
            (["mcp_servers": [["label": "x y", "url": "https://maps.example.com/mcp"]]], "mcp_servers[0].label"),
            // Outbound rules at configuration time: loopback, private and link-local addresses are refused unless listed.
            (["mcp_servers": [["label": "maps", "url": "http://127.0.0.1:5432/"]]], "mcp_servers[0].url: 127.0.0.1 is a loopback address"),
            (["mcp_servers": [["label": "maps", "url": "http://10.1.2.3/mcp"]]], "mcp_servers[0].url: 10.1.2.3 is a private address"),
            (["mcp_servers": [["label": "maps", "url": "http://169.254.169.254/latest/meta-data/"]]], "mcp_servers[0].url: 169.254.169.254 is a link-local"),
            (["mcp_servers": [["label": "maps", "url": "http://[::1]:8001/"]]], "mcp_servers[0].url: ::1 is a loopback"),
            // Header values are stored only encrypted: without AGENTD_SECRETS_KEY they are refused.
            (["mcp_servers": [["label": "maps", "url": "https://maps.example.com/mcp", "headers": ["Authorization": "Bearer x"]]]], "mcp_servers[0].headers"),
        ]
        for (body, field) in cases {
            let reply = try await put(service, "bad", body)
            #expect(reply.status == 422, "\(body.jsonText)")
            #expect(reply["detail"]?.stringValue?.hasPrefix(field) == true, "\(reply.body)")
        }
        #expect(try await service.send(.PUT, "/agents/bad", body: "[1,", contentType: "application/json").status == 400)
        #expect(try await service.send(.PUT, "/agents/bad", body: "x", contentType: "text/plain").status == 415)
        #expect(try await put(service, "a/b", [:]).status == 404, "no such route: ids hold no slash")
        #expect(try await put(service, "%E2%80%AEevil", [:]).status == 422, "a format character in a new id")
        #expect(try service.scalar("SELECT count(*) FROM agent_versions") == 0)
        #expect(try service.scalar("SELECT count(*) FROM agents") == 0)
    }

    @Test("user keys read agents and may not write them; tenant and operator keys write their own tenant's; tenants never see each other's")
    func authorization() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let keys = try await AuthTests.makeKeys(service)
        #expect(try await put(service, "shared", ["model": "a-model"], key: keys.tenantA).status == 200)
        let userWrite = try await put(service, "shared", ["model": "mine"], key: keys.userA1)
        #expect(userWrite.status == 403)
        #expect(userWrite["detail"]?.stringValue?.contains("tenant or operator key") == true)
        #expect(try await service.send(.DELETE, "/agents/shared", authorization: "Bearer \(keys.userA1)").status == 403)
        #expect(try await service.send(.GET, "/agents/shared", authorization: "Bearer \(keys.userA1)")["model"] == "a-model")
        #expect(try await service.send(.GET, "/agents/shared", authorization: "Bearer \(keys.tenantB)").status == 404)
        #expect(try await service.send(.GET, "/agents", authorization: "Bearer \(keys.tenantB)")["agents"] == [])
        #expect(try await service.send(.DELETE, "/agents/shared", authorization: "Bearer \(keys.tenantB)").status == 404)
        #expect(try await put(service, "shared", ["model": "b-model"], key: keys.adminB).status == 200)
        #expect(try await service.send(.GET, "/agents/shared", authorization: "Bearer \(keys.tenantA)")["model"] == "a-model")
        #expect(try await service.send(.GET, "/agents/shared", authorization: "Bearer \(keys.tenantB)")["model"] == "b-model")
        #expect(try await service.get("/agents").status == 401)
        // An invoke of A's key cannot name B's agent that A lacks, and vice versa.
        #expect(try await put(service, "only-b", [:], key: keys.tenantB).status == 200)
        let invoke: JSONValue = ["user_id": "u1", "session_id": "s1", "task_id": "t1", "query": "hi", "agent_id": "only-b"]
        #expect(try await service.send(.POST, "/agent/invoke", body: invoke.jsonText, authorization: "Bearer \(keys.tenantA)").status == 422)

        // Row-level security: the service's role, set to tenant B, sees none of A's rows.
        let connection = try PostgresConnection.connect(service.databaseURL)
        defer { connection.close() }
        try connection.execute("SET ROLE agentd_service")
        try connection.execute("SET agentd.tenant_id = 'B'")
        #expect(try connection.query("SELECT count(*) AS n FROM agents WHERE tenant_id = 'A'").first?.decode("n", as: Int.self) == 0)
        #expect(try connection.query("SELECT count(*) AS n FROM agent_versions WHERE tenant_id = 'A'").first?.decode("n", as: Int.self) == 0)
        #expect(throws: (any Error).self) {
            try connection.execute("INSERT INTO agents (tenant_id, agent_id, version) VALUES ('A', 'forged', 1)")
        }
    }

    @Test("a task runs its agent's model, tools and system message, and keeps the version it was invoked with")
    func taskRunsItsVersion() async throws {
        let service = try await ServiceHarness.start(model: namedToolModel)
        defer { Task { await service.stop() } }
        #expect(try await put(service, "booker", ["model": "model-v1", "tools": ["book_hotel"], "system_message": "v1 rules"]).status == 200)
        let invoke: JSONValue = [
            "user_id": "u1", "session_id": "s1", "task_id": "t1", "query": #"book_hotel {"hotel_name": "如家"}"#, "agent_id": "booker",
        ]
        #expect(try await service.post("/agent/invoke", invoke).status == 200)
        let waiting = try await service.settle("u1", "s1", "t1")
        #expect(waiting["status"] == "interrupted")
        #expect(waiting["agent_id"] == "booker")
        #expect(waiting["agent_version"] == 1)
        let asked = try #require(service.model.requests.first)
        #expect(asked.model == "model-v1")
        #expect(asked.toolNames == ["book_hotel"])
        #expect(asked.systemMessage == "v1 rules")

        // Changed while the task waits for a human: the task goes on with version 1.
        #expect(try await put(service, "booker", ["model": "model-v2", "tools": ["multiply"]])["version"] == 2)
        #expect(try await service.resume("u1", "s1", "t1", "accept").status == 200)
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(done["agent_version"] == 1)
        let resumed = try #require(service.model.requests.last)
        #expect(resumed.model == "model-v1")
        #expect(resumed.toolNames == ["book_hotel"])
        #expect(try service.scalar("SELECT count(*) FROM llm_calls WHERE model = 'model-v1' AND task_id = 't1'") == 2)

        // A new task runs version 2; the event stream names agent and version.
        #expect(try await service.post("/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t2", "query": "hi", "agent_id": "booker"]).status == 200)
        #expect(try await service.settle("u1", "s1", "t2")["agent_version"] == 2)
        let events = try await service.get("/agent/events/u1/s1/t2?format=json")
        let queued = try #require(events.body.arrayItems.first)
        #expect(queued["type"] == "task.queued")
        #expect(queued["agent_id"] == "booker")
        #expect(queued["agent_version"] == 2)
        #expect(events.body.arrayItems.first { $0["type"] == "task.running" }?["agent_version"] == 2)

        // Deleted: invokes naming it are 422; the same ids re-sent for a finished task are still a duplicate.
        #expect(try await service.delete("/agents/booker").status == 200)
        let gone = try await service.post("/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t3", "query": "hi", "agent_id": "booker"])
        #expect(gone.status == 422)
        #expect(gone["detail"] == "agent_id: this tenant has no agent booker")
        #expect(try await service.post("/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t2", "query": "hi", "agent_id": "booker"]).status == 200)
        let other = try await service.post("/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t2", "query": "hi"])
        #expect(other.status == 409, "the same task id for another agent")
        #expect(try service.scalar("SELECT count(*) FROM tasks") == 2)
    }

    @Test("without agent_id a task runs the environment's configuration, or the tenant's own `default` once stored")
    func defaultAgent() async throws {
        let service = try await ServiceHarness.start(model: namedToolModel)
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "hi")
        let plain = try await service.settle("u1", "s1", "t1")
        #expect(plain["agent_id"] == "default")
        #expect(plain["agent_version"] == 0)
        #expect(service.model.requests.last?.model == "scripted")
        #expect(Set(service.model.requests.last?.toolNames ?? []) == ["book_hotel", "multiply", "recall_memory"])
        #expect(try await put(service, "default", ["model": "tenant-default", "tools": ["multiply"]]).status == 200)
        _ = try await service.invoke("u1", "s1", "t2", "hi")
        let own = try await service.settle("u1", "s1", "t2")
        #expect(own["agent_id"] == "default")
        #expect(own["agent_version"] == 1)
        #expect(service.model.requests.last?.model == "tenant-default")
        #expect(service.model.requests.last?.toolNames == ["multiply"])
    }
}

extension JSONValue {
    var arrayItems: [JSONValue] {
        if case .array(let items) = self { return items }
        return []
    }
}
