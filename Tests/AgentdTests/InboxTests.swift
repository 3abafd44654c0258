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

    @Test("a decision that names the tool call it saw is refused (409, nothing changed) once the task waits on another call")
    func decisionOnTheCallSeen() async throws {
        // Two bookings, one after the other: the task waits on call_1, then on call_2.
        let service = try await ServiceHarness.start(model: { request in
            switch request.messages.filter({ $0.type == .tool }).count {
            case 0: return .toolCalls([ToolCall(id: "call_1", name: "book_hotel", args: ["hotel_name": "如家酒店"])])
            case 1: return .toolCalls([ToolCall(id: "call_2", name: "book_hotel", args: ["hotel_name": "汉庭酒店"])])
            default: return .text("both booked")
            }
        })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "book two")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        func decide(_ call: JSONValue, _ type: String = "accept") async throws -> ServiceHarness.Reply {
            try await service.post("/agent/resume", ["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": .string(type), "tool_call_id": call])
        }
        for bad: JSONValue in ["", .string(String(repeating: "x", count: 513)), "a\u{0}b", 7] {
            #expect([400, 422].contains(try await decide(bad).status), "\(bad)")
        }
        #expect(try await decide("call_1").status == 200)
        #expect(try await eventually(20) {
            try await service.get("/agent/status/u1/s1/t1")["last_response"]?["interrupt_data"]?["tool_call_id"] == "call_2"
        })
        // Someone decided call_1 an instant ago; this approver still sees it.
        let stale = try await decide("call_1", "reject")
        #expect(stale.status == 409)
        #expect(stale["detail"] == "task t1 now waits on tool call call_2, not call_1")
        let batch = try await service.post("/agent/resume/batch", [
            "decisions": [["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": "reject", "tool_call_id": "call_1"]]
        ])
        #expect(batch["results"]?[0]?["status_code"] == 409)
        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE tool_call_id = 'call_2' AND decision IS NULL") == 1)
        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE state = 'interrupted'") == 1)
        #expect(try await decide("call_2").status == 200)
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(try service.scalar("SELECT count(*) FROM tool_calls WHERE status = 'ok'") == 2)
        // An ended task refuses any decision, whatever call it names.
        #expect(try await decide("call_2").status == 409)
    }

    /// Polls until `condition` holds or `seconds` pass.
    func eventually(_ seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }

    @Test("an approval past its deadline is decided by the service, as a stored row: the deadline holds across a process restart")
    func expiryAcrossRestart() async throws {
        // Long enough for the first process to stop before it, on a machine busy with the whole suite.
        let timeout = 15.0
        let firstLogs = LogCapture()
        let first = try await ServiceHarness.start(model: hotelModel, logs: firstLogs) { $0.approvalTimeoutSeconds = timeout }
        defer { Task { await first.stop() } }
        _ = try await first.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        #expect(try await first.settle("u1", "s1", "t1")["status"] == "interrupted")
        await first.stopService()
        let expiredInFirst = firstLogs.text.contains("approvals expired")
        #expect(!expiredInFirst)
        #expect(try first.scalar("SELECT count(*) FROM interrupts WHERE decision IS NULL AND expires_at IS NOT NULL") == 1)

        // The process after it has no timeout of its own, and still decides what was asked with one.
        let secondLogs = LogCapture()
        let second = try await ServiceHarness.start(model: hotelModel, database: first.databaseURL, logs: secondLogs)
        defer { Task { await second.stop() } }
        let listed = try #require(try await second.get("/agent/interrupts")["interrupts"]?.arrayItems.first)
        let created = try #require(listed["created_at"]?.numberValue)
        let expires = try #require(listed["expires_at"]?.numberValue)
        #expect(abs(expires - created - timeout) < 0.01)
        #expect(try await eventually(timeout + 20) { try await second.status("u1", "s1", "t1")["status"] == "completed" })
        let expiredInSecond = secondLogs.text.contains("approvals expired")
        #expect(expiredInSecond)
        let done = try await second.status("u1", "s1", "t1")
        #expect(done.body.resultMessages.last?["content"] == .string("final: \(HumanDecision.rejectionMessage)"))
        let row = try #require(try second.rows("SELECT decision, decided_by, decided_by_key, decided_at >= expires_at AS late FROM interrupts").first)
        #expect(try row.decode("decision", as: String.self) == "reject")
        #expect(try row.decode("decided_by", as: String.self) == "timeout")
        #expect(try row.decode("decided_by_key", as: String?.self) == nil)
        #expect(try row.decode("late", as: Bool.self))
        #expect(try second.scalar("SELECT count(*) FROM tool_calls WHERE status = 'rejected' AND decision = 'reject'") == 1)
        let events = try await second.jsonEvents("u1", "s1", "t1")
        let decision = try #require(events.first { $0["type"] == "decision" })
        #expect(decision["response_type"] == "reject")
        #expect(decision["decided_by"] == "timeout")
        #expect(events.contains { $0["type"] == "task.queued" && $0["reason"] == "approval_expired" })
        #expect(events.map { Int($0["seq"]?.numberValue ?? 0) } == Array(1...events.count))
        #expect(try await second.get("/agent/interrupts")["interrupts"]?.arrayItems.isEmpty == true)
        #expect(try await second.resume("u1", "s1", "t1", "accept").status == 409)
        #expect(try second.scalar("SELECT expired::int FROM report_approvals") == 1)
    }

    @Test("an agent sets its own timeout and action (accept runs the tool; 0 waits for a human); a human before the deadline decides; a cancelled approval is withdrawn")
    func agentTimeouts() async throws {
        let service = try await ServiceHarness.start(model: hotelModel) { $0.approvalTimeoutSeconds = 3600 }
        defer { Task { await service.stop() } }
        #expect(try await service.send(.PUT, "/agents/eager", body: #"{"approval_timeout_s": 1, "approval_timeout_action": "accept"}"#).status == 200)
        #expect(try await service.send(.PUT, "/agents/patient", body: #"{"approval_timeout_s": 0}"#).status == 200)
        #expect(try await service.get("/agents/eager")["approval_timeout_action"] == "accept")
        for (field, value) in [("approval_timeout_s", "-1"), ("approval_timeout_s", "2592001"), ("approval_timeout_s", "1.5"), ("approval_timeout_action", #""later""#)] {
            let refused = try await service.send(.PUT, "/agents/bad", body: "{\"\(field)\": \(value)}")
            #expect(refused.status == 422)
            #expect(refused["detail"]?.stringValue?.hasPrefix(field) == true)
        }
        for (session, agent) in [("s1", "eager"), ("s2", "patient"), ("s3", "default"), ("s4", "default")] {
            let body: JSONValue = ["user_id": "u1", "session_id": .string(session), "task_id": "t1", "query": "帮我预定如家酒店", "agent_id": .string(agent)]
            #expect(try await service.post("/agent/invoke", body).status == 200)
        }
        #expect(try await eventually(20) { try await service.status("u1", "s1", "t1")["status"] == "completed" })
        let accepted = try await service.status("u1", "s1", "t1")
        #expect(accepted.body.resultMessages.last?["content"]?.stringValue?.contains("如家酒店") == true)
        #expect(try service.scalar("SELECT count(*) FROM tool_calls WHERE session_id = 's1' AND status = 'ok' AND decision = 'accept'") == 1)
        #expect(try await service.settle("u1", "s2", "t1")["status"] == "interrupted")
        #expect(try await service.settle("u1", "s3", "t1")["status"] == "interrupted")
        #expect(try await service.settle("u1", "s4", "t1")["status"] == "interrupted")
        let deadlines = try service.rows("SELECT session_id, extract(epoch FROM expires_at - created_at)::float8 AS wait FROM interrupts ORDER BY session_id")
        #expect(try deadlines.map { try $0.decode("wait", as: Double?.self) } == [1, nil, 3600, 3600])
        #expect(try await service.resume("u1", "s3", "t1", "reject").status == 200)
        #expect(try await service.settle("u1", "s3", "t1")["status"] == "completed")
        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE session_id = 's3' AND decided_by = 'human' AND decided_by_key IS NULL") == 1)
        // A cancelled task's approval is withdrawn in the cancel's statement, and never decided,
        // even past its deadline: a round that decides another approval leaves it alone.
        #expect(try await service.cancel("u1", "s4", "t1").status == 200)
        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE session_id = 's4' AND withdrawn_at IS NOT NULL AND decision IS NULL") == 1)
        #expect(try await service.get("/agent/interrupts?session_id=s4")["interrupts"]?.arrayItems.isEmpty == true)
        _ = try service.rows("UPDATE interrupts SET expires_at = now() - interval '1 second' WHERE session_id = 's4'")
        let body: JSONValue = ["user_id": "u1", "session_id": "s5", "task_id": "t1", "query": "帮我预定如家酒店", "agent_id": "eager"]
        #expect(try await service.post("/agent/invoke", body).status == 200)
        #expect(try await eventually(20) { try await service.status("u1", "s5", "t1")["status"] == "completed" })
        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE session_id = 's4' AND decision IS NULL AND decided_by IS NULL") == 1)
        #expect(try service.scalar("SELECT withdrawn::int FROM report_approvals") == 1)
        #expect(try await service.status("u1", "s4", "t1")["status"] == "cancelled")
    }
}
