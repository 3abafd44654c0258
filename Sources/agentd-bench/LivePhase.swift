import AgentdProcess
import AsyncHTTPClient
import Foundation
import NIOCore
import Postgres
import Synchronization

/// Phase 8: live event streams across processes. A second agentd that runs no task (WORKER_SLOTS=0)
/// takes the invokes and serves every client's event stream; the first runs the tasks, so every
/// stored event reaches the clients through the database and every piece of text through the
/// relay between the two (`PeerRelay`). The scripted model writes `--live-chunks` pieces, each
/// stamped with the time it was written; a client subtracts that from the time it read it.
extension Phases {
    struct LiveResult: Sendable {
        var latencies: [Double] = []
        var stored = 0
        var deltas = 0
        var tasks = 0
    }

    func live(front: AgentdProcess, streams: Int) async throws {
        let rounds = max(1, bench.liveRounds)
        try await model.setLive(count: bench.liveChunks, interval: .milliseconds(bench.liveChunkMilliseconds))
        let http = LoadClient.make(connections: streams * 2 + 8)
        let frontClient = LoadClient(http: http, base: "http://127.0.0.1:\(front.port)", polling: false, authorization: client.authorization)
        let dataDirectory: String = try await db.query("SELECT /* agentd-bench */ current_setting('data_directory') AS dir").rows[0].decode("dir")
        let walBefore: String = try await db.query("SELECT /* agentd-bench */ pg_current_wal_lsn()::text AS lsn").rows[0].decode("lsn")
        let cpuBefore = (front: cpuSeconds(front.pid), worker: cpuSeconds(child.pid))
        let clock = ContinuousClock()
        let started = clock.now
        let results = try await withThrowingTaskGroup(of: LiveResult.self) { group in
            for index in 0..<streams {
                group.addTask {
                    var result = LiveResult()
                    for round in 0..<rounds {
                        let (user, task) = ("p8s\(streams)-u\(index)", "t\(round)")
                        try await frontClient.invoke(user: user, session: "s", task: task, query: "live \(round)")
                        try await Self.readStream(http: http, url: frontClient.base + "/agent/events/\(user)/s/\(task)", into: &result)
                        result.tasks += 1
                    }
                    return result
                }
            }
            return try await group.reduce(into: LiveResult()) { total, one in
                total.latencies += one.latencies
                total.stored += one.stored
                total.deltas += one.deltas
                total.tasks += one.tasks
            }
        }
        let elapsed = (clock.now - started).milliseconds / 1000
        try await model.setLive(count: 0, interval: .zero)
        try await http.shutdown()
        let walAfter: String = try await db.query("SELECT /* agentd-bench */ pg_current_wal_lsn()::text AS lsn").rows[0].decode("lsn")
        let commits = try await Task.detached { try walCommits(dataDirectory: dataDirectory, from: walBefore, to: walAfter) }.value
        let cpu = (front: cpuSeconds(front.pid) - cpuBefore.front, worker: cpuSeconds(child.pid) - cpuBefore.worker)
        let tasks = Double(max(1, results.tasks))
        let latency = Sample(results.latencies)
        progress(String(
            format: "live, %d streams: %d tasks, %.1f stored events and %.1f deltas per task, delta latency p50 %.2f ms p99 %.2f ms, %.2f commits per task",
            streams, results.tasks, Double(results.stored) / tasks, Double(results.deltas) / tasks, latency.p(0.5), latency.p(0.99),
            Double(commits) / tasks))
        let label = "\(streams) streams on an API-only process, tasks run by the other"
        report.add("8 live", "\(label): tasks/s (\(results.tasks) tasks, \(bench.liveChunks) pieces of text each)", String(format: "%.0f", tasks / elapsed))
        report.add("8 live", "\(streams) streams: stored events per task; deltas per task", String(format: "%.2f; %.1f", Double(results.stored) / tasks, Double(results.deltas) / tasks))
        report.add(
            "8 live", "\(streams) streams: delta latency, model wrote → client read, p50 / p99 (\(latency.count) pieces)",
            "\(latency.milliseconds(0.5)) / \(latency.milliseconds(0.99))", aim: "< 100 ms")
        report.add("8 live", "\(streams) streams: commits that wrote, per task, every task watched (WAL commit records)", String(format: "%.2f", Double(commits) / tasks))
        report.add(
            "8 live", "\(streams) streams: CPU per task, stream process / task process",
            String(format: "%.0f µs / %.0f µs", cpu.front / tasks * 1e6, cpu.worker / tasks * 1e6))
    }

    /// Reads one task's event stream to its end: stored events are counted, and each piece of
    /// text gives a latency per `t=<µs>;` stamp in it.
    static func readStream(http: HTTPClient, url: String, into result: inout LiveResult) async throws {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "text/event-stream")
        let response = try await http.execute(request, timeout: .seconds(120))
        guard response.status == .ok else { throw LoadClient.Failure(description: "events answered \(response.status.code)") }
        var pending: [UInt8] = []
        var ended = false
        for try await chunk in response.body {
            pending += chunk.readableBytesView
            let now = Date().timeIntervalSince1970 * 1_000_000
            while let end = frameEnd(pending) {
                let frame = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeFirst(end + 2)
                if frame.hasPrefix("id: ") { result.stored += 1 }
                if frame.contains("event: task.completed") || frame.contains("event: task.error") { ended = true }
                guard frame.contains("event: message.delta") else { continue }
                result.deltas += 1
                for stamp in frame.split(separator: "t=").dropFirst() {
                    guard let micros = Double(stamp.prefix { $0.isNumber }) else { continue }
                    result.latencies.append((now - micros) / 1000)
                }
            }
        }
        guard ended else { throw LoadClient.Failure(description: "\(url) ended before the task did") }
    }

    static func frameEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in 0..<(bytes.count - 1) where bytes[index] == 10 && bytes[index + 1] == 10 { return index }
        return nil
    }

    /// User and system CPU time of a process so far, from /proc.
    func cpuSeconds(_ pid: Int32) -> Double {
        let times = CPUMeter.times(of: pid, withReapedChildren: false)
        return times.user + times.system
    }
}
