import AgentKit
import AgentdApp
import AgentdProcess
import Foundation
import NIOHTTP1
import Testing
import TestSupport

/// Webhooks (issue 16, part 3): registered per tenant, delivered from rows by any process, signed,
/// retried with backoff, each attempt recorded, and deduplicated by receivers on their id.
@Suite("webhooks")
struct WebhookTests {
    static let secret = "whsec_0123456789abcdef"

    func put(_ service: ServiceHarness, _ id: String, _ body: JSONValue, key: String? = nil) async throws -> ServiceHarness.Reply {
        try await service.send(.PUT, "/webhooks/\(id)", body: body.jsonText, authorization: key.map { "Bearer \($0)" })
    }

    /// Polls the receiver until `condition` holds of its stats, or `seconds` pass.
    func received(_ receiver: WebhookReceiver, within seconds: Double, _ condition: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var stats = try await receiver.stats()
        while !condition(stats), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            stats = try await receiver.stats()
        }
        return stats
    }

    @Test("registration: tenant and operator keys only, the secret never shown, the outbound rules and every field checked; a replaced webhook keeps its id")
    func registration() async throws {
        let service = try await ServiceHarness.start(configure: { $0.secretsKey = testSecretsKey })
        defer { Task { await service.stop() } }
        let keys = try await AuthTests.makeKeys(service)
        let body: JSONValue = ["url": "https://hooks.example.com/agentd", "secret": .string(Self.secret), "events": ["interrupt", "completed"]]
        let created = try await put(service, "ops", body, key: keys.tenantA)
        #expect(created.status == 200)
        #expect(created["url"] == "https://hooks.example.com/agentd")
        #expect(created["events"] == ["interrupt", "completed"])
        #expect(created["agent_id"] == .null)
        #expect(created["secret"] == nil)
        #expect(!created.body.jsonText.contains(Self.secret))
        #expect(try service.scalar("SELECT count(*) FROM webhooks WHERE secret LIKE 'enc:v1:%' AND secret NOT LIKE '%whsec%'") == 1)
        #expect(try await put(service, "ops", body, key: keys.userA1).status == 403)
        #expect(try await service.send(.GET, "/webhooks", authorization: "Bearer \(keys.userA1)").status == 403)
        // Another tenant sees none of it.
        #expect(try await service.send(.GET, "/webhooks/ops", authorization: "Bearer \(keys.tenantB)").status == 404)
        let replaced = try await put(
            service, "ops", ["url": "https://hooks.example.com/v2", "secret": .string(Self.secret), "events": ["error"], "agent_id": "helper"],
            key: keys.tenantA)
        #expect(replaced["events"] == ["error"])
        #expect(replaced["agent_id"] == "helper")
        #expect(replaced["created_at"] == created["created_at"])
        let listed = try await service.send(.GET, "/webhooks", authorization: "Bearer \(keys.tenantA)")
        #expect(listed["webhooks"]?.arrayItems.map { $0["webhook_id"]?.stringValue ?? "" } == ["ops"])
        #expect(try await service.send(.GET, "/webhooks/ops/deliveries", authorization: "Bearer \(keys.tenantA)")["deliveries"] == [])

        let refusals: [(JSONValue, String)] = [
            (["url": "http://127.0.0.1:9/hook", "secret": .string(Self.secret), "events": ["completed"]], "url:"),
            (["url": "http://10.1.2.3/hook", "secret": .string(Self.secret), "events": ["completed"]], "url:"),
            (["url": "ftp://hooks.example.com/", "secret": .string(Self.secret), "events": ["completed"]], "url:"),
            (["url": "https://hooks.example.com/h\u{0}x", "secret": .string(Self.secret), "events": ["completed"]], "url:"),
            (["url": "https://hooks.example.com/a b", "secret": .string(Self.secret), "events": ["completed"]], "url:"),
            (["url": .string("https://hooks.example.com/" + String(repeating: "a", count: 3000)), "secret": .string(Self.secret), "events": ["completed"]], "url:"),
            (["secret": .string(Self.secret), "events": ["completed"]], "url:"),
            (["url": "https://hooks.example.com/", "secret": "short", "events": ["completed"]], "secret:"),
            (["url": "https://hooks.example.com/", "events": ["completed"]], "secret:"),
            (["url": "https://hooks.example.com/", "secret": .string(Self.secret), "events": []], "events:"),
            (["url": "https://hooks.example.com/", "secret": .string(Self.secret), "events": ["queued"]], "events[0]:"),
            (["url": "https://hooks.example.com/", "secret": .string(Self.secret), "events": ["completed"], "agent_id": 7], "agent_id:"),
            (["url": "https://hooks.example.com/", "secret": .string(Self.secret), "events": ["completed"], "extra": 1], "extra:"),
        ]
        for (refused, field) in refusals {
            let reply = try await put(service, "bad", refused, key: keys.tenantA)
            #expect(reply.status == 422, "\(refused)")
            #expect(reply["detail"]?.stringValue?.hasPrefix(field) == true, "\(reply.body)")
        }
        #expect(try await service.send(.PUT, "/webhooks/bad", body: "[1,", authorization: "Bearer \(keys.tenantA)").status == 400)
        #expect(try service.scalar("SELECT count(*) FROM webhooks") == 1)
        #expect(try await service.send(.DELETE, "/webhooks/ops", authorization: "Bearer \(keys.tenantA)").status == 200)
        #expect(try await service.send(.DELETE, "/webhooks/ops", authorization: "Bearer \(keys.tenantA)").status == 404)

        let keyless = try await ServiceHarness.start()
        defer { Task { await keyless.stop() } }
        let noKey = try await put(keyless, "ops", body)
        #expect(noKey.status == 422)
        #expect(noKey["detail"]?.stringValue?.contains("AGENTD_SECRETS_KEY") == true)
    }

    @Test("a receiver that fails the first attempts: retried after about 1 s and 2 s, signed, each attempt recorded, each event applied once; filters by event and agent")
    func retries() async throws {
        let receiver = try await WebhookReceiver(secret: Self.secret, failFirst: 2)
        defer { receiver.stop() }
        let service = try await ServiceHarness.start(model: hotelModel) {
            $0.secretsKey = testSecretsKey
            $0.outboundAllowedHosts = ["127.0.0.1"]
        }
        defer { Task { await service.stop() } }
        #expect(try await put(service, "all", ["url": .string(receiver.url), "secret": .string(Self.secret), "events": ["interrupt", "completed"]]).status == 200)
        #expect(
            try await put(
                service, "other-agent",
                ["url": .string(receiver.url), "secret": .string(Self.secret), "events": ["interrupt", "completed", "cancelled"], "agent_id": "helper"]
            ).status == 200)
        _ = try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        #expect(try await service.resume("u1", "s1", "t1", "accept").status == 200)
        // Not subscribed to: no delivery.
        _ = try await service.invoke("u1", "s2", "t1", "帮我预定如家酒店")
        #expect(try await service.settle("u1", "s2", "t1")["status"] == "interrupted")
        #expect(try await service.cancel("u1", "s2", "t1").status == 200)

        let stats = try await received(receiver, within: 30) { ($0["applied"]?.arrayItems.count ?? 0) >= 3 }
        let applied = stats["applied"]?.arrayItems ?? []
        #expect(applied.map { $0["type"]?.stringValue ?? "" }.sorted() == ["completed", "interrupt", "interrupt"])
        #expect(stats["bad_signatures"] == 0)
        #expect(stats["duplicates"] == 0)
        let interrupt = try #require(applied.first { $0["type"] == "interrupt" && $0["data"]?["session_id"] == "s1" })
        #expect(interrupt["webhook_id"] == "all")
        #expect(interrupt["tenant_id"] == "default")
        #expect(interrupt["data"]?["task_id"] == "t1")
        #expect(interrupt["data"]?["status"] == "interrupted")
        #expect(interrupt["data"]?["agent_id"] == "default")
        #expect(interrupt["data"]?["interrupt_data"]?["action_request"]?["action"] == "book_hotel")
        let completed = try #require(applied.first { $0["type"] == "completed" })
        #expect(completed["data"]?["status"] == "completed")
        for event in applied {
            let id = try #require(event["id"]?.stringValue)
            #expect(stats["attempts"]?[id] == 3)
            let times = stats["times"]?[id]?.arrayItems.compactMap(\.numberValue) ?? []
            #expect(times.count == 3)
            if times.count == 3 {
                // 1 s then 2 s, each ±10 %, plus the round's tick.
                #expect(times[1] - times[0] >= 0.85)
                #expect(times[2] - times[1] >= 1.75)
            }
        }
        // The receiver answers before the sender records its answer: wait for the records.
        let recorded = ContinuousClock.now + .seconds(20)
        while try service.scalar("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'") < 3, ContinuousClock.now < recorded {
            try await Task.sleep(for: .milliseconds(100))
        }
        // One group commit can give two deliveries the same created_at: delivery_id keeps each one's attempts together.
        let attempts = try service.rows("""
            SELECT a.status_code, a.latency_ms, a.error, d.state, d.finished_at IS NOT NULL AS finished
            FROM webhook_attempts a JOIN webhook_deliveries d USING (tenant_id, delivery_id)
            ORDER BY d.created_at, d.delivery_id, a.attempt
            """)
        #expect(attempts.count == 9)
        #expect(try attempts.map { try $0.decode("status_code", as: Int?.self) } == [503, 503, 200, 503, 503, 200, 503, 503, 200])
        #expect(try attempts.map { try $0.decode("error", as: String?.self) }.filter { $0 != nil }.count == 6)
        #expect(try attempts.allSatisfy { try $0.decode("latency_ms", as: Double.self) > 0 && $0.decode("state", as: String.self) == "delivered" })
        #expect(try service.scalar("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = 'other-agent'") == 0)
        let listed = try await service.get("/webhooks/all/deliveries")
        let newest = try #require(listed["deliveries"]?.arrayItems.first)
        #expect(newest["state"] == "delivered")
        #expect(newest["attempts"]?.arrayItems.map { $0["status_code"] ?? .null } == [503, 503, 200])
        #expect(newest["next_attempt_at"] == .null)
    }

    @Test("two processes on one database deliver each of 20 events once; an unreachable receiver's attempts are recorded and given up after 24 hours")
    func onceAcrossProcessesAndGivingUp() async throws {
        let receiver = try await WebhookReceiver(secret: Self.secret)
        defer { receiver.stop() }
        func configure(_ configuration: inout AgentdConfiguration) {
            configuration.secretsKey = testSecretsKey
            configuration.outboundAllowedHosts = ["127.0.0.1"]
        }
        let first = try await ServiceHarness.start(configure: configure)
        defer { Task { await first.stop() } }
        let second = try await ServiceHarness.start(database: first.databaseURL, configure: configure)
        defer { Task { await second.stop() } }
        #expect(try await put(first, "done", ["url": .string(receiver.url), "secret": .string(Self.secret), "events": ["completed"]]).status == 200)
        for index in 0..<20 {
            let service = index.isMultiple(of: 2) ? first : second
            #expect(try await service.invoke("u\(index % 4)", "s\(index)", "t1", "hello \(index)").status == 200)
        }
        let stats = try await received(receiver, within: 30) { ($0["applied"]?.arrayItems.count ?? 0) >= 20 }
        #expect(stats["applied"]?.arrayItems.count == 20)
        #expect(stats["duplicates"] == 0)
        #expect(stats["attempts"]?.objectValue?.values.allSatisfy { $0 == 1 } == true)
        // The receiver answers before the sender records its answer: wait for the records.
        let recorded = ContinuousClock.now + .seconds(20)
        while try first.scalar("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'") < 20, ContinuousClock.now < recorded {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try first.scalar("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered' AND attempts = 1") == 20)

        // Nothing listens there: each attempt is recorded with its error, and none after a day.
        let (closedPort, socket) = try FreePort.bind()
        defer { close(socket) }
        #expect(
            try await put(first, "gone", ["url": .string("http://127.0.0.1:\(closedPort)/hook"), "secret": .string(Self.secret), "events": ["completed"]])
                .status == 200)
        #expect(try await first.invoke("u1", "s-gone", "t1", "hello").status == 200)
        let deadline = ContinuousClock.now + .seconds(20)
        while try first.scalar("SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d USING (tenant_id, delivery_id) WHERE d.webhook_id = 'gone'") < 2,
            ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(100))
        }
        let failedAttempt = try #require(
            first.rows("""
                SELECT a.status_code, a.error FROM webhook_attempts a JOIN webhook_deliveries d USING (tenant_id, delivery_id)
                WHERE d.webhook_id = 'gone' ORDER BY a.attempt LIMIT 1
                """).first)
        #expect(try failedAttempt.decode("status_code", as: Int?.self) == nil)
        #expect(try failedAttempt.decode("error", as: String?.self)?.isEmpty == false)
        _ = try first.rows("UPDATE webhook_deliveries SET created_at = now() - interval '24 hours', next_attempt_at = now() WHERE webhook_id = 'gone'")
        let givenUp = ContinuousClock.now + .seconds(20)
        while try first.scalar("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = 'gone' AND state = 'failed'") == 0, ContinuousClock.now < givenUp {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try first.scalar("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = 'gone' AND state = 'failed' AND finished_at IS NOT NULL") == 1)
        let attemptsThen = try first.scalar("SELECT attempts FROM webhook_deliveries WHERE webhook_id = 'gone'")
        try await Task.sleep(for: .seconds(1.5))
        #expect(try first.scalar("SELECT attempts FROM webhook_deliveries WHERE webhook_id = 'gone'") == attemptsThen)
    }

    @Test("a receiver that sends its headers and never its body costs one attempt of 10 s, and holds up no other delivery")
    func stalledBody() async throws {
        let receiver = try await WebhookReceiver(secret: Self.secret)
        defer { receiver.stop() }
        let service = try await ServiceHarness.start(configure: {
            $0.secretsKey = testSecretsKey
            $0.outboundAllowedHosts = ["127.0.0.1"]
        })
        defer { Task { await service.stop() } }
        #expect(try await put(service, "stall", ["url": .string(receiver.url(path: "/stall")), "secret": .string(Self.secret), "events": ["completed"]]).status == 200)
        #expect(try await service.invoke("u1", "s1", "t1", "hello").status == 200)
        let stalled = try await received(receiver, within: 20) { $0["stalled"] == 1 }
        #expect(stalled["stalled"] == 1)
        // Registered after the stalled attempt began: delivered while it still hangs.
        #expect(try await put(service, "fine", ["url": .string(receiver.url), "secret": .string(Self.secret), "events": ["completed"]]).status == 200)
        #expect(try await service.invoke("u1", "s2", "t1", "hello").status == 200)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        while try service.scalar("SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d USING (tenant_id, delivery_id) WHERE d.webhook_id = 'stall'") == 0,
            clock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(100))
        }
        let attempt = try #require(
            try service.rows("""
                SELECT a.status_code, a.error, a.latency_ms FROM webhook_attempts a JOIN webhook_deliveries d USING (tenant_id, delivery_id)
                WHERE d.webhook_id = 'stall' ORDER BY a.attempt LIMIT 1
                """).first)
        #expect(try attempt.decode("error", as: String?.self) == "no answer within 10.0 s")
        #expect(try attempt.decode("latency_ms", as: Double.self) >= 9_900)
        #expect(try service.scalar("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = 'fine' AND state = 'delivered'") == 1)
        let fine = try service.rows("""
            SELECT extract(epoch FROM a.attempted_at)::float8 AS at FROM webhook_attempts a JOIN webhook_deliveries d USING (tenant_id, delivery_id)
            WHERE d.webhook_id = 'fine'
            """)
        let stalledAttempt = try service.rows("""
            SELECT extract(epoch FROM a.attempted_at)::float8 AS at FROM webhook_attempts a JOIN webhook_deliveries d USING (tenant_id, delivery_id)
            WHERE d.webhook_id = 'stall' ORDER BY a.attempt LIMIT 1
            """)
        // The fine one was recorded before the stalled attempt gave up.
        if let fineAt = try fine.first?.decode("at", as: Double.self), let stallAt = try stalledAttempt.first?.decode("at", as: Double.self) {
            #expect(fineAt < stallAt)
        }
    }
}
