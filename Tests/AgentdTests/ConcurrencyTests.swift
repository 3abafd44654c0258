import AgentKit
import Foundation
import Testing
import TestSupport

@Suite("many tasks at once")
struct ConcurrencyTests {
    @Test("300 tasks over 30 sessions and 10 users complete exactly once, each session's in order")
    func threeHundredTasks() async throws {
        let logs = LogCapture()
        let service = try await ServiceHarness.start(
            model: { request in
                // A little latency so that tasks overlap.
                .delayed(.milliseconds(Int.random(in: 1...20)), .text("done: \(request.messages.last?.content ?? "")"))
            }, logs: logs)
        defer { Task { await service.stop() } }
        let submissions = (0..<300).map { i in (user: "user\(i % 10)", session: "session\(i % 30)", task: "task\(i)") }
        // Submit each session's tasks in order, all sessions at once.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for session in 0..<30 {
                group.addTask {
                    for item in submissions.filter({ $0.session == "session\(session)" }) {
                        let reply = try await service.invoke(item.user, item.session, item.task, "query \(item.task)")
                        #expect(reply.status == 200)
                    }
                }
            }
            try await group.waitForAll()
        }
        for item in submissions {
            let done = try await service.settle(item.user, item.session, item.task, timeout: .seconds(60))
            #expect(done["status"] == "completed", "\(item)")
            #expect(done.body.resultMessages.last?["content"]?.stringValue == "done: query \(item.task)")
        }
        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE state = 'completed'") == 300)
        // Claimed once each, but for a task whose step found no free database connection within
        // the pool's timeout (a machine busy with the whole suite): that one goes back to the
        // queue and is claimed again, each time with its own warning; nothing else re-runs one.
        let requeued = logs.text.components(separatedBy: "database unavailable while running the task").count - 1
        #expect(try service.scalar("SELECT coalesce(sum(attempts - 1), 0) FROM tasks") == requeued)
        #expect(try service.scalar("SELECT count(*) FROM llm_calls") == 300)
        #expect(try service.scalar("SELECT count(*) FROM messages") == 600)
        // In each session, a task started only after the one before it had finished.
        let overlaps = try service.scalar("""
            SELECT count(*) FROM (
                SELECT started_at, lag(finished_at) OVER (PARTITION BY tenant_id, user_id, session_id ORDER BY seq) AS previous_end
                FROM tasks) AS ordered
            WHERE started_at < previous_end
            """)
        #expect(overlaps == 0)
        // Each turn saw the session's earlier turns (within the window of 20 messages).
        let tenthOfSession0 = try #require(service.model.requests.first { $0.messages.last?.content == "query task270" })
        #expect(tenthOfSession0.messages.count == 1 + 18 + 1)
    }
}
