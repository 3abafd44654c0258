import AgentdProcess
import Foundation
import Synchronization

extension Phases {
    // MARK: 11. What metrics cost

    /// Phase 2's load at one client count on fresh agentd processes alone on the database, metrics
    /// off (`METRICS=0`) and on, interleaved (off, on, off, on …) so that the VM's drift falls on
    /// both. With metrics on, `/metrics` is scraped every second, fifteen times Prometheus's usual
    /// interval. Runs after the other phases, which stop their own agentd first.
    func metricsCost(clients: Int, rounds: Int, seconds: Double, launch: @Sendable ([String: String]) async throws -> AgentdProcess) async throws {
        var rates: [Bool: [Double]] = [false: [], true: []]
        var cpu: [Bool: [Double]] = [false: [], true: []]
        var scrapes = 0
        var scrapedBytes = 0
        for round in 0..<rounds {
            for metricsOn in [false, true] {
                let process = try await launch(["METRICS": metricsOn ? "1" : "0"])
                defer { process.stop() }
                let client = LoadClient(
                    http: self.client.http, base: "http://127.0.0.1:\(process.port)", polling: self.client.polling,
                    authorization: self.client.authorization)
                // A fresh process prepares its statements and opens its connections first.
                _ = try await closedLoop(client: client, prefix: "p11w\(round)\(metricsOn ? "on" : "off")", clients: clients, seconds: 1)
                // Scraped with the load's own credentials: in keyed mode a tenant key is refused
                // (403), which costs what answering a scrape costs less the figures; said below.
                let scraper: Task<(count: Int, bytes: Int), Never>? =
                    metricsOn
                    ? Task {
                        var (count, bytes) = (0, 0)
                        while !Task.isCancelled {
                            if let reply = try? await client.send(.GET, "/metrics"), reply.status == 200 {
                                count += 1
                                bytes = reply.body.readableBytes
                            }
                            try? await Task.sleep(for: .seconds(1))
                        }
                        return (count, bytes)
                    } : nil
                defer { scraper?.cancel() }
                let before = CPUMeter.times(of: process.pid, withReapedChildren: false)
                let clock = ContinuousClock()
                let started = clock.now
                let (latencies, _) = try await closedLoop(
                    client: client, prefix: "p11r\(round)\(metricsOn ? "on" : "off")", clients: clients, seconds: seconds)
                let elapsed = (clock.now - started).milliseconds / 1000
                let used = CPUMeter.times(of: process.pid, withReapedChildren: false) - before
                scraper?.cancel()  // before its value is awaited
                if let scraped = await scraper?.value {
                    scrapes += scraped.count
                    scrapedBytes = max(scrapedBytes, scraped.bytes)
                }
                let rate = Double(latencies.count) / elapsed
                rates[metricsOn, default: []].append(rate)
                cpu[metricsOn, default: []].append((used.user + used.system) * 1e6 / Double(max(1, latencies.count)))
                progress(String(format: "metrics %@, round %d: %.0f tasks/s, agentd %.0f µs per task", metricsOn ? "on" : "off", round + 1, rate, cpu[metricsOn]?.last ?? 0))
            }
        }
        func mean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }
        func list(_ values: [Double]) -> String { values.map { String(format: "%.0f", $0) }.joined(separator: " / ") }
        let (off, on) = (rates[false] ?? [], rates[true] ?? [])
        let cost = 1 - mean(on) / mean(off)
        report.add(
            "11 metrics", "\(clients) clients, \(Int(seconds)) s a run, interleaved: tasks/s with metrics off; on (scraped every second)",
            "\(list(off)); \(list(on))", ratio: String(format: "%+.1f%% with metrics on", -cost * 100), aim: "< 3 % slower")
        report.add(
            "11 metrics", "agentd µs of CPU per task, off; on", "\(list(cpu[false] ?? [])); \(list(cpu[true] ?? []))",
            ratio: scrapes > 0 ? "\(scrapes) scrapes of \(scrapedBytes) bytes" : "not scraped (the load's key is not an operator's)")
    }
}
