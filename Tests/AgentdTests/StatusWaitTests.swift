import AgentKit
import AsyncHTTPClient
import Foundation
import Postgres
import Testing
import TestSupport

/// `GET /agent/status/...?wait=S`: one request instead of a polling loop, woken by NOTIFY.
@Suite("status long-poll")
struct StatusWaitTests {
    @Test("a waiting read answers when the task completes, and when it pauses for approval")
    func answersOnSettle() async throws {
        let service = try await ServiceHarness.start(model: { request in
            let last = request.messages.last
            if last?.type == .tool { return .delayed(.milliseconds(300), .text("booked")) }
            if last?.content.hasPrefix("hotel") == true {
                return .delayed(.milliseconds(300), .toolCalls([ToolCall(id: "call_hotel", name: "book_hotel", args: ["hotel_name": "如家酒店"])]))
            }
            return .delayed(.milliseconds(300), .text("done"))
        })
        defer { Task { await service.stop() } }

        #expect(try await service.invoke("u1", "s1", "t1", "question").status == 200)
        // The model takes 300 ms, so a read without waiting sees the task still running.
        #expect(try await service.status("u1", "s1", "t1")["status"] == "running")
        let done = try await service.get("/agent/status/u1/s1/t1?wait=20")
        #expect(done.status == 200)
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages.last?["content"] == "done")

        #expect(try await service.invoke("u1", "s2", "t1", "hotel please").status == 200)
        let asked = try await service.get("/agent/status/u1/s2/t1?wait=20")
        #expect(asked["status"] == "interrupted")
        #expect(asked["last_response"]?["interrupt_data"]?["action_request"]?["action"] == "book_hotel")
        #expect(try await service.resume("u1", "s2", "t1", "accept").status == 200)
        let booked = try await service.get("/agent/status/u1/s2/t1?wait=20")
        #expect(booked["status"] == "completed")
        #expect(booked.body.resultMessages.last?["content"] == "booked")
    }

    @Test("the wait runs out and the task is reported as it is; settled and unknown tasks answer at once")
    func waitRunsOut() async throws {
        let service = try await ServiceHarness.start(model: { _ in .delayed(.seconds(5), .text("slow")) })
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u1", "s1", "t1", "question").status == 200)
        // Running after the wait: the answer came from the wait running out, not from the model's 5 s.
        let still = try await service.get("/agent/status/u1/s1/t1?wait=0.3")
        #expect(still.status == 200)
        #expect(still["status"] == "running")

        let unknown = try await service.get("/agent/status/u1/s1/nope?wait=30")
        #expect(unknown["status"] == "not_found")
        let idle = try await service.get("/agent/status/nobody/none/t?wait=30")
        #expect(idle["status"] == "not_found")
    }

    @Test("a task that the lease reaper ends in error wakes its waiting reads")
    func reaperWakesWaiters() async throws {
        let service = try await ServiceHarness.start(configure: { $0.lease = .milliseconds(1500); $0.maxAttempts = 2 })
        defer { Task { await service.stop() } }
        // A task on its last attempt, held by a worker that has died; its lease runs out in 5 s
        // (room for the read below to come first on a machine busy with the whole suite).
        try service.insertOrphan("u1", "s1", "t1", attempts: 2, leaseSeconds: 5)
        #expect(try await service.status("u1", "s1", "t1")["status"] == "running")
        // Woken by the reaper's NOTIFY, the read answers about 5.5 s in; without it, only when
        // its 30 s run out, which the client's 20 s timeout turns into a failure.
        var request = HTTPClientRequest(url: service.baseURL + "/agent/status/u1/s1/t1?wait=30")
        request.method = .GET
        let response = try await service.client.execute(request, timeout: .seconds(20))
        let body = try JSONValue(parsing: Array(try await response.body.collect(upTo: 1 << 20).readableBytesView))
        #expect(body["status"] == "error")
        #expect(body["message"]?.stringValue?.contains("2 attempts") == true)
    }

    @Test("a waiting read answers when the service shuts down, and does not hold the shutdown up")
    func answersOnShutdown() async throws {
        let service = try await ServiceHarness.start(model: { _ in .delayed(.seconds(20), .text("slow")) }) { $0.shutdownGrace = .milliseconds(300) }
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u1", "s1", "t1", "hello").status == 200)
        let waiting = Task { try await service.get("/agent/status/u1/s1/t1?wait=30") }
        while service.model.requestCount == 0 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(200))  // the read is waiting by now
        let clock = ContinuousClock()
        let started = clock.now
        await service.stopService()
        // Held up by the read, the shutdown would take its 30 s (the HTTP server waits for
        // requests in flight); answered at once, it takes the grace period and a step's hand-back.
        #expect(clock.now - started < .seconds(15))
        let reply = try await waiting.value
        #expect(reply.status == 200)
        #expect(reply["status"] == "running")
    }

    @Test("a wait that is not a number of seconds from 0 to 30 is refused", arguments: ["-1", "31", "abc", "nan", "inf", ""])
    func refusesBadWait(_ wait: String) async throws {
        let service = try await ServiceHarness.start(model: { _ in .text("ok") })
        defer { Task { await service.stop() } }
        let reply = try await service.get("/agent/status/u1/s1/t1?wait=\(wait)")
        #expect(reply.status == 422)
        #expect(reply["detail"] == "wait must be a number of seconds from 0 to 30")
    }
}
