import AgentKit
import AsyncHTTPClient
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// `GET /metrics`, read as Prometheus reads it: prometheus_client's text parser (PyPI, the
/// virtual environment `make test` makes: `METRICS_PYTHON`).
@Suite("metrics")
struct MetricsTests {
    struct Sample: Sendable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// The samples of an exposition, by prometheus_client's parser (which refuses malformed text).
    static func parse(_ text: String) throws -> [Sample] {
        guard let python = ProcessInfo.processInfo.environment["METRICS_PYTHON"], !python.isEmpty else {
            throw ParseError(description: "METRICS_PYTHON is not set: run the tests with `make test`, which installs prometheus_client")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [
            "-c",
            """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            samples = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]
            print(json.dumps(samples))
            """,
        ]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        let complaint = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, case .array(let rows) = try JSONValue(parsing: printed) else {
            throw ParseError(description: "prometheus_client refused the exposition: \(String(decoding: complaint, as: UTF8.self).suffix(600))")
        }
        return rows.compactMap { row in
            guard case .array(let parts) = row, parts.count == 3, let name = parts[0].stringValue, case .object(let labels) = parts[1],
                let value = parts[2].numberValue
            else { return nil }
            return Sample(name: name, labels: labels.compactMapValues(\.stringValue), value: value)
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    static func scrape(_ service: ServiceHarness, key: String? = nil) async throws -> (status: Int, samples: [Sample], text: String) {
        var request = HTTPClientRequest(url: service.baseURL + "/metrics")
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
        guard response.status == .ok else { return (Int(response.status.code), [], text) }
        #expect(response.headers.first(name: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        return (200, try parse(text), text)
    }

    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }

    @Test("after completed tasks, a model error, a cancel, an approval and tool calls, the counters moved by those amounts and the histograms counted those samples")
    func scriptedRun() async throws {
        let service = try await ServiceHarness.start(model: { request in
            guard let last = request.messages.last else { return .text("?") }
            if last.type == .tool { return .text("done: \(last.content)") }
            switch last.content {
            case "fail": return .failure(status: 400, body: #"{"error":{"message":"bad request"}}"#)
            case "slow": return .delayed(.seconds(30), .text("too late"))
            case "book": return .toolCalls([ToolCall(id: "h1", name: "book_hotel", args: ["hotel_name": "如家酒店"])])
            case "multiply": return .toolCalls([ToolCall(id: "m1", name: "multiply", args: ["a": 6, "b": 7])])
            default: return .text("four words of answer")
            }
        })
        defer { Task { await service.stop() } }
        let before = try await Self.scrape(service)
        #expect(before.status == 200)
        #expect(Self.value(before.samples, "agentd_tasks_submitted_total") == 0)

        _ = try await service.invoke("u1", "s1", "t1", "hello")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "completed")
        _ = try await service.invoke("u1", "s2", "t1", "fail")
        #expect(try await service.settle("u1", "s2", "t1")["status"] == "error")
        _ = try await service.invoke("u2", "s1", "t1", "slow")
        for _ in 0..<300 {
            if try await service.status("u2", "s1", "t1")["status"] == "running" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await service.cancel("u2", "s1", "t1").status == 200)
        // Cancelled again: the same answer, no second count.
        #expect(try await service.cancel("u2", "s1", "t1").status == 200)
        // The duplicate of an invoke is no new task.
        #expect(try await service.invoke("u1", "s1", "t1", "hello").status == 200)
        // An approval, accepted: two runs of one task, the tool runs after the decision.
        _ = try await service.invoke("u3", "s1", "t1", "book")
        #expect(try await service.settle("u3", "s1", "t1")["status"] == "interrupted")
        #expect(try await service.resume("u3", "s1", "t1", "accept").status == 200)
        #expect(try await service.settle("u3", "s1", "t1")["status"] == "completed")
        _ = try await service.invoke("u4", "s1", "t1", "multiply")
        #expect(try await service.settle("u4", "s1", "t1")["status"] == "completed")

        // The cancelled run stops at once; its run time is recorded when it has.
        var samples: [Sample] = []
        for _ in 0..<100 {
            samples = try await Self.scrape(service).samples
            if Self.value(samples, "agentd_task_run_seconds_count", ["scope": "task"]) == 6, Self.value(samples, "agentd_tasks_in_flight") == 0 {
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(Self.value(samples, "agentd_tasks_submitted_total") == 5)
        #expect(Self.value(samples, "agentd_tasks_finished_total", ["status": "completed"]) == 3)
        #expect(Self.value(samples, "agentd_tasks_finished_total", ["status": "error"]) == 1)
        #expect(Self.value(samples, "agentd_tasks_finished_total", ["status": "cancelled"]) == 1)
        // The booking's task was claimed twice: before its approval and after.
        #expect(Self.value(samples, "agentd_task_attempts_total") == 6)
        #expect(Self.value(samples, "agentd_task_queue_wait_seconds_count") == 6)
        #expect(Self.value(samples, "agentd_task_run_seconds_count", ["scope": "task"]) == 6)
        // Every step committed: hello's answer; fail's end; the booking's reply and its pause, then
        // the tool's result and the answer; multiply's reply, result and answer. The cancelled
        // run committed none.
        #expect(Self.value(samples, "agentd_task_run_seconds_count", ["scope": "step"]) == 9)
        #expect(Self.value(samples, "agentd_tasks_in_flight") == 0)
        #expect(Self.value(samples, "agentd_lease_expired_total") == 0)

        // The approval: one decision by a human, its wait timed; the tools that ran.
        #expect(Self.value(samples, "agentd_decisions_total", ["decision": "accept", "decided_by": "human"]) == 1)
        #expect(Self.value(samples, "agentd_decisions_total") == 1)
        #expect(Self.value(samples, "agentd_interrupt_wait_seconds_count") == 1)
        #expect(Self.value(samples, "agentd_tool_calls_total", ["tool": "book_hotel", "outcome": "ok"]) == 1)
        #expect(Self.value(samples, "agentd_tool_calls_total", ["tool": "multiply", "outcome": "ok"]) == 1)
        #expect(Self.value(samples, "agentd_tool_calls_total") == 2)
        #expect(Self.value(samples, "agentd_tool_call_seconds_count", ["tool": "multiply"]) == 1)

        // The model: five answers with their tokens, one refusal (a 400 is not retried), the
        // cancelled call counted as neither.
        let model = ["gen_ai_request_model": "scripted", "gen_ai_operation_name": "chat"]
        let promptTokens = try service.scalar("SELECT coalesce(sum(prompt_tokens), 0)::int FROM llm_calls WHERE outcome = 'ok'")
        let completionTokens = try service.scalar("SELECT coalesce(sum(completion_tokens), 0)::int FROM llm_calls WHERE outcome = 'ok'")
        #expect(promptTokens > 0)
        #expect(Self.value(samples, "gen_ai_client_token_usage_count", model.merging(["gen_ai_token_type": "input"]) { $1 }) == 5)
        #expect(Self.value(samples, "gen_ai_client_token_usage_sum", model.merging(["gen_ai_token_type": "input"]) { $1 }) == Double(promptTokens))
        #expect(
            Self.value(samples, "gen_ai_client_token_usage_sum", model.merging(["gen_ai_token_type": "output"]) { $1 }) == Double(completionTokens))
        #expect(Self.value(samples, "gen_ai_client_operation_duration_seconds_count", model) == 6)
        #expect(Self.value(samples, "agentd_model_errors_total", ["kind": "http_status"]) == 1)
        #expect(Self.value(samples, "agentd_model_errors_total") == 1)

        // HTTP by route template: six invokes answered 200, the status reads under one series.
        #expect(Self.value(samples, "agentd_http_requests_total", ["route": "/agent/invoke", "method": "POST", "status": "200"]) == 6)
        let statusRoutes = Set(samples.filter { $0.name == "agentd_http_requests_total" && $0.labels["route"]?.hasPrefix("/agent/status") == true }
            .compactMap { $0.labels["route"] })
        #expect(statusRoutes == ["/agent/status/{user_id}/{session_id}/{task_id}"])
        #expect(Self.value(samples, "agentd_http_request_seconds_count", ["route": "/agent/invoke", "method": "POST"]) == 6)
        // No label holds a request's id.
        for sample in samples {
            for value in sample.labels.values { #expect(!["u1", "u2", "u3", "u4", "s1", "s2", "t1"].contains { value.contains("/\($0)") || value == $0 }) }
        }
        // The pool: every acquisition timed, the connections by state within the pool's size.
        #expect((Self.value(samples, "agentd_db_pool_wait_seconds_count") ?? 0) > 0)
        let connections = (Self.value(samples, "agentd_db_connections", ["state": "idle"]) ?? -1)
            + (Self.value(samples, "agentd_db_connections", ["state": "busy"]) ?? -1)
        #expect(connections >= 1 && connections <= 4)
        #expect(Self.value(samples, "agentd_notify_reconnects_total") == 0)

        // The Grafana dashboard under deploy/ reads only series the service exports.
        let dashboard = try String(
            contentsOf: TestDatabase.sqlDirectory.deletingLastPathComponent().appendingPathComponent("deploy/grafana/agentd.json"), encoding: .utf8)
        let labels = Set(samples.flatMap(\.labels.keys))
        let used = Set(dashboard.matches(of: /\b(?:agentd|gen_ai)_[a-z_]+/).map { String($0.output) }).subtracting(labels)
        #expect(used.count >= 20)
        let exported = Set(samples.map(\.name))
        for name in used.sorted() { #expect(exported.contains(name), "the dashboard reads \(name), which /metrics does not have") }
    }

    @Test("tasks queued and approvals waiting are the cluster's: two processes share one count per interval")
    func clusterGauges() async throws {
        let front = try await ServiceHarness.start(configure: {
            $0.workerSlots = 0
            $0.metricsDatabaseInterval = .seconds(3600)
        })
        defer { Task { await front.stop() } }
        let other = try await ServiceHarness.start(database: front.databaseURL) {
            $0.workerSlots = 0
            $0.metricsDatabaseInterval = .seconds(3600)
        }
        defer { Task { await other.stop() } }
        func countedAt() throws -> String? {
            try front.rows("SELECT read_at::text AS at FROM metric_gauges WHERE name = 'queue_depth'").first?.decode("at", as: String.self)
        }
        #expect(Self.value(try await Self.scrape(front).samples, "agentd_queue_depth") == 0)
        let counted = try countedAt()
        for index in 0..<3 { _ = try await front.invoke("u\(index)", "s", "t", "hello") }
        _ = try front.rows("""
            INSERT INTO interrupts (tenant_id, user_id, session_id, task_id, tool_call_id, tool_name, tool_args, interrupt_data)
            VALUES ('default', 'u0', 's', 't', 'c1', 'book_hotel', '{}', '{}')
            """)
        // Within the interval the other process reads the figures counted before the invokes.
        #expect(Self.value(try await Self.scrape(other).samples, "agentd_queue_depth") == 0)
        #expect(try countedAt() == counted)
        // The interval over (as if an hour had passed): the first scrape counts again...
        _ = try front.rows("UPDATE metric_gauges SET read_at = now() - interval '2 hours'")
        let fresh = try await Self.scrape(other).samples
        #expect(Self.value(fresh, "agentd_queue_depth") == 3)
        #expect(Self.value(fresh, "agentd_interrupts_pending") == 1)
        let recounted = try countedAt()
        #expect(recounted != counted)
        // ...and the other process reads what it counted, without counting again.
        let shared = try await Self.scrape(front).samples
        #expect(Self.value(shared, "agentd_queue_depth") == 3)
        #expect(Self.value(shared, "agentd_interrupts_pending") == 1)
        #expect(try countedAt() == recounted)
    }

    @Test("an approval left past its deadline is counted as the timeout's decision, with its wait")
    func expiredApproval() async throws {
        let service = try await ServiceHarness.start(model: hotelModel) { $0.approvalTimeoutSeconds = 1 }
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "book")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        var samples: [Sample] = []
        for _ in 0..<200 {
            samples = try await Self.scrape(service).samples
            if Self.value(samples, "agentd_decisions_total") == 1 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(Self.value(samples, "agentd_decisions_total", ["decision": "reject", "decided_by": "timeout"]) == 1)
        #expect(Self.value(samples, "agentd_interrupt_wait_seconds_count") == 1)
        // Asked a second ago at least, and not many more.
        let waited = try #require(Self.value(samples, "agentd_interrupt_wait_seconds_sum"))
        #expect(waited >= 0.9 && waited < 30)
    }

    @Test("metrics span tenants: with keys, only an operator key reads them")
    func operatorOnly() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        #expect(try await Self.scrape(service).status == 200)  // open mode, on loopback
        let keys = try await AuthTests.makeKeys(service)
        #expect(try await Self.scrape(service).status == 401)
        #expect(try await Self.scrape(service, key: keys.tenantA).status == 403)
        #expect(try await Self.scrape(service, key: keys.userA1).status == 403)
        let operatorScrape = try await Self.scrape(service, key: keys.adminB)
        #expect(operatorScrape.status == 200)
        #expect(Self.value(operatorScrape.samples, "agentd_http_requests_total", ["route": "/metrics", "status": "403"]) == 2)
    }

    @Test("10,000 requests with distinct ids and 100 unknown methods add no series")
    func boundedSeries() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        func series() async throws -> Set<String> {
            Set(try await Self.scrape(service).samples.map { "\($0.name)\($0.labels.sorted { $0.key < $1.key })" })
        }
        // Each route and status once, so that the series exist before counting (the scrape's own too).
        _ = try await service.status("warm", "s", "t")
        _ = try await service.send(.RAW(value: "WARM"), "/agent/status/warm/s/t")
        _ = try await series()
        let start = try await series()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    for index in stride(from: worker, to: 10_000, by: 16) {
                        let reply = try await service.status("u\(index)", "s\(index)", "t\(index)")
                        #expect(reply.status == 200)
                    }
                }
            }
            try await group.waitForAll()
        }
        for index in 0..<100 { _ = try await service.send(.RAW(value: "X\(index)"), "/agent/status/u\(index)/s/t") }
        let end = try await series()
        #expect(end == start, "new series: \(end.subtracting(start).sorted())")
        let samples = try await Self.scrape(service).samples
        #expect(Self.value(samples, "agentd_http_requests_total", ["route": "/agent/status/{user_id}/{session_id}/{task_id}", "method": "GET"]) ?? 0 >= 10_001)
        #expect(!samples.contains { $0.labels["method"]?.hasPrefix("X") == true })
    }
}
