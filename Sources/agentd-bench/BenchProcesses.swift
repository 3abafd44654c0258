import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// PostgreSQL's own programs (pgbench, pg_waldump), from the newest server version installed.
func postgresTool(_ name: String) throws -> String {
    let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
    for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
        let candidate = "/usr/lib/postgresql/\(version)/bin/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    guard let found = executableInPath(name) else {
        throw ValidationError("\(name) not found (it ships with the postgresql package)")
    }
    return found
}

func executableInPath(_ name: String) -> String? {
    (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map { "\($0)/\(name)" }
        .first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Commit records in the WAL between two positions: transactions that wrote, each one a WAL
/// flush the committer waited for. Read-only statements leave none.
func walCommits(dataDirectory: String, from start: String, to end: String) throws -> Int {
    let outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("agentd-bench-\(UUID().uuidString).waldump")
    defer { try? FileManager.default.removeItem(at: outputURL) }
    let status = try spawnAndWait(
        try postgresTool("pg_waldump"), ["--stats=record", "-p", dataDirectory + "/pg_wal", "-s", start, "-e", end], output: outputURL.path)
    let text = (try? String(contentsOf: outputURL, encoding: .utf8)) ?? ""
    guard status == 0, let commits = text.firstMatch(of: /Transaction\/COMMIT\s+(\d+)/).flatMap({ Int($0.1) }) else {
        throw ValidationError("pg_waldump failed: \(text.suffix(800))")
    }
    return commits
}

/// pgbench, for the machine's own ceiling on the same cluster.
enum PGBench {
    struct Result: Sendable {
        var transactionsPerSecond: Double
        var averageLatencyMilliseconds: Double
    }

    /// `script` with `clients` connections for `seconds`, over the extended protocol with unnamed
    /// statements, as agentd sends its statements.
    static func run(url: String, script: String, clients: Int, seconds: Int) throws -> Result {
        guard let components = URLComponents(string: url) else { throw ValidationError("cannot read \(url)") }
        let pgbench = try postgresTool("pgbench")
        let (status, text) = try runWithScript(script, extension: "sql") { scriptPath in
            (
                pgbench,
                [
                    "-n", "-M", "extended", "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(seconds)", "-f", scriptPath,
                    "-h", components.host ?? "127.0.0.1", "-p", "\(components.port ?? 5432)", "-U", components.user ?? "postgres",
                    String(components.path.dropFirst()),
                ]
            )
        }
        guard status == 0, let tps = text.firstMatch(of: /tps = ([0-9.]+)/).flatMap({ Double($0.1) }),
            let latency = text.firstMatch(of: /latency average = ([0-9.]+) ms/).flatMap({ Double($0.1) })
        else {
            throw ValidationError("pgbench failed: \(text.suffix(800))")
        }
        return Result(transactionsPerSecond: tps, averageLatencyMilliseconds: latency)
    }
}

/// Writes `script` to a temporary file, runs the command `command` makes of its path, and returns
/// the exit status with what the command printed (both files removed afterwards).
func runWithScript(
    _ script: String, extension fileExtension: String, _ command: (String) -> (path: String, arguments: [String])
) throws -> (status: Int32, output: String) {
    let scriptURL = FileManager.default.temporaryDirectory.appendingPathComponent("agentd-bench-\(UUID().uuidString).\(fileExtension)")
    try script.write(to: scriptURL, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: scriptURL) }
    let outputURL = scriptURL.appendingPathExtension("out")
    defer { try? FileManager.default.removeItem(at: outputURL) }
    let (path, arguments) = command(scriptURL.path)
    let status = try spawnAndWait(path, arguments, output: outputURL.path)
    return (status, (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "")
}

/// Runs `path` with `arguments`, standard output and error into the file `output`, and returns its
/// exit status. Not Foundation's Process: its children inherit the parent's blocked signals, and
/// pgbench's `-T` timer is a SIGALRM that would then never arrive.
func spawnAndWait(_ path: String, _ arguments: [String], output: String) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // This process's sockets (hundreds, after the throughput runs) are not all close-on-exec; wrk
    // given them would number its own past its event loop's size and fail to use them. (A
    // descriptor closed meanwhile is no error: glibc ignores EBADF on a close action.)
    let inherited = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }
    for descriptor in inherited where descriptor > 2 { posix_spawn_file_actions_addclose(&actions, descriptor) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var unblocked = sigset_t()
    sigemptyset(&unblocked)
    posix_spawnattr_setsigmask(&attributes, &unblocked)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGALRM, SIGPIPE, SIGINT, SIGTERM] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for argument in argv { free(argument) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
    guard spawned == 0 else { throw ValidationError("cannot run \(path): \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 {
        guard errno == EINTR else { throw ValidationError("waitpid: \(String(cString: strerror(errno)))") }
    }
    // WIFEXITED / WEXITSTATUS, which Swift does not import.
    return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// wrk, the HTTP load generator, for the read phase: `paths` in turn over `connections`
/// keep-alive connections, by a Lua script.
enum Wrk {
    struct Result: Sendable {
        var requests: Int
        var requestsPerSecond: Double
        /// Answers other than 2xx/3xx, and socket errors (connect, read, write, timeout).
        var failures: Int
        /// wrk's own lines about them.
        var failureReport: String
        var p50Milliseconds: Double
        var p99Milliseconds: Double
    }

    static func run(
        _ wrk: String, baseURL: String, paths: [String], authorization: String?, connections: Int, seconds: Int
    ) throws -> Result {
        func literal(_ text: String) -> String {
            "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        // Each of wrk's threads runs the script in a Lua state of its own, starting at its own offset.
        let script = """
            local paths = {\(paths.map(literal).joined(separator: ", "))}
            local next = 0
            \(authorization.map { "wrk.headers[\"Authorization\"] = \(literal($0))" } ?? "")
            function setup(thread) thread:set("offset", math.random(#paths)) end
            function init(args) next = offset or 0 end
            function request()
                next = next + 1
                return wrk.format("GET", paths[next % #paths + 1])
            end
            """
        let (status, text) = try runWithScript(script, extension: "lua") { scriptPath in
            (wrk, ["-t", "2", "-c", "\(connections)", "-d", "\(seconds)s", "--latency", "-s", scriptPath, baseURL])
        }
        func milliseconds(_ percentile: String) throws -> Double? {
            guard let match = text.firstMatch(of: try Regex("\(percentile)%\\s+([0-9.]+)(us|ms|s)\\b")),
                let value = match.output[1].substring.flatMap({ Double($0) })
            else { return nil }
            switch match.output[2].substring {
            case "us": return value / 1000
            case "s": return value * 1000
            default: return value
            }
        }
        guard status == 0, let rate = text.firstMatch(of: /Requests\/sec:\s+([0-9.]+)/).flatMap({ Double($0.1) }),
            let requests = text.firstMatch(of: /([0-9]+) requests in/).flatMap({ Int($0.1) }),
            let p50 = try milliseconds("50"), let p99 = try milliseconds("99")
        else {
            throw ValidationError("wrk failed: \(text.suffix(800))")
        }
        let non2xx = text.firstMatch(of: /Non-2xx or 3xx responses: ([0-9]+)/).flatMap { Int($0.1) } ?? 0
        let socketErrors =
            text.firstMatch(of: /Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)/).map {
                [$0.1, $0.2, $0.3, $0.4].compactMap { Int($0) }.reduce(0, +)
            } ?? 0
        let report = text.split(separator: "\n").filter { $0.contains("Non-2xx") || $0.contains("Socket errors") }.joined(separator: "; ")
        return Result(
            requests: requests, requestsPerSecond: rate, failures: non2xx + socketErrors, failureReport: report, p50Milliseconds: p50,
            p99Milliseconds: p99)
    }
}

extension Wrk {
    /// What `tasks` measured: each completed task's time from its invoke to the status read that
    /// saw it completed, in ms, and the requests that failed.
    struct Tasks: Sendable {
        var latencies: [Double]
        var failures: Int
        var failureReport: String
    }

    /// The throughput phase's clients as wrk connections, one per wrk thread (each thread runs the
    /// script in a Lua state of its own, so the state is the client's): invoke, then
    /// `GET /agent/status/...?wait=30` until the task has ended, then the next task. The clock is
    /// `clock_gettime(CLOCK_MONOTONIC)` through LuaJIT's FFI, which Debian's wrk is built with.
    static func tasks(
        _ wrk: String, baseURL: String, userPrefix: String, authorization: String?, clients: Int, seconds: Int
    ) throws -> Tasks {
        func literal(_ text: String) -> String {
            "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let script = """
            local ffi = require("ffi")
            ffi.cdef[[
            typedef struct { long tv_sec; long tv_nsec; } agentd_timespec;
            int clock_gettime(int clock, agentd_timespec *now);
            ]]
            local timespec = ffi.new("agentd_timespec")
            local function now()
                ffi.C.clock_gettime(1, timespec)
                return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
            end
            \(authorization.map { "wrk.headers[\"Authorization\"] = \(literal($0))" } ?? "")
            wrk.headers["Content-Type"] = "application/json"
            local threads = {}
            function setup(thread)
                thread:set("client", #threads)
                table.insert(threads, thread)
            end
            local user, number, waiting, started = nil, 0, false, 0
            latencies, failures, report = {}, 0, ""
            function init(args) user = \(literal(userPrefix)) .. "-u" .. client end
            function request()
                if not waiting then
                    number = number + 1
                    started = now()
                    return wrk.format("POST", "/agent/invoke", nil, string.format(
                        '{"user_id":"%s","session_id":"s","task_id":"t%d","query":"question %d"}', user, number, number))
                end
                return wrk.format("GET", string.format("/agent/status/%s/s/t%d?wait=30", user, number))
            end
            function response(status, headers, body)
                if status ~= 200 then
                    failures = failures + 1
                    if #report < 400 then report = report .. status .. " " .. body:sub(1, 120) .. "; " end
                    waiting = false
                    return
                end
                if not waiting then
                    waiting = true
                    return
                end
                local state = body:match('"status"%s*:%s*"(%a+)"')
                if state == "completed" then
                    latencies[#latencies + 1] = now() - started
                    waiting = false
                elseif state ~= "queued" and state ~= "running" then
                    failures = failures + 1
                    if #report < 400 then report = report .. user .. "/t" .. number .. " ended " .. tostring(state) .. "; " end
                    waiting = false
                end
            end
            function done(summary, latency, requests)
                local failed, reports = 0, ""
                for _, thread in ipairs(threads) do
                    local measured = thread:get("latencies")
                    local parts = {}
                    for index, value in ipairs(measured) do parts[index] = string.format("%.3f", value) end
                    if #parts > 0 then io.write("AGENTD-LATENCIES ", table.concat(parts, ","), "\\n") end
                    failed = failed + thread:get("failures")
                    reports = reports .. thread:get("report")
                end
                io.write("AGENTD-FAILURES ", failed, " ", reports, "\\n")
            end
            """
        let (status, text) = try runWithScript(script, extension: "lua") { scriptPath in
            (wrk, ["-t", "\(clients)", "-c", "\(clients)", "-d", "\(seconds)s", "--timeout", "60s", "-s", scriptPath, baseURL])
        }
        guard status == 0, let failureLine = text.firstMatch(of: /AGENTD-FAILURES ([0-9]+) ?(.*)/) else {
            throw ValidationError("wrk failed: \(text.suffix(800))")
        }
        var latencies: [Double] = []
        for line in text.split(separator: "\n") where line.hasPrefix("AGENTD-LATENCIES ") {
            latencies += line.dropFirst("AGENTD-LATENCIES ".count).split(separator: ",").compactMap { Double($0) }
        }
        let socketErrors =
            text.firstMatch(of: /Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)/).map {
                [$0.1, $0.2, $0.3, $0.4].compactMap { Int($0) }.reduce(0, +)
            } ?? 0
        let socketReport = text.split(separator: "\n").filter { $0.contains("Socket errors") }.joined(separator: "; ")
        return Tasks(
            latencies: latencies, failures: (Int(failureLine.1) ?? 0) + socketErrors,
            failureReport: String(failureLine.2) + socketReport)
    }
}

/// Requests that reached PostgreSQL, counted at its sockets: `ss -ti`'s `data_segs_in` of each
/// server socket, by the backend that owns it. A client writes each request in one piece (one
/// statement, or a pipeline of them with BEGIN and COMMIT), so the difference over a phase is the
/// round trips the server served, which pg_stat_statements cannot tell from statements. nil
/// without `ss` (iproute2).
func segmentsIntoServer(port: Int) -> [Int32: Int]? {
    guard let ss = executableInPath("ss") else { return nil }
    let outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("agentd-bench-\(UUID().uuidString).ss")
    defer { try? FileManager.default.removeItem(at: outputURL) }
    guard (try? spawnAndWait(ss, ["-tinpH", "state", "established", "( sport = :\(port) )"], output: outputURL.path)) == 0,
        let text = try? String(contentsOf: outputURL, encoding: .utf8)
    else { return nil }
    var segments: [Int32: Int] = [:]
    var owner: Int32?
    for line in text.split(separator: "\n") {
        if let pid = line.firstMatch(of: /pid=(\d+)/).flatMap({ Int32($0.1) }) {
            owner = pid
        } else if let pid = owner, line.contains("rtt:") {
            // Absent while it is zero.
            segments[pid, default: 0] += line.firstMatch(of: /data_segs_in:(\d+)/).flatMap { Int($0.1) } ?? 0
            owner = nil
        }
    }
    return segments
}
