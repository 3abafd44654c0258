import AgentKit
import Foundation
import Testing
import TestSupport

/// A scripted model that books hotels: calls book_hotel for a new query, answers once a tool replied.
@Sendable func hotelModel(_ request: ScriptedModelServer.Request) async -> ScriptedModelServer.Reply {
    guard let last = request.messages.last else { return .text("empty") }
    if last.type == .tool { return .text("final: \(last.content)") }
    return .toolCalls([ToolCall(id: "call_hotel", name: "book_hotel", args: ["hotel_name": "如家酒店"])])
}

@Suite("agent flow over HTTP")
struct AgentFlowTests {
    @Test("a plain query completes with LangChain-shaped messages, the answer last, and its model call recorded")
    func plainQuery() async throws {
        let service = try await ServiceHarness.start(model: { _ in .text("你好，我是助手。") })
        defer { Task { await service.stop() } }
        let accepted = try await service.invoke("u1", "s1", "t1", "你好")
        #expect(accepted.status == 200)
        #expect(accepted.body == ["user_id": "u1", "session_id": "s1", "task_id": "t1"])

        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(done["user_id"] == "u1")
        #expect(done["last_query"] == "你好")
        #expect(done["last_updated"]?.numberValue != nil)
        let response = try #require(done["last_response"])
        #expect(response["status"] == "completed")
        #expect(response["session_id"] == "s1")
        #expect(response["task_id"] == "t1")
        #expect(response["timestamp"]?.numberValue != nil)
        #expect(response["interrupt_data"] == .null)
        let messages = done.body.resultMessages
        #expect(messages.count == 2)
        #expect(messages.first?["type"] == "human")
        #expect(messages.first?["content"] == "你好")
        #expect(messages.last?["type"] == "ai")
        #expect(messages.last?["content"] == "你好，我是助手。")
        #expect(messages.last?["tool_calls"] == .array([]))

        // The model saw the default system message, the query, and the tools.
        let request = try #require(service.model.requests.first)
        #expect(request.systemMessage == "你会使用工具来帮助用户。如果工具使用被拒绝, 请提示用户。")
        #expect(request.messages.last?.content == "你好")
        #expect(Set(request.toolNames) == ["book_hotel", "multiply", "recall_memory"])
        #expect(request.authorization == "Bearer test-key")

        #expect(try service.scalar("SELECT count(*) FROM llm_calls WHERE outcome = 'ok' AND task_id = 't1' AND prompt_tokens > 0") == 1)
        #expect(try await service.get("/agent/tasks/u1/s1").body == ["task_ids": ["t1"]])
        #expect(try await service.get("/agent/sessionids/u1").body == ["session_ids": ["s1"]])
        #expect(try await service.get("/agent/active/sessionid/u1").body == ["active_session_id": "s1"])
        let info = try await service.get("/system/info")
        #expect(info.body == ["sessions_count": 1, "active_users": ["u1"]])
    }

    @Test("a hotel request interrupts with LangGraph's HumanInterrupt shape")
    func interruptShape() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        let waiting = try await service.settle("u1", "s1", "t1")
        #expect(waiting["status"] == "interrupted")
        let data = try #require(waiting["last_response"]?["interrupt_data"])
        #expect(waiting["last_response"]?["status"] == "interrupted")
        #expect(data["action_request"] == ["action": "book_hotel", "args": ["hotel_name": "如家酒店"]])
        #expect(data["config"] == ["allow_accept": true, "allow_edit": true, "allow_respond": true, "allow_ignore": true])
        #expect(data["interrupt_type"] == "tool_approval")
        #expect(data["tool_call_id"] == "call_hotel")
        let description = try #require(data["description"]?.stringValue)
        #expect(description.contains("book_hotel"))
        #expect(description.contains("如家酒店"))
        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE decision IS NULL AND tool_name = 'book_hotel'") == 1)
        // Nothing ran yet.
        #expect(try service.scalar("SELECT count(*) FROM tool_calls") == 0)
    }

    @Test("accept, edit, reject and response each give the model the right tool message and complete", arguments: [
        ("accept", JSONValue.null, "成功预定了在如家酒店的住宿。", "ok"),
        ("edit", JSONValue.object(["args": ["hotel_name": "汉庭酒店"]]), "成功预定了在汉庭酒店的住宿。", "ok"),
        ("edit", JSONValue.object(["hotel_name": "全季酒店"]), "成功预定了在全季酒店的住宿。", "ok"),
        ("reject", JSONValue.null, "该工具被拒绝使用，请尝试其他方法或拒绝回答问题。", "rejected"),
        ("response", JSONValue.object(["args": "我改主意了，先不订。"]), "我改主意了，先不订。", "responded"),
    ])
    func decisions(type: String, args: JSONValue, toolContent: String, recorded: String) async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")

        let resumed = try await service.resume("u1", "s1", "t1", type, args: args == .null ? nil : args)
        #expect(resumed.status == 200)
        #expect(resumed.body == ["user_id": "u1", "session_id": "s1", "task_id": "t1"])
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        let messages = done.body.resultMessages
        #expect(messages.map { $0["type"] } == ["human", "ai", "tool", "ai"])
        #expect(messages[1]["tool_calls"] == [["id": "call_hotel", "name": "book_hotel", "args": ["hotel_name": "如家酒店"]]])
        #expect(messages[2]["content"]?.stringValue == toolContent)
        #expect(messages[2]["name"] == "book_hotel")
        #expect(messages[2]["tool_call_id"] == "call_hotel")
        #expect(messages[3]["content"]?.stringValue == "final: \(toolContent)")

        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE decision = \(type) AND decided_at IS NOT NULL") == 1)
        #expect(try service.scalar("SELECT count(*) FROM tool_calls WHERE status = \(recorded) AND tool_call_id = 'call_hotel'") == 1)
        // A second resume of the finished task is a conflict.
        #expect(try await service.resume("u1", "s1", "t1", "accept").status == 409)
    }

    @Test("a reply with two approval-needing calls interrupts twice, in order")
    func twoApprovals() async throws {
        let service = try await ServiceHarness.start(model: { request in
            guard let last = request.messages.last else { return .text("?") }
            if last.type == .tool { return .text("both handled") }
            return .toolCalls([
                ToolCall(id: "call_a", name: "book_hotel", args: ["hotel_name": "A"]),
                ToolCall(id: "call_b", name: "book_hotel", args: ["hotel_name": "B"]),
            ])
        })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "book A and B")
        let first = try await service.settle("u1", "s1", "t1")
        #expect(first["last_response"]?["interrupt_data"]?["tool_call_id"] == "call_a")
        #expect(try await service.resume("u1", "s1", "t1", "accept").status == 200)
        let second = try await service.settle("u1", "s1", "t1")
        #expect(second["status"] == "interrupted")
        #expect(second["last_response"]?["interrupt_data"]?["tool_call_id"] == "call_b")
        #expect(try await service.resume("u1", "s1", "t1", "reject").status == 200)
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages.map { $0["type"] } == ["human", "ai", "tool", "tool", "ai"])
        #expect(done.body.resultMessages[2]["content"] == "成功预定了在A的住宿。")
        #expect(done.body.resultMessages[3]["content"] == "该工具被拒绝使用，请尝试其他方法或拒绝回答问题。")
        // Only one model call saw the tool results: the model was called twice in all.
        #expect(service.model.requestCount == 2)
    }

    @Test("multiply runs without approval")
    func multiplyRunsDirectly() async throws {
        let service = try await ServiceHarness.start(model: { request in
            guard let last = request.messages.last else { return .text("?") }
            if last.type == .tool { return .text("The product is \(last.content)") }
            return .toolCalls([ToolCall(id: "m1", name: "multiply", args: ["a": 6, "b": 7])])
        })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "6 times 7?")
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages[2]["content"] == "42")
        #expect(done.body.resultMessages.last?["content"] == "The product is 42")
        #expect(try service.scalar("SELECT count(*) FROM interrupts") == 0)
    }

    @Test("turn two sends turn one to the model; a written memory reaches the next system message")
    func historyAndMemory() async throws {
        let service = try await ServiceHarness.start(model: { request in .text("answer to: \(request.messages.last?.content ?? "")") })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "My name is Ada.")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "completed")

        let memory = try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "我喜欢靠窗的座位"])
        #expect(memory.status == 200)
        #expect(memory["status"] == "success")
        #expect(memory["message"] == "记忆存储成功")
        #expect(memory["memory_id"]?.stringValue?.isEmpty == false)

        _ = try await service.invoke("u1", "s1", "t2", "What is my name?", system: "Be brief.")
        #expect(try await service.settle("u1", "s1", "t2")["status"] == "completed")
        let second = try #require(service.model.requests.last)
        #expect(second.messages.map(\.content).dropFirst() == ["My name is Ada.", "answer to: My name is Ada.", "What is my name?"])
        let system = try #require(second.systemMessage)
        #expect(system.hasPrefix("Be brief."))
        #expect(system.contains("我的附加信息有:"))
        #expect(system.contains("我喜欢靠窗的座位"))
        // Another session of the same user starts without that history.
        _ = try await service.invoke("u1", "s2", "t1", "Hello")
        #expect(try await service.settle("u1", "s2", "t1")["status"] == "completed")
        #expect(service.model.requests.last?.messages.count == 2)
        #expect(try await service.get("/agent/active/sessionid/u1").body == ["active_session_id": "s2"])
    }

    @Test("a model that fails twice then answers completes the task")
    func retriesThenSucceeds() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        service.model.enqueue(.failure(status: 503), .failure(status: 500), .text("finally"))
        _ = try await service.invoke("u1", "s1", "t1", "hi")
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages.last?["content"] == "finally")
        #expect(service.model.requestCount == 3)
    }

    @Test("a model that always fails ends the task in error with the reason")
    func modelAlwaysFails() async throws {
        let service = try await ServiceHarness.start(model: { _ in .failure(status: 500, body: "upstream exploded") }) { $0.llmMaxRetries = 1 }
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "hi")
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "error")
        let message = try #require(done["message"]?.stringValue)
        #expect(message.contains("model call failed"))
        #expect(message.contains("500"))
        #expect(done["last_response"]?["status"] == "error")
        #expect(done["last_response"]?["message"]?.stringValue == message)
        #expect(try service.scalar("SELECT count(*) FROM llm_calls WHERE outcome = 'error'") == 1)
    }

    @Test("a model that never stops calling tools ends in error after MAX_STEPS")
    func stepLimit() async throws {
        let service = try await ServiceHarness.start(model: { request in
            .toolCalls([ToolCall(id: "m\(request.messages.count)", name: "multiply", args: ["a": 2, "b": 2])])
        }) { $0.maxSteps = 3 }
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "loop forever")
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "error")
        #expect(done["message"]?.stringValue?.contains("MAX_STEPS") == true)
        #expect(service.model.requestCount == 3)
    }
}
