import AgentKit
import Foundation
import Testing
import TestSupport

@Suite("graceful shutdown")
struct ShutdownTests {
    @Test("a stopping process hands its running task back to the queue, and another process finishes it")
    func handBack() async throws {
        let first = try await ServiceHarness.start(model: { _ in .delayed(.seconds(20), .text("too slow")) }) {
            $0.shutdownGrace = .milliseconds(300)
        }
        _ = try await first.invoke("u1", "s1", "t1", "hello")
        // Stop while the model call is in flight: it is running once the model has the request.
        while first.model.requestCount == 0 { try await Task.sleep(for: .milliseconds(10)) }
        let clock = ContinuousClock()
        let started = clock.now
        let stopping = Task { await first.stop() }
        // The model call is cancelled when the grace period ends, not waited for: the task is
        // back in the queue long before the model would have answered.
        while try first.scalar("SELECT count(*) FROM tasks WHERE state = 'queued'") == 0, clock.now - started < .seconds(20) {
            try await Task.sleep(for: .milliseconds(20))
        }
        // Well under the model's 20 s, with room for a loaded machine (the whole suite on two cores).
        #expect(clock.now - started < .seconds(10))
        await stopping.value
        #expect(try first.scalar("SELECT count(*) FROM tasks WHERE state = 'queued' AND lease_owner IS NULL AND attempts = 1") == 1)
        #expect(try first.scalar("SELECT count(*) FROM messages") == 1)

        let second = try await ServiceHarness.start(model: { _ in .text("finished elsewhere") }, database: first.databaseURL)
        defer { Task { await second.stop() } }
        let done = try await second.settle("u1", "s1", "t1")
        #expect(done["status"] == "completed")
        #expect(done.body.resultMessages.last?["content"] == "finished elsewhere")
        #expect(try second.scalar("SELECT attempts FROM tasks WHERE task_id = 't1'") == 2)
    }

    @Test("a service that cannot bind its port stops with the error instead of hanging", .timeLimit(.minutes(1)))
    func portInUse() async throws {
        let first = try await ServiceHarness.start()
        defer { Task { await first.stop() } }
        let port = try #require(URL(string: first.baseURL)?.port)
        // The notifier, the dispatcher and the reaper are running when the HTTP server fails:
        // each must stop on cancellation, or the group waits for them forever.
        await #expect(throws: (any Error).self) {
            _ = try await ServiceHarness.start(configure: { $0.port = port })
        }
    }
}
