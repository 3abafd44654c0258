import AgentKit
import Foundation
import Testing
import TestSupport

/// Concurrent status reads share statements (`Batched`): each must still get its own task.
@Suite("status reads under concurrency")
struct StatusReadTests {
    @Test("many concurrent reads of different tasks, sessions and users each answer for their own")
    func concurrentReadsAnswerTheirOwn() async throws {
        let service = try await ServiceHarness.start(model: { request in .text("answer to \(request.messages.last?.content ?? "")") })
        defer { Task { await service.stop() } }
        // Ids with the characters a text[] literal must quote.
        let users = ["u1", #"u"2"#, #"u\3"#, "u,{4}"]
        for (index, user) in users.enumerated() {
            #expect(try await service.invoke(user, "s", "t", "q\(index)").status == 200)
            _ = try await service.settle(user, "s", "t")
        }
        let replies = try await withThrowingTaskGroup(of: (Int, ServiceHarness.Reply).self) { group in
            for round in 0..<200 {
                let index = round % (users.count + 2)
                group.addTask {
                    switch index {
                    case users.count: return (index, try await service.status("u1", "s", "missing"))
                    case users.count + 1: return (index, try await service.status("nobody", "s", "t"))
                    default: return (index, try await service.status(users[index], "s", "t"))
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(replies.count == 200)
        for (index, reply) in replies {
            #expect(reply.status == 200)
            if index < users.count {
                #expect(reply["user_id"] == .string(users[index]))
                #expect(reply["status"] == "completed")
                #expect(reply["last_query"] == .string("q\(index)"))
                #expect(reply.body.resultMessages.last?["content"] == .string("answer to q\(index)"))
            } else {
                #expect(reply["status"] == "not_found")
            }
        }
    }
}
