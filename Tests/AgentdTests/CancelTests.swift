import AgentKit
import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite("cancel and if_busy")
struct CancelTests {
    @Test("a queued task is cancelled at once and never runs, even when a worker comes later")
    func cancelBeforeClaim() async throws {
        let front = try await ServiceHarness.start(configure: { $0.workerSlots = 0 })
        defer { Task { await front.stop() } }
        _ = try await front.invoke("u1", "s1", "t1", "hello")
        let cancelled = try await front.cancel("u1", "s1", "t1")
        #expect(cancelled.status == 200)
        #expect(cancelled.body["status"] == "cancelled")
        #expect(cancelled.body["task_id"] == "t1")
        #expect(cancelled.body["message"]?.stringValue?.hasPrefix("cancelled by an open-mode client at 20") == true)
        let status = try await front.status("u1", "s1", "t1")
        #expect(status["status"] == "cancelled")
        #expect(status["last_response"]?["status"] == "cancelled")
        #expect(status["last_response"]?["message"] == cancelled.body["message"])

        let worker = try await ServiceHarness.start(database: front.databaseURL)
        defer { Task { await worker.stop() } }
        // A later task of the same session runs: the worker is working, and skipped the cancelled one.
        _ = try await front.invoke("u1", "s1", "t2", "hello again")
        #expect(try await worker.settle("u1", "s1", "t2")["status"] == "completed")
        #expect(worker.model.requestCount == 1)
        #expect(try await worker.status("u1", "s1", "t1")["status"] == "cancelled")
        #expect(try await worker.jsonEvents("u1", "s1", "t1").map { $0["type"] } == ["task.queued", "task.cancelled"])
    }

    @Test("a running task stops within a second wherever it runs: the model call is abandoned and nothing more is written")
    func cancelWhileRunning() async throws {
        let front = try await ServiceHarness.start(configure: { $0.workerSlots = 0 })
        defer { Task { await front.stop() } }
        // One slot: a second task can only run once the cancelled one let go of it.
        let worker = try await ServiceHarness.start(
            model: { request in request.messages.last?.content == "slow" ? .delayed(.seconds(30), .text("too late")) : .text("quick") },
            database: front.databaseURL
        ) { $0.workerSlots = 1 }
        defer { Task { await worker.stop() } }
        _ = try await front.invoke("u1", "s1", "t1", "slow")
        for _ in 0..<300 where worker.model.requestCount == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(try await front.status("u1", "s1", "t1")["status"] == "running")
        let clock = ContinuousClock()
        let cancelledAt = clock.now
        #expect(try await front.cancel("u1", "s1", "t1").status == 200)
        _ = try await front.invoke("u2", "s1", "t1", "next")
        #expect(try await front.settle("u2", "s1", "t1", timeout: .seconds(20))["status"] == "completed")
        // Far sooner than the 30 s model reply the run would otherwise have waited for.
        #expect(clock.now - cancelledAt < .seconds(10))
        #expect(try await front.status("u1", "s1", "t1")["status"] == "cancelled")
        #expect(try front.scalar("SELECT count(*) FROM messages WHERE user_id = 'u1'") == 1)
        #expect(try front.scalar("SELECT count(*) FROM llm_calls WHERE user_id = 'u1'") == 0)
        #expect(try await front.jsonEvents("u1", "s1", "t1").map { $0["type"] } == ["task.queued", "task.running", "task.cancelled"])
    }

    @Test("an interrupted task is cancelled at once; its resume is then refused; a finished task is 409; a second cancel is 200")
    func cancelInEachState() async throws {
        // Books a hotel when asked to, answers anything else.
        let service = try await ServiceHarness.start(model: { request in
            request.messages.last?.content.contains("酒店") == true ? await hotelModel(request) : .text("hi")
        })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        let first = try await service.cancel("u1", "s1", "t1")
        #expect(first.status == 200)
        let again = try await service.cancel("u1", "s1", "t1")
        #expect(again.status == 200)
        #expect(again.body == first.body)
        let resume = try await service.resume("u1", "s1", "t1", "accept")
        #expect(resume.status == 409)
        #expect(resume["detail"]?.stringValue?.contains("cancelled") == true)
        #expect(try service.scalar("SELECT count(*) FROM tool_calls") == 0)

        _ = try await service.invoke("u1", "s2", "t1", "hello")
        #expect(try await service.settle("u1", "s2", "t1")["status"] == "completed")
        let late = try await service.cancel("u1", "s2", "t1")
        #expect(late.status == 409)
        #expect(late["detail"]?.stringValue?.contains("completed") == true)
        #expect(try await service.status("u1", "s2", "t1")["status"] == "completed")

        #expect(try await service.cancel("u1", "s2", "nope").status == 404)
        #expect(try await service.cancel("u1", "nope").status == 404)
        #expect(try await service.post("/agent/cancel", ["user_id": "u1"]).status == 422)
        #expect(try await service.post("/agent/cancel", ["user_id": "u1", "session_id": "s1", "task_id": ""]).status == 422)
    }

    @Test("cancel with only user_id and session_id cancels every unfinished task of the session")
    func cancelSession() async throws {
        let service = try await ServiceHarness.start(configure: { $0.workerSlots = 0 })
        defer { Task { await service.stop() } }
        for task in ["t1", "t2", "t3"] { _ = try await service.invoke("u1", "s1", task, "hello \(task)") }
        _ = try await service.invoke("u1", "s2", "t1", "other session")
        let reply = try await service.cancel("u1", "s1")
        #expect(reply.status == 200)
        #expect(reply.body == ["user_id": "u1", "session_id": "s1", "task_ids": ["t1", "t2", "t3"], "status": "cancelled"])
        for task in ["t1", "t2", "t3"] { #expect(try await service.status("u1", "s1", task)["status"] == "cancelled") }
        #expect(try await service.status("u1", "s2", "t1")["status"] == "running")
        // Nothing left to cancel is not an error.
        #expect(try await service.cancel("u1", "s1").body["task_ids"] == [])
    }

    @Test("a cancel racing the completion has one winner, and the loser's answer says which", arguments: 0..<3)
    func cancelRacingCompletion(round: Int) async throws {
        let service = try await ServiceHarness.start(model: { _ in .delayed(.milliseconds(Int.random(in: 0...15)), .text("done")) })
        defer { Task { await service.stop() } }
        let tasks = 20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<tasks {
                group.addTask {
                    let session = "s\(index)"
                    _ = try await service.invoke("u1", session, "t1", "hello")
                    try await Task.sleep(for: .milliseconds(Int.random(in: 0...30)))
                    let cancel = try await service.cancel("u1", session, "t1")
                    let status = try await service.settle("u1", session, "t1")
                    let types = try await service.jsonEvents("u1", session, "t1").compactMap { $0["type"]?.stringValue }
                    let endings = types.filter { ["task.completed", "task.cancelled", "task.error"].contains($0) }
                    #expect(endings.count == 1, "\(types)")
                    if cancel.status == 200 {
                        #expect(status["status"] == "cancelled")
                        #expect(endings == ["task.cancelled"])
                    } else {
                        #expect(cancel.status == 409)
                        #expect(cancel["detail"]?.stringValue?.contains("completed") == true)
                        #expect(status["status"] == "completed")
                        #expect(endings == ["task.completed"])
                    }
                    #expect(types.last == endings.first)
                }
            }
            try await group.waitForAll()
        }
    }

    @Test("if_busy: enqueue waits, reject is 409 with the unfinished task and writes nothing, interrupt cancels and queues")
    func ifBusy() async throws {
        let front = try await ServiceHarness.start(configure: { $0.workerSlots = 0 })
        defer { Task { await front.stop() } }
        _ = try await front.invoke("u1", "s1", "t1", "first")
        let rejected = try await front.post(
            "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t2", "query": "second", "if_busy": "reject"])
        #expect(rejected.status == 409)
        #expect(rejected["detail"]?.stringValue?.contains("t1") == true)
        #expect(try front.scalar("SELECT count(*) FROM tasks WHERE task_id = 't2'") == 0)

        let interrupting = try await front.post(
            "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t3", "query": "third", "if_busy": "interrupt"])
        #expect(interrupting.status == 200)
        let first = try await front.status("u1", "s1", "t1")
        #expect(first["status"] == "cancelled")
        #expect(first["message"]?.stringValue?.contains("task t3 (if_busy=interrupt") == true)
        _ = try await front.post("/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t4", "query": "fourth", "if_busy": "enqueue"])
        #expect(try await front.post(
            "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t5", "query": "x", "if_busy": "later"]).status == 422)

        let worker = try await ServiceHarness.start(database: front.databaseURL)
        defer { Task { await worker.stop() } }
        #expect(try await worker.settle("u1", "s1", "t3")["status"] == "completed")
        #expect(try await worker.settle("u1", "s1", "t4")["status"] == "completed")
        #expect(try await worker.status("u1", "s1", "t1")["status"] == "cancelled")
        // A reject on a free session goes in.
        #expect(try await front.post(
            "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t6", "query": "sixth", "if_busy": "reject"]).status == 200)
    }

    @Test("an interrupted task does not block the session's later tasks, and if_busy=reject counts it as unfinished")
    func interruptedDoesNotBlock() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        _ = try await service.invoke("u1", "s1", "t2", "what is 3 times 4")
        let later = try await service.settle("u1", "s1", "t2")
        #expect(later["status"] == "interrupted" || later["status"] == "completed")
        #expect(try await service.status("u1", "s1", "t1")["status"] == "interrupted")
        let rejected = try await service.post(
            "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t3", "query": "x", "if_busy": "reject"])
        #expect(rejected.status == 409)
    }

    @Test("if_busy=interrupt frees the room of the tasks it cancels: a key limited to one task in flight may replace it")
    func interruptWithinTheLimit() async throws {
        let service = try await ServiceHarness.start(configure: { $0.workerSlots = 0 })
        defer { Task { await service.stop() } }
        let pool = PostgresPool(configuration: .init(conninfo: service.databaseURL, size: 1, connectionSettings: .init(role: "agentd_service")))
        let key = try await KeyStore(pool: pool).create(
            tenantID: "A", userID: nil, isAdmin: false, name: nil, requestsPerSecond: nil, maxTasksInFlight: 1
        ).key
        await pool.shutdown()
        func invoke(_ task: String, _ policy: String) async throws -> ServiceHarness.Reply {
            let body: JSONValue = ["user_id": "u1", "session_id": "s1", "task_id": .string(task), "query": "q", "if_busy": .string(policy)]
            return try await service.send(.POST, "/agent/invoke", body: body.jsonText, authorization: "Bearer \(key)")
        }
        #expect(try await invoke("t1", "enqueue").status == 200)
        #expect(try await invoke("t2", "enqueue").status == 429)
        #expect(try await invoke("t3", "interrupt").status == 200)
        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE task_id = 't1' AND state = 'cancelled'") == 1)
        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE task_id = 't3' AND state = 'queued'") == 1)
    }

    @Test("a task submitted again under the ids of a cancelled and deleted one runs: the cancel named the old row")
    func cancelledIdsReused() async throws {
        let service = try await ServiceHarness.start(model: { request in
            request.messages.last?.content == "slow" ? .delayed(.seconds(30), .text("too late")) : .text("quick")
        })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "slow")
        for _ in 0..<300 where service.model.requestCount == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(try await service.cancel("u1", "s1", "t1").status == 200)
        #expect(try await service.delete("/agent/task/u1/s1/t1").status == 200)
        _ = try await service.invoke("u1", "s1", "t1", "fast")
        let again = try await service.settle("u1", "s1", "t1", timeout: .seconds(20))
        #expect(again["status"] == "completed")
        #expect(again.body.resultMessages.last?["content"] == "quick")
    }
}
