import AgentKit
import Foundation
import Testing
import TestSupport

@Suite("long-term memory")
struct MemoryTests {
    func write(_ service: ServiceHarness, _ user: String, _ text: String) async throws -> String {
        let reply = try await service.post("/agent/write/longterm", ["user_id": .string(user), "memory_info": .string(text)])
        #expect(reply.status == 200)
        return try #require(reply["memory_id"]?.stringValue)
    }

    func search(_ service: ServiceHarness, _ user: String, _ query: String, limit: Int? = nil) async throws -> [String] {
        var path = "/agent/memory/\(user)?q=" + (query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
        if let limit { path += "&limit=\(limit)" }
        let reply = try await service.get(path)
        #expect(reply.status == 200)
        guard case .array(let items)? = reply["memories"] else { return [] }
        return items.compactMap { $0["memory_info"]?.stringValue }
    }

    @Test("Chinese finds Chinese through a shared two-character word, and English through a synonym; hotels finds hotel; users never see each other's")
    func lexicalMatching() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        _ = try await write(service, "u1", "出差预算每晚不超过800元")
        _ = try await write(service, "u1", "我喜欢靠窗的座位")
        _ = try await write(service, "u1", "Always book a quiet hotel room away from the elevator")
        _ = try await write(service, "u1", "I am vegetarian")
        _ = try await write(service, "u2", "我的预算很充足")

        // 酒店 finds the English hotel memory through a shipped synonym group; the budget ranks first.
        #expect(try await search(service, "u1", "帮我订酒店，注意预算") == ["出差预算每晚不超过800元", "Always book a quiet hotel room away from the elevator"])
        #expect(try await search(service, "u1", "飞机上要靠窗") == ["我喜欢靠窗的座位"])
        #expect(try await search(service, "u1", "Find me hotels near the station") == ["Always book a quiet hotel room away from the elevator"])
        #expect(try await search(service, "u1", "any vegetarian restaurants?") == ["I am vegetarian"])
        #expect(try await search(service, "u1", "完全无关的问题") == [])
        // u2's matching memory stays u2's.
        #expect(try await search(service, "u2", "预算") == ["我的预算很充足"])
        #expect(try await search(service, "u3", "预算") == [])
    }

    @Test("the same text twice is stored once; a memory over 4 KiB is refused and nothing is stored")
    func duplicatesAndLimits() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let first = try await write(service, "u1", "I am vegetarian")
        let second = try await write(service, "u1", "I am vegetarian")
        #expect(first == second)
        let other = try await write(service, "u2", "I am vegetarian")
        #expect(other != first)
        let big = try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": .string(String(repeating: "长", count: 1400))])
        #expect(big.status == 413)
        #expect(big["detail"]?.stringValue?.contains("4096") == true)
        #expect(try service.scalar("SELECT count(*) FROM memories") == 2)
    }

    @Test("list newest first, search ranked with scores, delete one, 404 for what is not there")
    func management() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let seat = try await write(service, "u1", "我喜欢靠窗的座位")
        let flight = try await write(service, "u1", "坐飞机时我喜欢靠窗的座位，而且要靠前")
        _ = try await write(service, "u1", "I am vegetarian")

        let listed = try await service.get("/agent/memory/u1")
        guard case .array(let items)? = listed["memories"] else {
            Issue.record("no memories in \(listed.body)")
            return
        }
        #expect(items.map { $0["memory_info"] } == ["I am vegetarian", "坐飞机时我喜欢靠窗的座位，而且要靠前", "我喜欢靠窗的座位"])
        #expect(items.allSatisfy { $0["score"] == nil && $0["created_at"]?.numberValue != nil })
        #expect(try await service.get("/agent/memory/u1?limit=1").body["memories"].map { if case .array(let a) = $0 { a.count } else { 0 } } == 1)

        let searched = try await service.get("/agent/memory/u1?q=%E9%9D%A0%E7%AA%97%E7%9A%84%E5%BA%A7%E4%BD%8D")  // 靠窗的座位
        guard case .array(let ranked)? = searched["memories"] else {
            Issue.record("no search results")
            return
        }
        #expect(Set(ranked.compactMap { $0["memory_id"]?.stringValue }) == [seat, flight])
        #expect(ranked.allSatisfy { ($0["score"]?.numberValue ?? 0) > 0 })

        #expect(try await service.get("/agent/memory/u1?limit=0").status == 422)
        #expect(try await service.get("/agent/memory/u1?limit=abc").status == 422)
        #expect(try await service.delete("/agent/memory/u2/\(seat)").status == 404)
        #expect(try await service.delete("/agent/memory/u1/not-a-uuid").status == 404)
        let deleted = try await service.delete("/agent/memory/u1/\(seat)")
        #expect(deleted.status == 200)
        #expect(deleted["status"] == "success")
        #expect(try await service.delete("/agent/memory/u1/\(seat)").status == 404)
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE user_id = 'u1'") == 2)
    }

    @Test("with few memories all reach the system message; with many, only the relevant ones")
    func recallIntoSystemMessage() async throws {
        let service = try await ServiceHarness.start(configure: { $0.memoryRecallLimit = 3 })
        defer { Task { await service.stop() } }
        _ = try await write(service, "u1", "我喜欢靠窗的座位")
        _ = try await write(service, "u1", "I am vegetarian")
        _ = try await service.invoke("u1", "s1", "t1", "完全无关")
        _ = try await service.settle("u1", "s1", "t1")
        let few = try #require(service.model.requests.last?.systemMessage)
        #expect(few.contains("我喜欢靠窗的座位") && few.contains("I am vegetarian"))

        for filler in ["周末去健身房游泳", "女儿Lily对花生过敏", "常用邮箱是 a@example.com", "公司在深圳南山区", "Prefers aisle seats on trains"] {
            _ = try await write(service, "u1", filler)
        }
        _ = try await write(service, "u2", "出差预算每晚不超过800元")
        _ = try await write(service, "u1", "出差预算每晚不超过500元")
        _ = try await service.invoke("u1", "s1", "t2", "下周去上海出差，帮我订酒店，预算别超")
        _ = try await service.settle("u1", "s1", "t2")
        let many = try #require(service.model.requests.last?.systemMessage)
        #expect(many.contains("出差预算每晚不超过500元"))
        #expect(!many.contains("800元"))  // u2's
        #expect(!many.contains("健身房"))
        #expect(!many.contains("I am vegetarian"))
    }

    @Test("the agent calls recall_memory and gets the right memory back")
    func recallTool() async throws {
        let service = try await ServiceHarness.start(model: { request in
            guard let last = request.messages.last else { return .text("?") }
            if last.type == .tool { return .text("you said: \(last.content)") }
            return .toolCalls([ToolCall(id: "r1", name: "recall_memory", args: ["query": "diet vegetarian"])])
        })
        defer { Task { await service.stop() } }
        for text in ["I am vegetarian", "我喜欢靠窗的座位", "Lives in Berlin", "Works as a nurse", "Has two cats", "Allergic to penicillin"] {
            _ = try await write(service, "u1", text)
        }
        _ = try await write(service, "u2", "Strict vegetarian since 2010")
        _ = try await service.invoke("u1", "s1", "t1", "What should I eat tonight?")
        let done = try await service.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        let toolMessage = done.body.resultMessages[2]
        #expect(toolMessage["name"] == "recall_memory")
        #expect(toolMessage["content"] == "- I am vegetarian")
        #expect(try service.scalar("SELECT count(*) FROM interrupts") == 0)
    }
}
