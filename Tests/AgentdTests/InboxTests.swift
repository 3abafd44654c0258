import AgentKit
import Foundation
import NIOHTTP1
import Testing
import TestSupport

/// The approval inbox (issue 16, part 1): pending approvals across sessions, a page per
/// statement, and decisions in a batch.
@Suite("the approval inbox")
struct InboxTests {
    func call(_ service: ServiceHarness, _ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil, key: String?) async throws
        -> ServiceHarness.Reply
    {
        try await service.send(method, path, body: body?.jsonText, authorization: key.map { "Bearer \($0)" })
    }

    /// Invokes the hotel booking for each (user, session, task) and waits until each waits for a human.
    func interrupted(_ service: ServiceHarness, _ tasks: [(String, String, String)], key: String) async throws {
        for (user, session, task) in tasks {
            let body: JSONValue = ["user_id": .string(user), "session_id": .string(session), "task_id": .string(task), "query": "帮我预定如家酒店"]
            #expect(try await call(service, .POST, "/agent/invoke", body, key: key).status == 200)
            #expect(try await service.send(.GET, "/agent/status/\(user)/\(session)/\(task)?wait=10", authorization: "Bearer \(key)")["status"] == "interrupted")
        }
    }

    @Test("pages newest or oldest first with an opaque cursor, filtered by user, session, tool, agent and age; scoped by the key")
    func listing() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        let keys = try await AuthTests.makeKeys(service)
        try await interrupted(service, [("u1", "s1", "t1"), ("u1", "s2", "t1"), ("u2", "s1", "t1"), ("u1", "s1", "t2")], key: keys.tenantA)
        try await interrupted(service, [("u1", "s9", "t9")], key: keys.tenantB)

        let first = try await call(service, .GET, "/agent/interrupts?limit=3", key: keys.tenantA)
        #expect(first.status == 200)
        let page1 = first["interrupts"]?.arrayItems ?? []
        #expect(page1.map { $0["task_id"]?.stringValue ?? "" } == ["t2", "t1", "t1"])
        #expect(page1.first?["session_id"] == "s1")
        let item = try #require(page1.first)
        #expect(item["tool"] == "book_hotel")
        #expect(item["agent_id"] == "default")
        #expect(item["last_query"] == "帮我预定如家酒店")
        #expect(item["expires_at"] == .null)
        #expect(item["interrupt_data"]?["action_request"]?["action"] == "book_hotel")
        #expect(item["tool_call_id"] == item["interrupt_data"]?["tool_call_id"])
        #expect(item["created_at"]?.numberValue != nil)
        let cursor = try #require(first["next_cursor"]?.stringValue)
        let second = try await call(service, .GET, "/agent/interrupts?limit=3&cursor=\(cursor)", key: keys.tenantA)
        #expect(second["interrupts"]?.arrayItems.map { "\($0["user_id"]?.stringValue ?? "")/\($0["session_id"]?.stringValue ?? "")" } == ["u1/s1"])
        #expect(second["next_cursor"] == .null)
        let oldest = try await call(service, .GET, "/agent/interrupts?order=oldest", key: keys.tenantA)
        #expect(oldest["interrupts"]?.arrayItems.map { $0["task_id"]?.stringValue ?? "" } == ["t1", "t1", "t1", "t2"])
        #expect(oldest["interrupts"]?.arrayItems.first?["session_id"] == "s1")

        func count(_ query: String, key: String) async throws -> Int {
            try await call(service, .GET, "/agent/interrupts?\(query)", key: key)["interrupts"]?.arrayItems.count ?? -1
        }
        #expect(try await count("user_id=u1", key: keys.tenantA) == 3)
        #expect(try await count("user_id=u1&session_id=s1", key: keys.tenantA) == 2)
        #expect(try await count("tool=book_hotel", key: keys.tenantA) == 4)
        #expect(try await count("tool=multiply", key: keys.tenantA) == 0)
        #expect(try await count("agent_id=default", key: keys.tenantA) == 4)
        #expect(try await count("agent_id=other", key: keys.tenantA) == 0)
        #expect(try await count("older_than_s=0", key: keys.tenantA) == 4)
        #expect(try await count("older_than_s=3600", key: keys.tenantA) == 0)
        // A user key: its own user only, and 403 for another; tenant B sees its own; an operator key every tenant's.
        #expect(try await count("", key: keys.userA1) == 3)
        #expect(try await call(service, .GET, "/agent/interrupts?user_id=u2", key: keys.userA1).status == 403)
        #expect(try await count("", key: keys.tenantB) == 1)
        #expect(try await count("", key: keys.adminB) == 5)
        #expect(try await call(service, .GET, "/agent/interrupts", key: nil).status == 401)
        for bad in ["limit=0", "limit=201", "order=sideways", "older_than_s=-1", "cursor=nonsense", "user_id=a%2Fb"] {
            #expect(try await call(service, .GET, "/agent/interrupts?\(bad)", key: keys.tenantA).status == 422, "\(bad)")
        }

        // Decided or cancelled: out of the inbox.
        #expect(try await call(service, .POST, "/agent/resume", ["user_id": "u2", "session_id": "s1", "task_id": "t1", "response_type": "accept"], key: keys.tenantA).status == 200)
        #expect(try await call(service, .POST, "/agent/cancel", ["user_id": "u1", "session_id": "s2", "task_id": "t1"], key: keys.tenantA).status == 200)
        #expect(try await count("", key: keys.tenantA) == 2)
    }

    @Test("a batch applies each decision as a resume would, each with its own answer; one bad item blocks none")
    func batch() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        let keys = try await AuthTests.makeKeys(service)
        try await interrupted(service, [("u1", "s1", "t1"), ("u1", "s2", "t1"), ("u2", "s1", "t1")], key: keys.tenantA)
        let decisions: JSONValue = [
            "decisions": [
                ["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": "accept"],
                ["user_id": "u1", "session_id": "s2", "task_id": "t1", "response_type": "reject"],
                ["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": "accept"],
                ["user_id": "u1", "session_id": "nope", "task_id": "t1", "response_type": "accept"],
                ["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": "maybe"],
                ["user_id": "u2", "session_id": "s1", "task_id": "t1", "response_type": "accept"],
                ["user_id": "u1", "session_id": "s1"],
                "not an object",
            ]
        ]
        let reply = try await call(service, .POST, "/agent/resume/batch", decisions, key: keys.userA1)
        #expect(reply.status == 200)
        let results = reply["results"]?.arrayItems ?? []
        #expect(results.map { Int($0["status_code"]?.numberValue ?? 0) } == [200, 200, 409, 404, 422, 403, 422, 422])
        #expect(results[0]["status"] == "queued")
        #expect(results[0]["task_id"] == "t1")
        #expect(results[2]["detail"]?.stringValue?.contains("not waiting for a human decision") == true)
        #expect(results[5]["detail"] == "this API key acts for user u1 only")
        #expect(try await service.send(.GET, "/agent/status/u1/s1/t1?wait=10", authorization: "Bearer \(keys.tenantA)")["status"] == "completed")
        #expect(try await service.send(.GET, "/agent/status/u1/s2/t1?wait=10", authorization: "Bearer \(keys.tenantA)")["status"] == "completed")
        #expect(try await service.send(.GET, "/agent/status/u2/s1/t1", authorization: "Bearer \(keys.tenantA)")["status"] == "interrupted")
        let tooMany = JSONValue.object(["decisions": .array(Array(repeating: decisions["decisions"]?.arrayItems.first ?? .null, count: 101))])
        #expect(try await call(service, .POST, "/agent/resume/batch", tooMany, key: keys.tenantA).status == 422)
        #expect(try await call(service, .POST, "/agent/resume/batch", ["decisions": []], key: keys.tenantA).status == 422)
        #expect(try await call(service, .POST, "/agent/resume/batch", ["decision": []], key: keys.tenantA).status == 422)
    }
}
