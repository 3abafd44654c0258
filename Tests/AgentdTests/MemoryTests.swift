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

    @Test("PUT rewrites a memory in place and keeps the earlier text; replaces retires a memory, whose words then find its successor")
    func memoriesThatChange() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let filler = [
            "周三下午有部门例会", "Gym membership renews in March", "喜欢听爵士乐", "Keys are with the neighbour on the 3rd floor",
            "每月5号交物业费", "Favourite colour is green", "老家在湖南长沙",
        ]
        for text in filler { _ = try await write(service, "u1", text) }
        let manager = try await write(service, "u1", "My manager is Aisha; Aisha runs the Berlin team")
        let seat = try await write(service, "u1", "Prefers aisle seats")

        // PUT: the text changes in place, the earlier one goes to memory_history.
        let put = try await service.send(.PUT, "/agent/memory/u1/\(seat)", body: #"{"memory_info": "Prefers window seats"}"#)
        #expect(put.status == 200)
        #expect(put["version"]?.numberValue == 2)
        #expect(try await search(service, "u1", "window seat") == ["Prefers window seats"])
        #expect(try await search(service, "u1", "aisle") == [])
        #expect(try service.scalar("SELECT count(*) FROM memory_history WHERE memory_info = 'Prefers aisle seats' AND version = 1") == 1)
        let same = try await service.send(.PUT, "/agent/memory/u1/\(seat)", body: #"{"memory_info": "Prefers window seats"}"#)
        #expect(same.status == 200 && same["version"]?.numberValue == 2)
        #expect(try await service.send(.PUT, "/agent/memory/u1/\(seat)", body: #"{"memory_info": "喜欢听爵士乐"}"#).status == 409)
        #expect(try await service.send(.PUT, "/agent/memory/u2/\(seat)", body: #"{"memory_info": "x"}"#).status == 404)
        #expect(try await service.send(.PUT, "/agent/memory/u1/not-a-uuid", body: #"{"memory_info": "x"}"#).status == 404)
        #expect(try await service.send(.PUT, "/agent/memory/u1/\(seat)", body: #"{"memory_info": ""}"#).status == 422)

        // replaces: the older memory leaves recall and the listing; what it matched finds the newer.
        let written = try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "New manager since May: Dan", "replaces": .string(manager)])
        #expect(written.status == 200)
        #expect(written["replaced"]?.stringValue == manager)
        let dan = try #require(written["memory_id"]?.stringValue)
        #expect(try await search(service, "u1", "who runs the Berlin team") == ["New manager since May: Dan"])
        #expect(try await service.get("/agent/memory/u1").body.jsonText.contains("Aisha") == false)
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE memory_id::text = \(manager) AND superseded_by::text = \(dan)") == 1)
        // A replaced memory cannot be replaced or rewritten again; an unknown or malformed one is refused.
        let again = try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "Manager: Eva", "replaces": .string(manager)])
        #expect(again.status == 409)
        #expect(again["detail"]?.stringValue?.contains(dan) == true)
        #expect(try await service.send(.PUT, "/agent/memory/u1/\(manager)", body: #"{"memory_info": "x"}"#).status == 409)
        let unknown = UUID().uuidString.lowercased()
        #expect(try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "x y z", "replaces": .string(unknown)]).status == 404)
        #expect(try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "x y z", "replaces": "nope"]).status == 422)
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE memory_info = 'x y z' OR memory_info = 'Manager: Eva'") == 0)
        // The old fact stated again is a current memory again, beside the one that replaced it.
        let restated = try await write(service, "u1", "My manager is Aisha; Aisha runs the Berlin team")
        #expect(restated != manager)

        // A delete takes what the memory said with it: its earlier texts, the memories it replaced.
        #expect(try await service.delete("/agent/memory/u1/\(seat)").status == 200)
        #expect(try service.scalar("SELECT count(*) FROM memory_history") == 0)
        #expect(try await service.delete("/agent/memory/u1/\(dan)").status == 200)
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE memory_id::text = \(manager)") == 0)
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE memory_id::text = \(restated)") == 1)
    }

    @Test("a memory that restates an older one with a new value replaces it by itself; a different subject does not, and MEMORY_REPLACE_RESTATED=0 turns it off")
    func restatedMemories() async throws {
        for automatic in [true, false] {
            let service = try await ServiceHarness.start(configure: { $0.memoryReplacesRestated = automatic })
            let filler = ["周三下午有部门例会", "Gym membership renews in March", "喜欢听爵士乐", "每月5号交物业费", "Favourite colour is green"]
            for text in filler { _ = try await write(service, "u1", text) }
            let rent = try await write(service, "u1", "Rent is €1,240 warm, paid by standing order on the 1st")
            let workPhone = try await write(service, "u1", "Work phone is 030 1234 5678")
            let raised = try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "Rent goes up to €1,310 warm from July, still paid on the 1st"])
            #expect(raised["replaced"]?.stringValue == (automatic ? rent : nil))
            let home = try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "New home phone is 030 9876 5432"])
            #expect(home["replaced"] == nil, "a home phone is not the work phone")
            #expect(try service.scalar("SELECT count(*) FROM memories WHERE memory_id::text = \(workPhone) AND superseded_by IS NULL") == 1)
            #expect(try service.scalar("SELECT count(*) FROM memories WHERE superseded_by IS NOT NULL") == (automatic ? 1 : 0))
            await service.stop()
        }
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
