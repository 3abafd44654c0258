import ArgumentParser
import Foundation
import Postgres
import Synchronization

/// `agentd-bench db-hop`: what the pool's thread hop costs per statement, against the least any
/// design can spend. The same prepared statement runs for a few seconds two ways, each keeping
/// `connections` connections busy:
/// - **pool**: `callers` Swift tasks through `PostgresPool.withConnection`, as agentd's statements
///   go (cooperative thread → pool thread → continuation resumed);
/// - **inline**: one OS thread per connection calling libpq in a loop, no hop at all (what a
///   non-blocking driver on the event loop could at best approach: the send, the wait on the
///   socket and the receive remain in every design).
/// This process's CPU per statement in each, and their difference, bound what rebuilding the
/// wrapper around a non-blocking connection could save (issue 17, step 2).
struct HopBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db-hop", abstract: "CPU per statement through the pool's thread hop against libpq called inline.")

    @Option(help: "Seconds per run.") var seconds = 5.0
    @Option(help: "Connections kept busy (agentd's DB_POOL_SIZE).") var connections = 8
    @Option(help: "Concurrent callers through the pool.") var callers = 64
    @Option(help: "Runs of each mode, interleaved.") var rounds = 3

    func validate() throws {
        guard (0.5...600).contains(seconds), (1...64).contains(connections), (1...4096).contains(callers), (1...20).contains(rounds) else {
            throw ValidationError("--seconds 0.5...600, --connections 1...64, --callers 1...4096, --rounds 1...20")
        }
    }

    struct Measure {
        var statements = 0
        var seconds = 0.0
        var ownCPU = 0.0
        var postgresCPU = 0.0
        var perStatement: Double { ownCPU * 1e6 / Double(max(1, statements)) }
        var postgresPerStatement: Double { postgresCPU * 1e6 / Double(max(1, statements)) }
        var rate: Double { Double(statements) / seconds }
    }

    func run() async throws {
        let url = try BenchDatabase.adminURL()
        let probe = try PostgresConnection.connect(url)
        let dataDirectory: String = try probe.query("SELECT current_setting('data_directory') AS dir").rows[0].decode("dir")
        probe.close()
        let ownPID = getpid()
        func cpu() -> (own: Double, postgres: Double) {
            let own = CPUMeter.times(of: ownPID, withReapedChildren: false)
            let postgres = CPUMeter.postgresTimes(dataDirectory: dataDirectory)
            return (own.user + own.system, postgres.user + postgres.system)
        }
        func measured(_ body: () async throws -> Int) async throws -> Measure {
            let before = cpu()
            let start = ContinuousClock.now
            let count = try await body()
            let elapsed = (ContinuousClock.now - start).milliseconds / 1000
            let after = cpu()
            return Measure(statements: count, seconds: elapsed, ownCPU: after.own - before.own, postgresCPU: after.postgres - before.postgres)
        }
        let statement: PostgresQuery = "SELECT /* agentd-bench */ \(Int64(1)) + 1 AS n"
        let duration = Duration.milliseconds(Int64(seconds * 1000))

        let pool = PostgresPool(configuration: .init(conninfo: url, size: connections))
        // Open every connection and prepare the statement on each before timing.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<(connections * 4) { group.addTask { _ = try await pool.withConnection { try $0.query(statement) } } }
            try await group.waitForAll()
        }

        var poolRuns: [Measure] = []
        var inlineRuns: [Measure] = []
        for _ in 0..<rounds {
            poolRuns.append(
                try await measured {
                    let deadline = ContinuousClock.now + duration
                    return try await withThrowingTaskGroup(of: Int.self) { group in
                        for _ in 0..<callers {
                            group.addTask {
                                var done = 0
                                while ContinuousClock.now < deadline {
                                    _ = try await pool.withConnection { try $0.query(statement) }
                                    done += 1
                                }
                                return done
                            }
                        }
                        return try await group.reduce(0, +)
                    }
                })
            // Connected and prepared before the clock starts, as the pool's are.
            let own = try (0..<connections).map { _ in
                let connection = try PostgresConnection.connect(url)
                _ = try connection.query(statement)
                return connection
            }
            defer { own.forEach { $0.close() } }
            inlineRuns.append(
                try await measured {
                    let counts = Mutex([Int]())
                    let threads = own.map { connection in
                        Thread {
                            let deadline = ContinuousClock.now + duration
                            var done = 0
                            while ContinuousClock.now < deadline, (try? connection.query(statement)) != nil { done += 1 }
                            counts.withLock { $0.append(done) }
                        }
                    }
                    threads.forEach { $0.start() }
                    let giveUp = ContinuousClock.now + duration + .seconds(30)
                    while counts.withLock({ $0.count }) < connections, ContinuousClock.now < giveUp {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    return counts.withLock { $0.reduce(0, +) }
                })
        }

        await pool.shutdown()

        func line(_ name: String, _ runs: [Measure]) -> String {
            let rates = runs.map { String(format: "%.0f", $0.rate) }.joined(separator: " / ")
            let own = runs.map { String(format: "%.1f", $0.perStatement) }.joined(separator: " / ")
            let postgres = runs.map { String(format: "%.1f", $0.postgresPerStatement) }.joined(separator: " / ")
            return "| \(name) | \(rates) | \(own) | \(postgres) |"
        }
        print("| mode (\(connections) connections, \(seconds) s a run) | statements/s | this process, µs CPU per statement | PostgreSQL, µs per statement |")
        print("|---|---|---|---|")
        print(line("pool, \(callers) callers (agentd's path)", poolRuns))
        print(line("inline, a thread per connection (no hop)", inlineRuns))
        let poolMean = poolRuns.map(\.perStatement).reduce(0, +) / Double(rounds)
        let inlineMean = inlineRuns.map(\.perStatement).reduce(0, +) / Double(rounds)
        print(String(format: "the hop: %.1f µs of CPU per statement (pool %.1f against inline %.1f, means of %d runs)", poolMean - inlineMean, poolMean, inlineMean, rounds))
    }
}
