import AgentKit
import ArgumentParser
import AgentdProcess
import AsyncHTTPClient
import Foundation
import Postgres
import ScriptedModel
import Store
import Synchronization

/// `make bench`: the whole service under load over HTTP, next to what the same PostgreSQL can do.
struct ServiceBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service",
        abstract: "Ceiling, throughput, dispatch latency, approvals, tasks in flight, reads and per-task cost of a live agentd."
    )

    @Option(help: "The agentd binary (default: the one beside this program).") var agentd: String?
    @Option(help: "Seconds of each pgbench ceiling run.") var ceilingSeconds = 5
    @Option(help: "Concurrent clients of the throughput runs, comma-separated.") var clients = "8,64,256"
    @Option(help: "Seconds of each throughput run.") var seconds = 20.0
    @Option(help: "Tasks per second submitted in the dispatch-latency run.") var dispatchRate = 200
    @Option(help: "Seconds of the dispatch-latency run.") var dispatchSeconds = 10.0
    @Option(help: "Approval round trips.") var approvals = 1000
    @Option(help: "Clients doing approval round trips at once.") var approvalClients = 32
    @Option(help: "Tasks submitted at once in the in-flight run.") var inflight = 2000
    @Option(help: "Model latency of the in-flight run, in seconds.") var inflightModelSeconds = 2.0
    @Option(help: "Seconds of the status-read run.") var readSeconds = 10.0
    @Option(help: "Keep-alive connections of the status-read run.") var readConnections = 64
    @Option(help: "Path the read run GETs instead of a completed task's status (e.g. /health, to compare).") var readPath: String?
    @Option(help: "Tasks of the per-task cost run.") var costTasks = 2000
    @Option(help: "WORKER_SLOTS of the service.") var workerSlots = 2048
    @Option(help: "DB_POOL_SIZE of the service.") var dbPoolSize = 8
    @Option(help: "GROUP_COMMIT_MAX of the service (1: every invoke and step commits alone).") var groupCommitMax = 64
    @Option(
        help: "More environment for the agentd processes, NAME=VALUE, repeatable (e.g. LD_PRELOAD=… or GLIBC_TUNABLES=…, for A/B runs).")
    var agentdEnvironment: [String] = []
    @Flag(help: "Clients poll the status (2 ms, backing off to 50 ms) instead of waiting with ?wait=.") var poll = false
    @Flag(help: "Every request carries a tenant API key, so that the service authenticates each one (keyed mode, not open).") var keyed = false
    @Option(help: "LLM_STREAM of the service: 1 asks the model for streamed replies, 0 for whole ones.") var llmStream = 1
    @Option(help: "Event streams open at once in the live runs, comma-separated.") var liveStreams = "16,256"
    @Option(help: "Tasks each live stream follows, one after the other.") var liveRounds = 4
    @Option(help: "Pieces of text the model writes per task in the live run.") var liveChunks = 50
    @Option(help: "Milliseconds between the pieces.") var liveChunkMilliseconds = 10
    @Option(help: "Tasks of each kind in the MCP run (one tool call each).") var mcpCalls = 300
    @Option(help: "Clients of the MCP run (1: each call's latency alone, no queueing at the server).") var mcpClients = 1
    @Option(help: "Approvals waiting in the inbox run.") var inboxPending = 10_000
    @Option(help: "Users they belong to.") var inboxUsers = 1000
    @Option(help: "Reads of each inbox page, one at a time.") var inboxReads = 200
    @Option(help: "Clients of the metrics-cost runs (phase 11).") var metricsClients = 64
    @Option(help: "Rounds of the metrics-cost runs, each one run with metrics off and one with them on.") var metricsRounds = 3
    @Option(help: "Seconds of each metrics-cost run.") var metricsSeconds = 10.0
    @Option(help: "Phases to run after the ceiling, comma-separated (2-11).") var only = "2,3,4,5,6,7,8,9,10,11"
    @Option(help: "agentd processes sharing the database; phase 2's clients are split evenly among them (docs/SCALING.md).")
    var processes = 1

    var phaseList: Set<String> { Set(only.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }

    /// The bench's own connections, as pg_stat_activity names them (agentd's are "agentd").
    static let applicationName = "agentd-bench"

    func run() async throws {
        let levels = clients.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 > 0 }
        guard !levels.isEmpty else { throw ValidationError("--clients needs at least one positive number") }
        let url = try await BenchDatabase.fresh("bench_service")
        let db = PostgresPool(
            configuration: .init(conninfo: url, size: 2, connectionSettings: .init(applicationName: Self.applicationName)))
        let report = Report()
        do {
            try await measure(url: url, db: db, levels: levels, report: report)
        } catch {
            await db.shutdown()
            throw error
        }
        await db.shutdown()
        report.print()
    }

    func measure(url: String, db: PostgresPool, levels: [Int], report: Report) async throws {
        let ceiling = try await Ceiling.measure(url: url, db: db, seconds: ceilingSeconds)
        ceiling.report(into: report)

        // Made before agentd starts, which then serves keyed from its first request.
        let authorization = keyed ? "Bearer " + (try await Self.tenantKey(url: url)) : nil
        // The model in a process of its own, so that what it costs is read apart (phase 2's CPU per task).
        let model = try await ModelServerProcess(executable: URL(fileURLWithPath: CommandLine.arguments[0]))
        let executable =
            agentd.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("agentd")
        var extraEnvironment: [String: String] = [:]
        for assignment in agentdEnvironment {
            guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else {
                throw ValidationError("--agentd-environment takes NAME=VALUE, not \(assignment)")
            }
            extraEnvironment[String(assignment[..<equals])] = String(assignment[assignment.index(after: equals)...])
        }
        let environment = extraEnvironment
        let launch = { @Sendable (slots: Int, more: [String: String]) in
            try await AgentdProcess(
                executable: executable,
                environment: [
                    "DATABASE_URL": url, "LLM_BASE_URL": model.baseURL, "LLM_MODEL": "scripted", "WORKER_SLOTS": "\(slots)",
                    "DB_POOL_SIZE": "\(dbPoolSize)", "GROUP_COMMIT_MAX": "\(groupCommitMax)", "LLM_STREAM": "\(llmStream)", "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
                    "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin",
                ].merging(environment) { _, extra in extra }.merging(more) { _, phase in phase })
        }
        let child: AgentdProcess
        do {
            child = try await launch(workerSlots, [:])
        } catch {
            await model.stop()
            throw error
        }
        // Phase 8's second process: the API alone, with no worker slot.
        var front: AgentdProcess?
        if phaseList.contains("8") {
            do {
                front = try await launch(0, [:])
            } catch {
                child.stop()
                await model.stop()
                throw error
            }
        }
        // Phase 2's other processes, full ones like the first (docs/SCALING.md: 1 → 2 processes).
        var peers: [AgentdProcess] = []
        for _ in 1..<max(1, processes) {
            do {
                peers.append(try await launch(workerSlots, [:]))
            } catch {
                for process in [child] + peers + (front.map { [$0] } ?? []) { process.stop() }
                await model.stop()
                throw error
            }
        }
        defer { for peer in peers { peer.stop() } }
        let http = LoadClient.make(connections: max(512, readConnections))
        let client = LoadClient(http: http, base: "http://127.0.0.1:\(child.port)", polling: poll, authorization: authorization)
        let phases = Phases(
            bench: self, client: client, db: db, child: child, front: front, peers: peers, model: model, ceiling: ceiling, report: report)
        do {
            try await phases.run(levels: levels)
            child.stop()
            front?.stop()
            if phaseList.contains("11") {
                try await phases.metricsCost(
                    clients: metricsClients, rounds: metricsRounds, seconds: metricsSeconds, launch: { try await launch(workerSlots, $0) })
            }
        } catch {
            child.stop()
            front?.stop()
            try? await http.shutdown()
            await model.stop()
            throw error
        }
        try await http.shutdown()
        await model.stop()
    }
}

extension ServiceBench {
    /// A key of tenant `default` with no limits, made as the service makes keys (`agentd keys create`).
    static func tenantKey(url: String) async throws -> String {
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1, connectionSettings: .init(role: "agentd_service")))
        do {
            let key = try await KeyStore(pool: pool).create(
                tenantID: "default", userID: nil, isAdmin: false, name: "agentd-bench", requestsPerSecond: nil, maxTasksInFlight: nil
            ).key
            await pool.shutdown()
            return key
        } catch {
            await pool.shutdown()
            throw error
        }
    }
}

/// The scripted model's behaviour: a task whose query starts with "hotel" asks to book one (and
/// needs approval); anything else is answered at once; a tool result gets the final answer.
final class ModelLatency: Sendable {
    private let latency = Mutex(Duration.zero)
    /// Phase 8's streamed answer: pieces and the time between them (none: answered whole).
    private let live = Mutex((count: 0, interval: Duration.zero))

    /// `POST /control` of the model server: `latency_ms`, `live_count`, `live_interval_ms`, each
    /// held to 0 … 1 hour (or pieces), so no value can trap the conversion.
    func apply(_ control: JSONValue) {
        func bounded(_ key: String) -> Double? {
            guard let value = control[key]?.numberValue, value.isFinite else { return nil }
            return min(max(value, 0), 3_600_000)
        }
        if let milliseconds = bounded("latency_ms") { latency.withLock { $0 = .milliseconds(Int64(milliseconds)) } }
        if let count = bounded("live_count") {
            let interval = bounded("live_interval_ms") ?? 0
            live.withLock { $0 = (Int(count), .milliseconds(Int64(interval))) }
        }
    }

    func reply(to request: ScriptedModelServer.Request) async -> ScriptedModelServer.Reply {
        let reply: ScriptedModelServer.Reply
        switch request.messages.last {
        case let last? where last.type == .tool: reply = .text("Booked: \(last.content)")
        case let last? where last.content.hasPrefix("live"):
            let (count, interval) = live.withLock { $0 }
            reply = count > 0 ? .clocked(count: count, interval: interval) : .text("The answer is 42.")
        case let last? where last.content.hasPrefix("tool "):
            // Phase 9: one call of the named tool.
            let name = String(last.content.dropFirst(5))
            let args: [String: JSONValue] =
                switch name {
                case "multiply": ["a": 6, "b": 7]
                case "maps__geocode": ["city": "paris"]
                default: ["restaurant": "Chez Paul", "time": "19:30"]
                }
            reply = .toolCalls([ToolCall(id: "call_tool", name: name, args: args)])
        case let last? where last.content.hasPrefix("hotel"):
            reply = .toolCalls([ToolCall(id: "call_hotel", name: "book_hotel", args: ["hotel_name": "如家酒店"])])
        default: reply = .text("The answer is 42.")
        }
        let delay = latency.withLock { $0 }
        return delay == .zero ? reply : .delayed(delay, reply)
    }
}

/// What the same cluster does with one-row transactions, measured by pgbench before agentd starts.
struct Ceiling: Sendable {
    /// Best one-row insert commits per second over the client counts tried, and that count.
    var commitsPerSecond: Double
    var commitClients: Int
    var selectsPerSecond: Double
    var selectClients: Int
    /// One client: the latency of a single commit and of a single select.
    var commitMilliseconds: Double
    var selectMilliseconds: Double

    static let clientCounts = [1, 8, 64]

    static func measure(url: String, db: PostgresPool, seconds: Int) async throws -> Ceiling {
        try await db.query(
            "CREATE TABLE bench_ceiling (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v integer NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        )
        try await db.query("INSERT INTO bench_ceiling (v) SELECT g FROM generate_series(1, 100000) g")
        try await db.query("VACUUM ANALYZE bench_ceiling")
        let insert = "\\set v random(1, 1000000)\nINSERT INTO bench_ceiling (v) VALUES (:v);\n"
        let select = "\\set id random(1, 100000)\nSELECT v, at FROM bench_ceiling WHERE id = :id;\n"
        var result = Ceiling(
            commitsPerSecond: 0, commitClients: 0, selectsPerSecond: 0, selectClients: 0, commitMilliseconds: 0, selectMilliseconds: 0)
        for clients in clientCounts {
            let inserts = try await Task.detached { try PGBench.run(url: url, script: insert, clients: clients, seconds: seconds) }.value
            let selects = try await Task.detached { try PGBench.run(url: url, script: select, clients: clients, seconds: seconds) }.value
            progress(
                String(
                    format: "ceiling, %d clients: %.0f insert commits/s (%.3f ms), %.0f selects/s (%.3f ms)", clients,
                    inserts.transactionsPerSecond, inserts.averageLatencyMilliseconds, selects.transactionsPerSecond,
                    selects.averageLatencyMilliseconds))
            if clients == 1 {
                result.commitMilliseconds = inserts.averageLatencyMilliseconds
                result.selectMilliseconds = selects.averageLatencyMilliseconds
            }
            if inserts.transactionsPerSecond > result.commitsPerSecond {
                (result.commitsPerSecond, result.commitClients) = (inserts.transactionsPerSecond, clients)
            }
            if selects.transactionsPerSecond > result.selectsPerSecond {
                (result.selectsPerSecond, result.selectClients) = (selects.transactionsPerSecond, clients)
            }
        }
        return result
    }

    func report(into report: Report) {
        report.add(
            "1 ceiling", "one-row insert commits/s (pgbench, best of \(Self.clientCounts.map(String.init).joined(separator: "/")) clients)",
            String(format: "%.0f (%d clients)", commitsPerSecond, commitClients), ratio: "1")
        report.add("1 ceiling", "simple selects/s (by primary key)", String(format: "%.0f (%d clients)", selectsPerSecond, selectClients), ratio: "1")
        report.add("1 ceiling", "one commit, one client", String(format: "%.3f ms", commitMilliseconds), ratio: "1")
        report.add("1 ceiling", "one select, one client", String(format: "%.3f ms", selectMilliseconds), ratio: "1")
    }
}

/// The rows of the printed table.
final class Report: Sendable {
    struct Row: Sendable {
        var phase: String
        var measure: String
        var value: String
        var ratio: String
        var aim: String
    }

    private let rows = Mutex<[Row]>([])

    func add(_ phase: String, _ measure: String, _ value: String, ratio: String = "", aim: String = "") {
        rows.withLock { $0.append(Row(phase: phase, measure: measure, value: value, ratio: ratio, aim: aim)) }
    }

    func print() {
        Swift.print("")
        Swift.print("| phase | measure | value | ratio to the ceiling | aim |")
        Swift.print("|---|---|---|---|---|")
        for row in rows.withLock({ $0 }) {
            Swift.print("| \(row.phase) | \(row.measure) | \(row.value) | \(row.ratio) | \(row.aim) |")
        }
    }
}

/// Progress on standard error, so that standard output is the table alone.
func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Milliseconds, sorted, with the percentiles the table shows.
struct Sample: Sendable {
    let sorted: [Double]
    init(_ values: [Double]) { sorted = values.sorted() }
    var count: Int { sorted.count }
    func p(_ fraction: Double) -> Double { percentile(sorted, fraction) }
    func milliseconds(_ fraction: Double) -> String { String(format: "%.2f ms", p(fraction)) }
}
