import AgentKit
import Foundation
import NIOHTTP1
import Testing
import TestSupport

@Suite("REST contract: missing resources, bad input, conflicts")
struct ContractTests {
    @Test("unknown users, sessions and tasks answer as the original client expects")
    func missing() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        #expect(try await service.get("/agent/active/sessionid/nobody").body == ["active_session_id": ""])
        #expect(try await service.get("/agent/sessionids/nobody").body == ["session_ids": []])
        #expect(try await service.get("/agent/tasks/nobody/nothing").body == ["task_ids": []])
        #expect(try await service.get("/system/info").body == ["sessions_count": 0, "active_users": []])

        let unknown = try await service.status("nobody", "nothing", "t1")
        #expect(unknown.status == 200)
        #expect(unknown["status"] == "not_found")
        #expect(unknown["task_id"] == "t1")
        #expect(unknown["last_response"] == .null)
        #expect(unknown.body.objectValue?.keys.sorted() == [
            "last_query", "last_response", "last_updated", "message", "session_id", "status", "task_id", "user_id",
        ])

        for path in ["/agent/session/nobody/nothing", "/agent/session/nobody/nothing/t1", "/agent/task/nobody/nothing/t1"] {
            let reply = try await service.delete(path)
            #expect(reply.status == 404)
            #expect(reply["detail"]?.stringValue?.isEmpty == false)
        }
        let resume = try await service.resume("nobody", "nothing", "t1", "accept")
        #expect(resume.status == 404)
        let route = try await service.get("/no/such/route")
        #expect(route.status == 404)
        #expect(route["detail"] != nil)
    }

    @Test("deleting a task, then its session, with the alias path too; a session without tasks is idle")
    func deletion() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        for task in ["t1", "t2", "t3"] {
            _ = try await service.invoke("u1", "s1", task, "q \(task)")
            _ = try await service.settle("u1", "s1", task)
        }
        let one = try await service.delete("/agent/session/u1/s1/t1")
        #expect(one.status == 200)
        #expect(one.body == ["status": "success", "message": "用户 u1:s1:t1 的任务已删除"])
        let alias = try await service.delete("/agent/task/u1/s1/t2")
        #expect(alias.body == ["status": "success", "message": "用户 u1:s1:t2 的任务已删除"])
        #expect(try await service.get("/agent/tasks/u1/s1").body == ["task_ids": ["t3"]])
        #expect(try await service.delete("/agent/session/u1/s1/t3").status == 200)
        #expect(try await service.status("u1", "s1", "anything")["status"] == "idle")
        let session = try await service.delete("/agent/session/u1/s1")
        #expect(session.body == ["status": "success", "message": "用户 u1:s1 的会话已删除"])
        #expect(try await service.delete("/agent/session/u1/s1").status == 404)
        #expect(try service.scalar("SELECT count(*) FROM messages") == 0)
        #expect(try await service.status("u1", "s1", "t3")["status"] == "not_found")
    }

    @Test("re-sending an invoke is idempotent; the same task_id with another query is a conflict")
    func idempotentInvoke() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let first = try await service.invoke("u1", "s1", "t1", "hello")
        let again = try await service.invoke("u1", "s1", "t1", "hello")
        #expect(first.status == 200)
        #expect(again.status == 200)
        #expect(again.body == first.body)
        let conflict = try await service.invoke("u1", "s1", "t1", "something else")
        #expect(conflict.status == 409)
        #expect(conflict["detail"]?.stringValue?.contains("t1") == true)
        _ = try await service.settle("u1", "s1", "t1")
        #expect(try service.scalar("SELECT count(*) FROM tasks") == 1)
        #expect(service.model.requestCount == 1)
    }

    @Test("malformed and invalid bodies get 4xx with a detail and change nothing")
    func badInput() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let valid: [String: JSONValue] = ["user_id": "u1", "session_id": "s1", "task_id": "t1", "query": "hi"]
        func with(_ key: String, _ value: JSONValue?) -> JSONValue {
            var body = valid
            body[key] = value
            return .object(body)
        }
        let cases: [(String, Int)] = [
            ("{not json", 400),
            ("[1, 2]", 422),
            ("\"text\"", 422),
            (with("query", nil).jsonText, 422),
            (with("user_id", nil).jsonText, 422),
            (with("query", 42).jsonText, 422),
            (with("query", .null).jsonText, 422),
            (with("query", "   ").jsonText, 422),
            (with("user_id", "").jsonText, 422),
            (with("user_id", "a/b").jsonText, 422),
            (with("session_id", "line\nbreak").jsonText, 422),
            (with("task_id", .string(String(repeating: "x", count: 129))).jsonText, 422),
            (with("query", "nul \u{0} inside").jsonText, 422),
        ]
        for (body, expected) in cases {
            let reply = try await service.send(.POST, "/agent/invoke", body: body)
            #expect(reply.status == expected, "body \(body)")
            #expect(reply["detail"]?.stringValue?.isEmpty == false, "body \(body)")
        }
        let empty = try await service.send(.POST, "/agent/invoke", body: nil)
        #expect(empty.status == 422)
        let form = try await service.send(.POST, "/agent/invoke", body: "user_id=u1", contentType: "application/x-www-form-urlencoded")
        #expect(form.status == 415)
        let huge = try await service.send(.POST, "/agent/invoke", body: with("query", .string(String(repeating: "长", count: 400_000))).jsonText)
        #expect(huge.status == 413)
        #expect(huge["detail"] != nil)
        // 128 characters is still fine.
        let longest = try await service.invoke("u1", "s1", String(repeating: "x", count: 128), "hi")
        #expect(longest.status == 200)

        // Resume: unknown decision, bad args, edit without args.
        _ = try await service.invoke("u2", "s1", "t1", "hi")
        #expect(try await service.resume("u2", "s1", "t1", "maybe").status == 422)
        #expect(try await service.resume("u2", "s1", "t1", "edit").status == 422)
        #expect(try await service.resume("u2", "s1", "t1", "response").status == 422)
        #expect(try await service.resume("u2", "s1", "t1", "accept", args: [1, 2]).status == 422)
        // Memory: missing text, empty, too long.
        #expect(try await service.post("/agent/write/longterm", ["user_id": "u1"]).status == 422)
        #expect(try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": ""]).status == 422)
        let long = try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": .string(String(repeating: "m", count: 5000))])
        #expect(long.status == 413)
        // Path ids are checked too (a percent-encoded slash decodes to '/').
        #expect(try await service.get("/agent/sessionids/a%2Fb").status == 422)
        #expect(try await service.get("/agent/sessionids/\(String(repeating: "x", count: 129))").status == 422)

        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE user_id = 'u1'") == 1)
        #expect(try service.scalar("SELECT count(*) FROM memories") == 0)
    }

    @Test("percent-encoded Chinese ids in paths find what the body created")
    func unicodeIDs() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        _ = try await service.invoke("张三", "会话一", "任务1", "你好")
        _ = try await service.settle("%E5%BC%A0%E4%B8%89", "%E4%BC%9A%E8%AF%9D%E4%B8%80", "%E4%BB%BB%E5%8A%A11")
        let done = try await service.status("%E5%BC%A0%E4%B8%89", "%E4%BC%9A%E8%AF%9D%E4%B8%80", "%E4%BB%BB%E5%8A%A11")
        #expect(done["status"] == "completed")
        #expect(done["user_id"] == "张三")
        #expect(try await service.get("/agent/sessionids/%E5%BC%A0%E4%B8%89").body == ["session_ids": ["会话一"]])
    }

    @Test("of two concurrent resumes of one interrupt exactly one wins; the tool runs once")
    func concurrentResumes() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        async let a = service.resume("u1", "s1", "t1", "accept")
        async let b = service.resume("u1", "s1", "t1", "reject")
        let statuses = try await [a.status, b.status].sorted()
        #expect(statuses == [200, 409])
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(try service.scalar("SELECT count(*) FROM tool_calls") == 1)
        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE decision IS NOT NULL") == 1)
    }

    @Test("resuming a task that is not interrupted is a conflict")
    func resumeNotInterrupted() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "hi")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "completed")
        let reply = try await service.resume("u1", "s1", "t1", "accept")
        #expect(reply.status == 409)
        #expect(reply["detail"]?.stringValue?.contains("completed") == true)
    }
}
