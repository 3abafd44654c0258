import AgentdProcess
import Foundation
import Postgres
import Synchronization

/// Phases 2 to 7 against one running agentd. Each phase uses user ids of its own ("p2c64-u3",
/// "p5-u7"...), so the service's own timestamps for it can be read back from `tasks`.
struct Phases: Sendable {
    let bench: ServiceBench
    let client: LoadClient
    let db: PostgresPool
    let child: AgentdProcess
    /// Phase 8's API-only process.
    let front: AgentdProcess?
    /// `--processes`: more full processes, which phase 2's clients share with `child`.
    let peers: [AgentdProcess]
    let model: ModelServerProcess
    let ceiling: Ceiling
    let report: Report

    /// agentd's processes, PostgreSQL's, the model server's and this one's (the load generator).
    func cpuMeter() async throws -> CPUMeter {
        let dataDirectory: String = try await db.query("SELECT /* agentd-bench */ current_setting('data_directory') AS dir").rows[0].decode("dir")
        let agentd = [child.pid] + (front.map { [$0.pid] } ?? []) + peers.map(\.pid)
        let model = self.model.pid
        let bench = ProcessInfo.processInfo.processIdentifier
        return CPUMeter(roles: [
            ("agentd", { agentd.reduce(CPUMeter.Times()) { $0 + CPUMeter.times(of: $1, withReapedChildren: false) } }),
            ("PostgreSQL", { CPUMeter.postgresTimes(dataDirectory: dataDirectory) }),
            ("model", { CPUMeter.times(of: model, withReapedChildren: false) }),
            // This process, with wrk once it has exited (the read phase).
            ("load", { CPUMeter.times(of: bench, withReapedChildren: true) }),
        ])
    }

    func run(levels: [Int]) async throws {
        let phases = bench.phaseList
        try await warmUp()
        // Per-task cost first: its commits per task turn the throughput figures into a share of the commit ceiling.
        let cost = phases.contains("7") ? try await perTaskCost() : nil
        if phases.contains("2") {
            for clients in levels { try await throughput(clients: clients, cost: cost) }
        }
        if phases.contains("3") { try await dispatch() }
        if phases.contains("4") { try await approvals() }
        if phases.contains("5") { try await inFlight() }
        if phases.contains("8"), let front {
            for streams in bench.liveStreams.split(separator: ",").compactMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) where streams > 0 {
                try await live(front: front, streams: streams)
            }
        }
        if phases.contains("9") { try await mcp() }
        if phases.contains("10") { try await inbox() }
        if phases.contains("6") {
            if let readPath = bench.readPath {
                try await reads(paths: [readPath])
            } else {
                try await reads(paths: try await completedStatusPaths())
            }
        }
    }

    /// Runs tasks through a fresh database, then gathers the planner's statistics, as autovacuum
    /// does within a minute in any live deployment. Without them, every phase's status read ran a
    /// plan made for empty tables: the session index instead of the primary key, scanning all of
    /// a session's tasks per read (8.5 ms a batch by pg_stat_statements at 64 clients, when 0.2 ms
    /// is the plan with statistics).
    func warmUp() async throws {
        let clients = 16, rounds = 40
        let client = self.client
        _ = try await eachClient(clients) { index in
            for number in 0..<rounds {
                try await client.invoke(user: "p0-u\(index)", session: "s", task: "t\(number)", query: "warm-up \(number)")
                _ = try await client.wait(user: "p0-u\(index)", session: "s", task: "t\(number)", for: ["completed", "error"])
            }
            return []
        }
        try await db.query("ANALYZE /* agentd-bench */")
        progress("warm-up: \(clients * rounds) tasks, then ANALYZE")
    }

    /// Runs `body` for clients 0..<count at once and returns every time they measured, in ms.
    func eachClient(_ count: Int, _ body: @escaping @Sendable (Int) async throws -> [Double]) async throws -> [Double] {
        try await withThrowingTaskGroup(of: [Double].self) { group in
            for index in 0..<count { group.addTask { try await body(index) } }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }

    // MARK: 2. Throughput

    /// Where the database stood: for round trips (requests into agentd's backends' sockets) and
    /// commits that wrote (WAL commit records) over a phase.
    struct DatabaseReading: Sendable {
        var port: Int
        var dataDirectory: String
        var wal: String
        var segments: [Int32: Int]?
    }

    func databaseReading() async throws -> DatabaseReading {
        let row = try await db.query("""
            SELECT /* agentd-bench */ current_setting('port')::int AS port, current_setting('data_directory') AS dir,
                   pg_current_wal_lsn()::text AS lsn
            """).rows[0]
        let port: Int = try row.decode("port")
        return DatabaseReading(port: port, dataDirectory: try row.decode("dir"), wal: try row.decode("lsn"), segments: segmentsIntoServer(port: port))
    }

    /// Round trips (nil without `ss`) and commits per task since `before`.
    func databaseUse(since before: DatabaseReading, tasks: Int) async throws -> (roundTrips: Double?, commits: Double) {
        let after = try await databaseReading()
        let backends = Set(try await db.query("""
            SELECT /* agentd-bench */ pid FROM pg_stat_activity WHERE application_name = 'agentd'
            """).rows.map { try $0.decode("pid", as: Int32.self) })
        let commits = try await Task.detached { try walCommits(dataDirectory: before.dataDirectory, from: before.wal, to: after.wal) }.value
        var roundTrips: Double?
        if let segmentsBefore = before.segments, let segmentsAfter = after.segments {
            roundTrips = Double(backends.reduce(0) { $0 + (segmentsAfter[$1] ?? 0) - (segmentsBefore[$1] ?? 0) }) / Double(max(1, tasks))
        }
        return (roundTrips, Double(commits) / Double(max(1, tasks)))
    }

    func throughput(clients: Int, cost: Cost?) async throws {
        let prefix = "p2c\(clients)"
        let database = try await databaseReading()
        let meter = try await cpuMeter()
        let cpuBefore = meter.read()
        let clock = ContinuousClock()
        let started = clock.now
        let (latencies, generator) = try await closedLoop(client: client, prefix: prefix, clients: clients, seconds: bench.seconds)
        let elapsed = (clock.now - started).milliseconds / 1000
        let cpu = meter.since(cpuBefore, tasks: latencies.count, seconds: elapsed)
        let observed = Sample(latencies)
        let rate = Double(observed.count) / elapsed
        // Read after the phase: tasks still finishing add a little to both.
        let use = try await databaseUse(since: database, tasks: latencies.count)
        let service = try await serviceTimes(prefix: prefix)
        let model = try await modelCallTimes(prefix: prefix)
        progress(String(format: "throughput, %d clients: %.0f tasks/s, p50 %.2f ms, p99 %.2f ms", clients, rate, observed.p(0.5), observed.p(0.99)))
        var share = ""
        if let cost { share = String(format: "; %.0f%% of the commit ceiling in use", 100 * rate * cost.commits / ceiling.commitsPerSecond) }
        report.add(
            "2 throughput", "\(clients) clients: tasks/s, invoke → completed (\(observed.count) tasks, clients \(client.polling ? "polling" : "waiting with ?wait="), \(client.authorization == nil ? "open" : "keyed"), load by \(generator))",
            String(format: "%.0f", rate),
            ratio: String(format: "%.3f of commits/s%@", rate / ceiling.commitsPerSecond, share), aim: "≥ 1,000")
        report.add(
            "2 throughput", "\(clients) clients: client p50 / p95 / p99",
            "\(observed.milliseconds(0.5)) / \(observed.milliseconds(0.95)) / \(observed.milliseconds(0.99))")
        report.add(
            "2 throughput", "\(clients) clients: service p50 / p99 (invoke commit → completed), dispatch p50 / p99",
            "\(service.total.milliseconds(0.5)) / \(service.total.milliseconds(0.99)), \(service.dispatch.milliseconds(0.5)) / \(service.dispatch.milliseconds(0.99))"
        )
        report.add("2 throughput", "\(clients) clients: model call as agentd timed it, p50 / p99", "\(model.milliseconds(0.5)) / \(model.milliseconds(0.99))")
        progress("throughput, \(clients) clients: CPU per task, µs user + system: \(cpu)")
        report.add("2 throughput", "\(clients) clients: CPU per task, µs user + system, by process", cpu)
        let roundTrips = use.roundTrips.map { String(format: "%.2f", $0) } ?? "n/a (no ss)"
        progress(String(format: "throughput, %d clients: per task %@ round trips, %.2f commits", clients, roundTrips, use.commits))
        report.add("2 throughput", "\(clients) clients: database round trips; commits that wrote, per task", String(format: "%@; %.2f", roundTrips, use.commits))
    }

    /// `clients` clients for `seconds`, each one task at a time: invoke, then wait until it ends.
    /// The time of each task in ms, and what generated the load.
    func closedLoop(client: LoadClient, prefix: String, clients: Int, seconds: Double) async throws -> (latencies: [Double], generator: String) {
        if let wrk = ProcessInfo.processInfo.environment["WRK"], !wrk.isEmpty, !client.polling {
            // wrk's connections as the clients: the Swift client's own CPU (0.3 ms a task) was a
            // seventh of what 1,000 tasks/s leaves per task, spent on nothing agentd does.
            let (authorization, seconds) = (client.authorization, max(1, Int(seconds.rounded())))
            // One wrk per process, the clients split evenly, all at once.
            let bases = [client.base] + peers.map { "http://127.0.0.1:\($0.port)" }
            let results = try await withThrowingTaskGroup(of: Wrk.Tasks.self) { group in
                for (index, base) in bases.enumerated() {
                    let share = clients / bases.count + (index < clients % bases.count ? 1 : 0)
                    guard share > 0 else { continue }
                    let userPrefix = bases.count == 1 ? prefix : "\(prefix)-p\(index)"
                    group.addTask {
                        try await Task.detached {
                            try Wrk.tasks(wrk, baseURL: base, userPrefix: userPrefix, authorization: authorization, clients: share, seconds: seconds)
                        }.value
                    }
                }
                var all: [Wrk.Tasks] = []
                for try await result in group { all.append(result) }
                return all
            }
            let failures = results.reduce(0) { $0 + $1.failures }
            guard failures == 0 else {
                throw LoadClient.Failure(description: "wrk: \(failures) requests or tasks failed (\(results.map(\.failureReport).joined()))")
            }
            return (results.flatMap(\.latencies), bases.count == 1 ? "wrk" : "\(bases.count) wrk, one per process")
        }
        let clock = ContinuousClock()
        let end = clock.now + .milliseconds(Int64(seconds * 1000))
        let latencies = try await eachClient(clients) { index in
            var latencies: [Double] = []
            var number = 0
            while clock.now < end {
                let (user, task) = ("\(prefix)-u\(index)", "t\(number)")
                number += 1
                let start = clock.now
                try await client.invoke(user: user, session: "s", task: task, query: "question \(number)")
                let state = try await client.wait(user: user, session: "s", task: task, for: ["completed", "error"])
                guard state == "completed" else { throw LoadClient.Failure(description: "\(user)/\(task) ended in \(state)") }
                latencies.append((clock.now - start).milliseconds)
            }
            return latencies
        }
        return (latencies, "this process")
    }

    // MARK: 3. Dispatch latency

    /// An open-loop stream at a steady rate, one session per task, nobody polling: the time from
    /// the invoke's commit to a worker's claim, as the service records it.
    func dispatch() async throws {
        let total = max(1, Int(Double(bench.dispatchRate) * bench.dispatchSeconds))
        let interval = Duration.seconds(1) / bench.dispatchRate
        let clock = ContinuousClock()
        let start = clock.now
        let client = self.client
        try await withThrowingTaskGroup(of: Void.self) { group in
            for number in 0..<total {
                try await clock.sleep(until: start + interval * number)
                group.addTask { try await client.invoke(user: "p3-u\(number % 50)", session: "s\(number)", task: "t", query: "question") }
            }
            try await group.waitForAll()
        }
        try await waitUntilDone(prefix: "p3-", count: total)
        let dispatch = try await serviceTimes(prefix: "p3-").dispatch
        progress("dispatch at \(bench.dispatchRate)/s: p50 \(dispatch.milliseconds(0.5)), p99 \(dispatch.milliseconds(0.99))")
        for (label, fraction, aim) in [("p50", 0.5, "< 2 ms"), ("p99", 0.99, "< 10 ms")] {
            report.add(
                "3 dispatch", "\(label), invoke commit → claimed, \(total) tasks at \(bench.dispatchRate)/s", dispatch.milliseconds(fraction),
                ratio: String(format: "%.1f× one commit", dispatch.p(fraction) / ceiling.commitMilliseconds), aim: aim)
        }
        report.add("3 dispatch", "max", dispatch.milliseconds(1))
    }

    // MARK: 4. Approval round trip

    func approvals() async throws {
        let clients = max(1, min(bench.approvalClients, bench.approvals))
        let total = bench.approvals
        let client = self.client
        let clock = ContinuousClock()
        let latencies = try await eachClient(clients) { index in
            var latencies: [Double] = []
            let user = "p4-u\(index)"
            for number in stride(from: index, to: total, by: clients) {
                let task = "t\(number)"
                try await client.invoke(user: user, session: "s", task: task, query: "hotel for night \(number)")
                let asked = try await client.wait(user: user, session: "s", task: task, for: ["interrupted", "completed", "error"])
                guard asked == "interrupted" else { throw LoadClient.Failure(description: "\(user)/\(task) was \(asked), not interrupted") }
                let start = clock.now
                try await client.resume(user: user, session: "s", task: task, decision: "accept")
                let done = try await client.wait(user: user, session: "s", task: task, for: ["completed", "error"])
                guard done == "completed" else { throw LoadClient.Failure(description: "\(user)/\(task) ended in \(done)") }
                latencies.append((clock.now - start).milliseconds)
            }
            return latencies
        }
        let observed = Sample(latencies)
        let service = try await serviceTimes(prefix: "p4-").sinceQueued
        progress("approvals: resume → completed p50 \(observed.milliseconds(0.5)), p99 \(observed.milliseconds(0.99))")
        report.add(
            "4 approval", "resume → completed, client p50 / p99 (\(observed.count) round trips, \(clients) clients)",
            "\(observed.milliseconds(0.5)) / \(observed.milliseconds(0.99))",
            ratio: String(format: "%.1f× one commit at p50", observed.p(0.5) / ceiling.commitMilliseconds))
        report.add(
            "4 approval", "resume commit → completed, service p50 / p99", "\(service.milliseconds(0.5)) / \(service.milliseconds(0.99))",
            ratio: String(format: "%.1f× one commit at p50", service.p(0.5) / ceiling.commitMilliseconds))
    }

    // MARK: 5. In flight

    func inFlight() async throws {
        let total = bench.inflight
        let model = Duration.milliseconds(Int64(bench.inflightModelSeconds * 1000))
        try await self.model.set(latency: model)
        let peakReset = child.resetPeakMemory()
        let idle = child.memory()
        // Sampled as well, where the peak cannot be reset.
        let sampled = Mutex(0.0)
        let child = self.child
        let sampler = Task {
            while !Task.isCancelled {
                if let now = child.memory()?.resident { sampled.withLock { $0 = max($0, now) } }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        let startedAt = Date()
        let client = self.client
        try await withThrowingTaskGroup(of: Void.self) { group in
            for number in 0..<total {
                group.addTask { try await client.invoke(user: "p5-u\(number % 100)", session: "s\(number)", task: "t", query: "question") }
            }
            try await group.waitForAll()
        }
        let submitted = Date().timeIntervalSince(startedAt)
        try await waitUntilDone(prefix: "p5-", count: total, timeout: .seconds(600))
        try await self.model.set(latency: .zero)
        sampler.cancel()
        let memory = child.memory()
        let peakMemory = peakReset ? (memory?.peak ?? 0) : max(sampled.withLock { $0 }, memory?.resident ?? 0)
        let rows = try await db.query("""
            SELECT /* agentd-bench */ extract(epoch FROM claimed_at)::float8 AS claimed, extract(epoch FROM finished_at)::float8 AS finished
            FROM tasks WHERE user_id LIKE 'p5-%'
            """).rows
        var events: [(at: Double, change: Int)] = []
        var (lastFinish, firstFinish, lastClaim) = (0.0, Double.infinity, 0.0)
        for row in rows {
            let (claimed, finished): (Double, Double) = (try row.decode("claimed"), try row.decode("finished"))
            events.append((claimed, 1))
            events.append((finished, -1))
            (lastFinish, firstFinish, lastClaim) = (max(lastFinish, finished), min(firstFinish, finished), max(lastClaim, claimed))
        }
        // Ends before starts at the same instant, so that back-to-back tasks do not count as overlapping.
        events.sort { $0.at != $1.at ? $0.at < $1.at : $0.change < $1.change }
        var running = 0
        var peak = 0
        for event in events {
            running += event.change
            peak = max(peak, running)
        }
        let allDone = lastFinish - startedAt.timeIntervalSince1970
        // Every task running at once needs the last claim before the first task ends.
        (lastClaim, firstFinish) = (lastClaim - startedAt.timeIntervalSince1970, firstFinish - startedAt.timeIntervalSince1970)
        let dispatch = try await serviceTimes(prefix: "p5-").dispatch
        let modelCalls = try await modelCallTimes(prefix: "p5-")
        progress(String(format: "in flight: %d tasks done in %.2f s, peak %d running, peak %.0f MiB", total, allDone, peak, peakMemory))
        progress(String(
            format: "in flight: last claimed at %.2f s, first done at %.2f s; dispatch p50 %@ p99 %@; model call p50 %@ p99 %@", lastClaim, firstFinish,
            dispatch.milliseconds(0.5), dispatch.milliseconds(0.99), modelCalls.milliseconds(0.5), modelCalls.milliseconds(0.99)))
        report.add(
            "5 in flight", "\(total) tasks at once, model \(bench.inflightModelSeconds) s: submit → all completed",
            String(format: "%.2f s (submitted in %.2f s)", allDone, submitted),
            ratio: String(format: "%.2f× the model latency", allDone / bench.inflightModelSeconds), aim: "< 5 s")
        report.add("5 in flight", "peak tasks running at once", "\(peak) of \(total)", aim: "all")
        report.add(
            "5 in flight", "last task claimed; first task done (s after the first invoke); dispatch p50 / p99; model call p50 / p99",
            String(format: "%.2f s; %.2f s; ", lastClaim, firstFinish)
                + "\(dispatch.milliseconds(0.5)) / \(dispatch.milliseconds(0.99)); \(modelCalls.milliseconds(0.5)) / \(modelCalls.milliseconds(0.99))")
        report.add(
            "5 in flight", "service peak resident memory", String(format: "%.0f MiB (%.0f MiB idle before)", peakMemory, idle?.resident ?? 0),
            aim: "< 300 MB")
    }

    // MARK: 6. Reads

    /// Status paths of the last 1,000 tasks phase 2 completed (clients read what they just ran), or
    /// of one made for the purpose.
    func completedStatusPaths() async throws -> [String] {
        let query: PostgresQuery = """
            SELECT /* agentd-bench */ user_id, session_id, task_id FROM tasks
            WHERE state = 'completed' AND (user_id LIKE 'p2c%' OR user_id LIKE 'p6-%')
            ORDER BY seq DESC
            LIMIT 1000
            """
        var rows = try await db.query(query).rows
        if rows.isEmpty {
            try await client.invoke(user: "p6-u0", session: "s", task: "t0", query: "question")
            try await waitUntilDone(prefix: "p6-", count: 1)
            rows = try await db.query(query).rows
        }
        return try rows.map { "/agent/status/\(try $0.decode("user_id", as: String.self))/\(try $0.decode("session_id", as: String.self))/\(try $0.decode("task_id", as: String.self))" }
    }

    /// Status reads of `paths` in turn: by wrk when `make bench` found it (WRK), else by this process.
    func reads(paths: [String]) async throws {
        let connections = bench.readConnections
        let meter = try await cpuMeter()
        let cpuBefore = meter.read()
        let clock = ContinuousClock()
        let started = clock.now
        let count: Int
        let (p50, p99): (String, String)
        let generator: String
        if let wrk = ProcessInfo.processInfo.environment["WRK"], !wrk.isEmpty {
            let (baseURL, authorization) = (client.base, client.authorization)
            let seconds = max(1, Int(bench.readSeconds.rounded()))
            let result = try await Task.detached {
                try Wrk.run(wrk, baseURL: baseURL, paths: paths, authorization: authorization, connections: connections, seconds: seconds)
            }.value
            guard result.failures == 0 else {
                throw LoadClient.Failure(description: "wrk: \(result.failures) of \(result.requests) reads failed (\(result.failureReport))")
            }
            count = result.requests
            (p50, p99) = (String(format: "%.2f ms", result.p50Milliseconds), String(format: "%.2f ms", result.p99Milliseconds))
            generator = "wrk"
        } else {
            let end = started + .seconds(bench.readSeconds)
            let client = self.client
            let latencies = try await eachClient(connections) { index in
                var latencies: [Double] = []
                latencies.reserveCapacity(100_000)
                var next = index
                while clock.now < end {
                    let path = paths[next % paths.count]
                    next += 1
                    let start = clock.now
                    let (status, _) = try await client.send(.GET, path)
                    guard status == 200 else { throw LoadClient.Failure(description: "GET \(path) answered \(status)") }
                    latencies.append((clock.now - start).milliseconds)
                }
                return latencies
            }
            let sample = Sample(latencies)
            count = sample.count
            (p50, p99) = (sample.milliseconds(0.5), sample.milliseconds(0.99))
            generator = "this process"
        }
        let elapsed = (clock.now - started).milliseconds / 1000
        let rate = Double(count) / elapsed
        let what = paths.count == 1 && !paths[0].hasPrefix("/agent/status") ? "GET \(paths[0])" : "GET /agent/status of \(paths.count) completed tasks"
        progress("reads: \(String(format: "%.0f", rate)) requests/s, p50 \(p50), p99 \(p99)")
        report.add(
            "6 reads", "\(what) over \(connections) keep-alive connections (\(client.authorization == nil ? "open" : "keyed"), by \(generator)), requests/s",
            String(format: "%.0f", rate), ratio: String(format: "%.2f of selects/s", rate / ceiling.selectsPerSecond), aim: "≥ 15,000")
        report.add("6 reads", "p50 / p99", "\(p50) / \(p99)", aim: "p99 < 10 ms")
        let cpu = meter.since(cpuBefore, tasks: count, seconds: elapsed)
        progress("reads: CPU per read, µs user + system: \(cpu)")
        report.add("6 reads", "CPU per read, µs user + system, by process", cpu)
    }

    // MARK: 7. Per-task cost

    struct Cost: Sendable {
        var roundTrips: Double
        var commits: Double
        var statements: Double
        var walBytes: Double
    }

    /// Tasks submitted without polling, with pg_stat_statements read before and after: statements
    /// the service sent (the bench's own carry an "agentd-bench" comment and are left out).
    func perTaskCost() async throws -> Cost? {
        let total = bench.costTasks
        _ = try? await db.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        guard (try? await db.query("SELECT /* agentd-bench */ count(*) FROM pg_stat_statements")) != nil else {
            progress("per-task cost: pg_stat_statements is not loaded (shared_preload_libraries); skipped")
            report.add("7 per task", "round trips and commits", "n/a: pg_stat_statements not loaded")
            return nil
        }
        try await db.query("SELECT /* agentd-bench */ pg_stat_statements_reset()")
        let dataDirectory: String = try await db.query("SELECT /* agentd-bench */ current_setting('data_directory') AS dir").rows[0].decode("dir")
        let walBefore: String = try await db.query("SELECT /* agentd-bench */ pg_current_wal_lsn()::text AS lsn").rows[0].decode("lsn")
        let clients = 64
        let client = self.client
        let port: Int = try await db.query("SELECT /* agentd-bench */ current_setting('port')::int AS port").rows[0].decode("port")
        let segmentsBefore = segmentsIntoServer(port: port)
        let meter = try await cpuMeter()
        let cpuBefore = meter.read()
        let clock = ContinuousClock()
        let started = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    // A session per task, as for many users' first questions; a deep queue in one session
                    // would measure the claimer's wait for the session, not the task's cost.
                    for number in stride(from: index, to: total, by: clients) {
                        try await client.invoke(user: "p7-u\(index)", session: "s\(number)", task: "t", query: "question \(number)")
                    }
                }
            }
            try await group.waitForAll()
        }
        try await waitUntilDone(prefix: "p7-", count: total)
        let cpu = meter.since(cpuBefore, tasks: total, seconds: (clock.now - started).milliseconds / 1000)
        let wal = try await db.query("""
            SELECT /* agentd-bench */ pg_current_wal_lsn()::text AS lsn, (pg_current_wal_lsn() - \(walBefore)::pg_lsn)::float8 AS bytes
            """).rows[0]
        let walAfter: String = try wal.decode("lsn")
        let segmentsAfter = segmentsIntoServer(port: port)
        let agentdBackends = Set(try await db.query("""
            SELECT /* agentd-bench */ pid FROM pg_stat_activity WHERE application_name = 'agentd'
            """).rows.map { try $0.decode("pid", as: Int32.self) })
        let walBytes: Double = try wal.decode("bytes")
        let commits = try await Task.detached { try walCommits(dataDirectory: dataDirectory, from: walBefore, to: walAfter) }.value
        let statements = try await db.query("""
            SELECT /* agentd-bench */ regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::float8 AS calls, mean_exec_time AS mean,
                   total_exec_time AS executing, total_plan_time AS planning
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%agentd-bench%'
            ORDER BY calls DESC
            """).rows.map {
                (
                    query: try $0.decode("query", as: String.self), calls: try $0.decode("calls", as: Double.self),
                    mean: try $0.decode("mean", as: Double.self), executing: try $0.decode("executing", as: Double.self),
                    planning: try $0.decode("planning", as: Double.self)
                )
            }
        let perTask = Double(total)
        let all = statements.reduce(0) { $0 + $1.calls }
        // Counted at the server's sockets: a pipeline of statements (a group commit) is one round trip.
        var requests: Double?
        if let segmentsBefore, let segmentsAfter {
            requests = Double(agentdBackends.reduce(0) { $0 + (segmentsAfter[$1] ?? 0) - (segmentsBefore[$1] ?? 0) })
        }
        let cost = Cost(
            roundTrips: (requests ?? .nan) / perTask, commits: Double(commits) / perTask, statements: all / perTask, walBytes: walBytes / perTask)
        progress(
            String(
                format: "per task: %.2f round trips, %.2f statements, %.2f commits, %.0f WAL bytes", cost.roundTrips, cost.statements, cost.commits,
                cost.walBytes))
        for statement in statements.prefix(12) {
            progress(String(format: "  %6.2f/task %7.3f ms  %@", statement.calls / perTask, statement.mean, String(statement.query.prefix(100))))
        }
        report.add(
            "7 per task", "database round trips per task (\(total) tasks; requests into agentd's backends' sockets, ss)", String(format: "%.2f", cost.roundTrips),
            ratio: String(format: "bounds tasks/s at %.0f by selects/s", ceiling.selectsPerSecond / cost.roundTrips))
        report.add(
            "7 per task", "commits that wrote, per task (WAL commit records)", String(format: "%.2f", cost.commits),
            ratio: String(format: "bounds tasks/s at %.0f by commits/s", ceiling.commitsPerSecond / cost.commits))
        report.add("7 per task", "statements per task; WAL bytes per task", String(format: "%.2f; %.0f", cost.statements, cost.walBytes))
        progress("per task: CPU, µs user + system: \(cpu)")
        report.add("7 per task", "CPU per task, µs user + system, by process (invokes without waiting, then until done)", cpu)
        // Planning is only counted with pg_stat_statements.track_planning on (make bench sets it).
        let planning = statements.reduce(0) { $0 + $1.planning } / perTask
        let executing = statements.reduce(0) { $0 + $1.executing } / perTask
        report.add(
            "7 per task", "server time per task: planning / executing (pg_stat_statements)",
            String(format: "%.2f ms / %.2f ms", planning, executing))
        return cost
    }

    // MARK: The service's own timestamps

    struct ServiceTimes: Sendable {
        /// Invoke commit → claimed (the last claim, for a task that was resumed).
        var dispatch: Sample
        /// Invoke commit → completed.
        var total: Sample
        /// Last time queued (the resume, for a resumed task) → completed.
        var sinceQueued: Sample
    }

    /// Model calls as agentd timed them (its HTTP client, the scripted server, both ways).
    func modelCallTimes(prefix: String) async throws -> Sample {
        Sample(
            try await db.query("""
                SELECT /* agentd-bench */ latency_ms FROM llm_calls WHERE user_id LIKE \(prefix + "%")
                """).rows.map { try $0.decode("latency_ms") })
    }

    func serviceTimes(prefix: String) async throws -> ServiceTimes {
        // Dispatch starts at the invoke's commit: its query message (position 0, never updated)
        // carries the invoke's transaction, and with track_commit_timestamp (make bench sets it)
        // that transaction's commit time. `queued_at` is read while the invoke's statement runs,
        // which is earlier than its commit when the invoke shares a group commit.
        let commitTimes = try await db.query("SELECT /* agentd-bench */ current_setting('track_commit_timestamp') = 'on' AS on")
            .rows[0].decode("on", as: Bool.self)
        let start: PostgresQuery = commitTimes ? "pg_xact_commit_timestamp(m.xmin)" : "t.queued_at"
        let rows = try await db.query("""
            SELECT /* agentd-bench */ extract(epoch FROM t.claimed_at - \(fragment: start))::float8 * 1000 AS dispatch,
                   extract(epoch FROM t.finished_at - t.created_at)::float8 * 1000 AS total,
                   extract(epoch FROM t.finished_at - t.queued_at)::float8 * 1000 AS since_queued
            FROM tasks t
            JOIN messages m ON m.tenant_id = t.tenant_id AND m.user_id = t.user_id AND m.session_id = t.session_id
                           AND m.task_id = t.task_id AND m.position = 0
            WHERE t.user_id LIKE \(prefix + "%") AND t.state = 'completed'
            """).rows
        return ServiceTimes(
            dispatch: Sample(try rows.map { try $0.decode("dispatch") }), total: Sample(try rows.map { try $0.decode("total") }),
            sinceQueued: Sample(try rows.map { try $0.decode("since_queued") }))
    }

    /// Waits until `count` tasks of the phase have finished; any that ended in error fail the bench.
    func waitUntilDone(prefix: String, count: Int, timeout: Duration = .seconds(300)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            let row = try await db.query("""
                SELECT /* agentd-bench */ count(*) FILTER (WHERE state = 'completed') AS completed, count(*) FILTER (WHERE state = 'error') AS failed
                FROM tasks WHERE user_id LIKE \(prefix + "%")
                """).rows[0]
            let (completed, failed): (Int, Int) = (try row.decode("completed"), try row.decode("failed"))
            if failed > 0 { throw LoadClient.Failure(description: "\(failed) tasks of \(prefix) ended in error") }
            if completed >= count { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw LoadClient.Failure(description: "tasks of \(prefix) not all completed after \(timeout)")
    }
}
