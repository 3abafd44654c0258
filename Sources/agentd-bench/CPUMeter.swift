import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// CPU time of the processes a bench phase involves, read from /proc: each of agentd's
/// processes, PostgreSQL (the postmaster and every backend; a backend that exits during the phase
/// is counted through the postmaster's `cutime`/`cstime`, which its reaped children add to), the
/// model server and the load generator (this process). A phase takes a reading before and after
/// and divides the difference by the tasks it completed.
struct CPUMeter: Sendable {
    struct Times: Sendable {
        var user = 0.0
        var system = 0.0
        static func - (a: Times, b: Times) -> Times { Times(user: a.user - b.user, system: a.system - b.system) }
        static func + (a: Times, b: Times) -> Times { Times(user: a.user + b.user, system: a.system + b.system) }
    }

    /// Each role ("agentd", "PostgreSQL", …), in the order printed, and how to read its CPU time.
    let roles: [(name: String, read: @Sendable () -> Times)]

    typealias Reading = [String: Times]

    func read() -> Reading {
        var reading: Reading = [:]
        for role in roles { reading[role.name] = role.read() }
        return reading
    }

    var order: [String] { roles.map(\.name) }

    /// What the phase used per completed task, as `perTask` prints it.
    func since(_ before: Reading, tasks: Int, seconds: Double) -> String {
        Self.perTask(before, read(), order: order, tasks: tasks, seconds: seconds)
    }

    /// Seconds of CPU of `pid` (user, system); with its children that it has waited for.
    static func times(of pid: Int32, withReapedChildren: Bool) -> Times {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return Times()
        }
        // After the command: state is field 3; utime, stime, cutime, cstime are fields 14 to 17.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 15, let user = Double(fields[11]), let system = Double(fields[12]),
            let childUser = Double(fields[13]), let childSystem = Double(fields[14])
        else { return Times() }
        let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
        return withReapedChildren
            ? Times(user: (user + childUser) / tick, system: (system + childSystem) / tick) : Times(user: user / tick, system: system / tick)
    }

    /// The postmaster of the cluster in `dataDirectory` and its children now alive (backends,
    /// the checkpointer, the WAL writer …).
    static func postgresProcesses(dataDirectory: String) -> [Int32] {
        guard let file = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
            let postmaster = file.split(separator: "\n").first.flatMap({ Int32($0.trimmingCharacters(in: .whitespaces)) })
        else { return [] }
        return [postmaster] + children(of: postmaster)
    }

    static func children(of parent: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // Field 4 is the parent's pid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent ? pid : nil
        }
    }

    /// The postmaster's figure includes the backends it reaped; the live ones are read each.
    static func postgresTimes(dataDirectory: String) -> Times {
        let pids = postgresProcesses(dataDirectory: dataDirectory)
        guard let postmaster = pids.first else { return Times() }
        return pids.dropFirst().reduce(times(of: postmaster, withReapedChildren: true)) { $0 + times(of: $1, withReapedChildren: false) }
    }

    /// "agentd 1234 + 210 · PostgreSQL … · all 3456 µs; 1.62 of 2 cores busy": µs of CPU per
    /// completed task, user + system, for each role.
    static func perTask(_ before: Reading, _ after: Reading, order: [String], tasks: Int, seconds: Double) -> String {
        guard tasks > 0 else { return "no tasks" }
        var parts: [String] = []
        var total = Times()
        for name in order {
            let used = (after[name] ?? Times()) - (before[name] ?? Times())
            total = total + used
            parts.append(String(format: "%@ %.0f + %.0f", name, used.user * 1e6 / Double(tasks), used.system * 1e6 / Double(tasks)))
        }
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        return parts.joined(separator: " · ")
            + String(format: " · all %.0f µs; %.2f of %.0f cores busy", (total.user + total.system) * 1e6 / Double(tasks), (total.user + total.system) / seconds, cores)
    }
}
