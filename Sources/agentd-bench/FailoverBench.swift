import AgentKit
import AgentdProcess
import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Postgres
import ScriptedModel
import Store
import Synchronization

/// `make failover`: two agentd processes on a pg_auto_failover formation (scripts/failover.sh)
/// under load; the primary's machine is lost mid-run (its postmaster and keeper SIGKILLed), the
/// standby is promoted, and every acknowledged task, approval and memory must be there and done.
/// Then the lost node comes back as the standby and the same happens the other way.
struct FailoverBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Loss of the primary's machine under load, each way: accepted, completed, lost, duplicated, seconds without a primary."
    )

    @Option(help: "The formation's folder (scripts/failover.sh create DIR).") var formation: String
    @Option(help: "scripts/failover.sh.") var script = "scripts/failover.sh"
    @Option(help: "The agentd binary (default: the one beside this program).") var agentd: String?
    @Option(help: "Tasks per round: a third plain, a third with a tool, a third waiting for approval.") var tasks = 300
    @Option(help: "Tasks submitted per second.") var rate = 30.0
    @Option(help: "Rounds, each losing the primary of the moment.") var rounds = 2
    @Option(help: "LEASE_SECONDS of the agentd processes.") var lease = 3
    @Option(help: "Seconds a round may take to complete every accepted task after the loss.") var patience = 180.0

    /// The queries' prefixes that pick ScriptedModelServer.mixedWorkload's answers.
    static let kinds = ["plain", "multiply", "hotel"]

    struct Round {
        var number: Int
        var lost: String
        var accepted = 0
        var completed = 0
        var duplicated = 0
        var memoriesAcknowledged = 0
        var memoriesMissing = 0
        var resumes = 0
        var rerun = 0
        var unavailable = 0
        var otherAnswers: [Int: Int] = [:]
        var conflictsOnRetry = 0
        var slowestAnswer = Duration.zero
        var withoutPrimary: Duration?
        var firstAcknowledgement: Duration?
        var allDone: Duration?
        var rejoined: Duration?
        /// The lost node refused connections from the kill until it was started again: a round
        /// whose kill did not take proves nothing.
        var stayedDown = false
        /// What the accepted tasks that did not complete look like (missing, or their row).
        var unfinished: [String] = []

        var clean: Bool {
            stayedDown && accepted == tasks && completed == accepted && duplicated == 0 && memoriesMissing == 0 && otherAnswers.isEmpty && allDone != nil
        }
        var tasks = 0
    }

    func run() async throws {
        var logger = Logger(label: "failover")
        logger.logLevel = .warning
        let url = try await shell(["url", formation]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard url.hasPrefix("postgres://") else { throw ValidationError("\(script) url \(formation) printed \(url)") }
        guard let sql = Migrator.locateDirectory() else { throw ValidationError("cannot find sql/; set AGENTD_SQL_DIR") }
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 2, connectionSettings: .init(applicationName: "agentd-bench")))
        try await Migrator(directory: sql).migrate(pool, logger: logger)
        let model = try await ScriptedModelServer.start(handler: ScriptedModelServer.mixedWorkload)
        let executable = agentd.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("agentd")
        let environment = [
            "DATABASE_URL": url, "LLM_BASE_URL": model.baseURL, "LLM_MODEL": "scripted", "LEASE_SECONDS": "\(lease)",
            "WORKER_SLOTS": "16", "DB_POOL_SIZE": "4", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin",
        ]
        let first = try await AgentdProcess(executable: executable, environment: environment)
        let second = try await AgentdProcess(executable: executable, environment: environment)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        print("formation: \(url)")
        for line in first.log.split(separator: "\n") where line.contains("database:") { print("agentd: \(line)") }
        var results: [Round] = []
        do {
            for number in 1...max(1, rounds) {
                results.append(try await round(number, url: url, pool: pool, ports: [first.port, second.port], http: http))
            }
        } catch {
            first.stop()
            second.stop()
            try? await http.shutdown()
            await model.shutdown()
            await pool.shutdown()
            throw error
        }
        first.stop()
        second.stop()
        try await http.shutdown()
        await model.shutdown()
        await pool.shutdown()
        Self.table(results)
        guard results.allSatisfy(\.clean) else { throw ExitCode(1) }
    }

    static func table(_ rounds: [Round]) {
        func seconds(_ duration: Duration?) -> String { duration.map { String(format: "%.1f s", Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18) } ?? "-" }
        Swift.print("")
        Swift.print("| round | primary lost | accepted | completed | lost | duplicated tool runs | memories acknowledged / missing | approvals answered | tasks re-run from their last step | seconds without a primary | first 200 after the loss | every accepted task completed | 503s served | other answers | slowest answer | old primary back as standby |")
        Swift.print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rounds where !r.stayedDown {
            Swift.print("round \(r.number): \(r.lost) answered after it was killed: the loss did not take, the round proves nothing")
        }
        for r in rounds where !r.unfinished.isEmpty {
            Swift.print("round \(r.number), accepted and not completed: \(r.unfinished.joined(separator: "; "))")
        }
        for r in rounds {
            var other = r.otherAnswers.isEmpty ? "0" : r.otherAnswers.sorted { $0.key < $1.key }.map { "\($0.value)×\($0.key)" }.joined(separator: " ")
            if r.conflictsOnRetry > 0 { other += " (and \(r.conflictsOnRetry)×409 to a retry of an applied resume)" }
            Swift.print(
                "| \(r.number) | \(r.lost) | \(r.accepted) of \(r.tasks) | \(r.completed) | \(r.accepted - r.completed) | \(r.duplicated) | "
                    + "\(r.memoriesAcknowledged) / \(r.memoriesMissing) | \(r.resumes) | \(r.rerun) | \(seconds(r.withoutPrimary)) | \(seconds(r.firstAcknowledgement)) | "
                    + "\(seconds(r.allDone)) | \(r.unavailable) | \(other) | \(seconds(r.slowestAnswer)) | \(seconds(r.rejoined)) |")
        }
    }

    /// What the clients saw, counted from many tasks at once.
    final class Tally: Sendable {
        struct State {
            var accepted = Set<Int>()
            var memories: [String: String] = [:]
            var resumed = Set<String>()
            var unavailable = 0
            var other: [Int: Int] = [:]
            var conflictsOnRetry = 0
            var slowest = Duration.zero
            var firstAfterLoss: ContinuousClock.Instant?
        }
        let state = Mutex(State())
        let lostAt = Mutex<ContinuousClock.Instant?>(nil)
        let downAfterKill = Mutex(false)

        /// `settles`: the answer is what the client waited for (a 409 to the retry of a resume whose
        /// first attempt was applied, its reply lost with the primary, is no failure).
        func answered(_ status: Int?, settles: Bool, after: Duration, at instant: ContinuousClock.Instant) {
            state.withLock { state in
                state.slowest = max(state.slowest, after)
                if settles, let status, status != 200 {
                    state.conflictsOnRetry += 1
                    return
                }
                switch status {
                case 200?:
                    if state.firstAfterLoss == nil, let lost = lostAt.withLock({ $0 }), instant > lost { state.firstAfterLoss = instant }
                case 503?: state.unavailable += 1
                case let status?: state.other[status, default: 0] += 1
                case nil: break
                }
            }
        }
    }

    /// POSTs `body` until a 200 (or `done` says the answer settles it), as a client that honours
    /// 503 + Retry-After does; every answer is counted.
    func post(
        _ http: HTTPClient, ports: [Int], start: Int, _ path: String, _ body: JSONValue, tally: Tally, deadline: ContinuousClock.Instant,
        done: (Int, ByteBuffer) -> Bool = { status, _ in status == 200 }
    ) async -> ByteBuffer? {
        var attempt = start
        while ContinuousClock.now < deadline {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(ports[attempt % ports.count])\(path)")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body.jsonText))
            let sent = ContinuousClock.now
            var status: Int?
            var bytes = ByteBuffer()
            do {
                let response = try await http.execute(request, timeout: .seconds(15))
                status = Int(response.status.code)
                bytes = try await response.body.collect(upTo: 1 << 20)
            } catch {
                status = nil
            }
            let now = ContinuousClock.now
            let settles = status.map { done($0, bytes) } ?? false
            tally.answered(status, settles: settles, after: now - sent, at: now)
            if settles { return bytes }
            if let status, status != 503 { return nil }
            attempt += 1
            try? await Task.sleep(for: .seconds(1))
        }
        return nil
    }

    func round(_ number: Int, url: String, pool: PostgresPool, ports: [Int], http: HTTPClient) async throws -> Round {
        let victim = try await shell(["primary", formation]).trimmingCharacters(in: .whitespacesAndNewlines)
        // The victim's own address, to prove it stays lost (state: name port reported assigned).
        let states = try await shell(["state", formation])
        var victimPort: String?
        for line in states.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            if fields.count > 1, fields[0] == victim { victimPort = fields[1] }
        }
        guard let victimPort else { throw ValidationError("no port for \(victim) in \(script) state") }
        let victimURL = "postgres://postgres@127.0.0.1:\(victimPort)/agentd?connect_timeout=1&target_session_attrs=any"
        // Up as a standby counts too: agentd refuses it, but it is not lost.
        @Sendable func victimAnswers() async -> Bool {
            await blocking {
                do {
                    try PostgresConnection.connect(victimURL).close()
                    return true
                } catch let error as PostgresError {
                    return error.sqlState == PostgresError.SQLState.readOnlySQLTransaction
                } catch {
                    return false
                }
            }
        }
        var result = Round(number: number, lost: victim)
        result.tasks = tasks
        let tally = Tally()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(Double(tasks) / rate + patience)
        let prefix = "r\(number)-"
        func ids(_ i: Int) -> (user: String, session: String, task: String) { ("u\(i % 7)", "\(prefix)s\(i % 40)", "\(prefix)t\(i)") }

        // The approver: answers each task waiting for approval once acknowledged, through either process.
        let approving = Task {
            var turn = 0
            while !Task.isCancelled {
                let waiting = (try? await pool.query("SELECT user_id, session_id, task_id FROM tasks WHERE state = 'interrupted' AND session_id LIKE \(prefix + "%")").rows) ?? []
                for row in waiting {
                    guard let user = try? row.decode("user_id", as: String.self), let session = try? row.decode("session_id", as: String.self),
                        let task = try? row.decode("task_id", as: String.self), !tally.state.withLock({ $0.resumed.contains(task) })
                    else { continue }
                    turn += 1
                    let body: JSONValue = ["user_id": .string(user), "session_id": .string(session), "task_id": .string(task), "response_type": "accept"]
                    // A 409 after a retry: the first attempt was applied, its answer lost with the primary.
                    if await post(http, ports: ports, start: turn, "/agent/resume", body, tally: tally, deadline: deadline, done: { status, _ in status == 200 || status == 409 }) != nil {
                        tally.state.withLock { _ = $0.resumed.insert(task) }
                    }
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }

        // The loss, once a third of the tasks are acknowledged; and the probe that times the
        // switch as a new client sees it: a read-write session on the cluster URL.
        let losing = Task { () -> Duration? in
            while tally.state.withLock({ $0.accepted.count }) < tasks / 3, clock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            _ = try? await shell(["kill", formation, victim])
            let lostAt = clock.now
            tally.downAfterKill.withLock { $0 = true }
            if await victimAnswers() { tally.downAfterKill.withLock { $0 = false } }
            tally.lostAt.withLock { $0 = lostAt }
            while clock.now < deadline {
                let probe = url + "&connect_timeout=1&application_name=agentd-failover-probe"
                let writable = await blocking { () -> Bool in
                    guard let connection = try? PostgresConnection.connect(probe) else { return false }
                    defer { connection.close() }
                    return (try? connection.query("SELECT 1")) != nil
                }
                if writable { return clock.now - lostAt }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return nil
        }

        // The clients: tasks at `rate`, alternating between the processes; every fifth also a memory.
        await withTaskGroup(of: Void.self) { group in
            let started = clock.now
            for i in 0..<tasks {
                let due = started + .seconds(Double(i) / rate)
                if due > clock.now { try? await Task.sleep(until: due, clock: clock) }
                group.addTask {
                    let (user, session, task) = ids(i)
                    let body: JSONValue = ["user_id": .string(user), "session_id": .string(session), "task_id": .string(task), "query": .string("\(Self.kinds[i % 3]) \(i)")]
                    if await post(http, ports: ports, start: i, "/agent/invoke", body, tally: tally, deadline: deadline) != nil {
                        tally.state.withLock { _ = $0.accepted.insert(i) }
                    }
                    guard i % 5 == 0 else { return }
                    let text = "failover round \(number) fact \(i)"
                    let memory: JSONValue = ["user_id": .string(user), "memory_info": .string(text)]
                    if let reply = await post(http, ports: ports, start: i + 1, "/agent/write/longterm", memory, tally: tally, deadline: deadline),
                        let id = (try? JSONValue(parsing: Array(reply.readableBytesView)))?.objectValue?["memory_id"]?.stringValue
                    {
                        tally.state.withLock { $0.memories[id] = text }
                    }
                }
            }
        }
        result.withoutPrimary = await losing.value
        let lostAt = tally.lostAt.withLock { $0 } ?? clock.now

        // Every acknowledged task completes (the approver answers those that wait).
        let accepted = tally.state.withLock { $0.accepted }
        let acceptedIDs = accepted.map { ids($0).task }
        while clock.now < deadline {
            let done = try? await pool.query("SELECT count(*) AS n FROM tasks WHERE state = 'completed' AND task_id = ANY (\(acceptedIDs))").first?.decode("n", as: Int.self)
            if let done, done == acceptedIDs.count {
                result.allDone = clock.now - lostAt
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        approving.cancel()
        _ = await approving.value
        result.accepted = accepted.count
        result.completed = try await pool.query("SELECT count(*) AS n FROM tasks WHERE state = 'completed' AND task_id = ANY (\(acceptedIDs))").first?.decode("n", as: Int.self) ?? 0
        if result.completed < result.accepted {
            let rows = try await pool.query("""
                SELECT task_id, state::text AS state, attempts, coalesce(lease_owner, '') AS owner,
                       coalesce(to_char(lease_expires_at, 'HH24:MI:SS.MS'), '') AS lease, to_char(updated_at, 'HH24:MI:SS.MS') AS updated,
                       (SELECT count(*) FROM messages m WHERE m.tenant_id = t.tenant_id AND m.user_id = t.user_id
                          AND m.session_id = t.session_id AND m.task_id = t.task_id) AS messages
                FROM tasks t WHERE task_id = ANY (\(acceptedIDs)) AND state <> 'completed'
                """).rows
            var found = Set<String>()
            for row in rows {
                let task: String = try row.decode("task_id")
                found.insert(task)
                result.unfinished.append(
                    "\(task) \(try row.decode("state", as: String.self)) attempts \(try row.decode("attempts", as: Int.self)) "
                        + "owner \(try row.decode("owner", as: String.self)) lease \(try row.decode("lease", as: String.self)) "
                        + "updated \(try row.decode("updated", as: String.self)) messages \(try row.decode("messages", as: Int.self))")
            }
            for task in acceptedIDs where !found.contains(task) {
                if try await pool.query("SELECT count(*) AS n FROM tasks WHERE task_id = \(task) AND state = 'completed'").first?.decode("n", as: Int.self) == 0 {
                    result.unfinished.append("\(task) missing")
                }
            }
            let lost = tally.lostAt.withLock { $0 }.map { String(format: "%.1f s", (ContinuousClock.now - $0).milliseconds / 1000) } ?? "?"
            result.unfinished.append("(read \(lost) after the loss)")
        }
        // Exactly once: plain tasks hold query and answer; tool tasks query, call, one tool result, answer.
        result.duplicated = try await pool.query("""
            SELECT count(*) AS n FROM (
              SELECT t.task_id FROM tasks t JOIN messages m USING (tenant_id, user_id, session_id, task_id)
              WHERE t.session_id LIKE \(prefix + "%")
              GROUP BY t.task_id, t.query
              HAVING count(*) FILTER (WHERE m.type = 'tool') > CASE WHEN t.query LIKE 'plain%' THEN 0 ELSE 1 END
                  OR count(*) FILTER (WHERE m.type = 'human') > 1
                  OR count(*) > CASE WHEN t.query LIKE 'plain%' THEN 2 ELSE 4 END
            ) AS odd
            """).first?.decode("n", as: Int.self) ?? -1
        // Tasks a process was running when the primary went: run again from their last committed
        // step (a task that waited for approval is claimed once more by its resume).
        result.rerun = try await pool.query("""
            SELECT count(*) AS n FROM tasks
            WHERE session_id LIKE \(prefix + "%") AND attempts > CASE WHEN query LIKE 'hotel%' THEN 2 ELSE 1 END
            """).first?.decode("n", as: Int.self) ?? 0
        let memories = tally.state.withLock { $0.memories }
        let present = try await pool.query("SELECT count(*) AS n FROM memories WHERE memory_id::text = ANY (\(Array(memories.keys)))").first?.decode("n", as: Int.self) ?? 0
        result.memoriesAcknowledged = memories.count
        result.memoriesMissing = memories.count - present
        let seen = tally.state.withLock { $0 }
        result.resumes = seen.resumed.count
        result.unavailable = seen.unavailable
        result.otherAnswers = seen.other
        result.conflictsOnRetry = seen.conflictsOnRetry
        result.slowestAnswer = seen.slowest
        result.firstAcknowledgement = seen.firstAfterLoss.map { $0 - lostAt }

        // Still lost (nothing restarted it behind the bench's back), then back: it rewinds and
        // follows the new primary.
        let stillDown = !(await victimAnswers())
        result.stayedDown = tally.downAfterKill.withLock { $0 } && stillDown
        let back = clock.now
        _ = try await shell(["start", formation, victim])
        _ = try await shell(["wait", formation, "180"])
        result.rejoined = clock.now - back
        return result
    }

    /// scripts/failover.sh with `arguments`; its output, or an error with it.
    func shell(_ arguments: [String]) async throws -> String {
        let script = self.script
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("failover-\(UUID().uuidString).out")
        defer { try? FileManager.default.removeItem(at: output) }
        let status = try await blockingThrowing { try spawnAndWait("/bin/bash", [script] + arguments, output: output.path) }
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        guard status == 0 else { throw ValidationError("\(script) \(arguments.joined(separator: " ")) failed (\(status)): \(text.suffix(1500))") }
        return text
    }
}

/// Runs blocking work (libpq, waitpid) on a thread of its own, off Swift's cooperative pool.
func blockingThrowing<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}
