import Foundation
import Postgres

/// Whether a commit the service acknowledges survives the loss of the database machine: read
/// once at start, from the primary's own settings, and logged (`AgentdServer`).
///
/// agentd needs `synchronous_commit` at `on` (the default) or `remote_apply` with a synchronous
/// standby named in `synchronous_standby_names`: a commit then returns only once a standby has
/// flushed it, so a failover to that standby loses nothing acknowledged. `remote_write` waits
/// only for the standby's operating system to have it; `local` and `off` wait for no standby.
public struct ClusterDurability: Sendable, Equatable {
    public var synchronousCommit: String
    public var synchronousStandbyNames: String
    /// Standbys streaming from this server now.
    public var standbys: Int

    public init(synchronousCommit: String, synchronousStandbyNames: String, standbys: Int) {
        self.synchronousCommit = synchronousCommit
        self.synchronousStandbyNames = synchronousStandbyNames
        self.standbys = standbys
    }

    public enum Verdict: Sendable, Equatable {
        /// Commits wait for a standby: a failover to it loses nothing acknowledged.
        case synchronous
        /// A standby flushes commits after they are acknowledged: a failover can lose the last ones.
        case asynchronous
        /// Standbys are named synchronous but none is connected: every commit waits until one is.
        case waitingForStandby
        /// `synchronous_commit` is `off`: a crash of this very server can lose acknowledged commits.
        case commitsNotFlushed
        /// No standby: the data lives and dies with this machine's disk.
        case singleServer
    }

    public var verdict: Verdict {
        if synchronousCommit == "off" { return .commitsNotFlushed }
        let named = !synchronousStandbyNames.trimmingCharacters(in: .whitespaces).isEmpty
        if named, synchronousCommit != "local" { return standbys > 0 ? .synchronous : .waitingForStandby }
        return standbys > 0 ? .asynchronous : .singleServer
    }

    /// The log line for the verdict, and whether it is a warning.
    public var report: (warning: Bool, message: String) {
        let settings = "synchronous_commit=\(synchronousCommit), synchronous_standby_names='\(synchronousStandbyNames)', standbys=\(standbys)"
        switch verdict {
        case .synchronous:
            return (false, "database: commits wait for a synchronous standby (\(settings))")
        case .asynchronous:
            return (true, "database: the cluster replicates asynchronously (\(settings)); a failover can lose tasks, approvals and memories "
                + "already acknowledged. Name the standby in synchronous_standby_names (pg_auto_failover does) and keep synchronous_commit on")
        case .waitingForStandby:
            return (true, "database: synchronous_standby_names is set but no standby is connected (\(settings)); every commit waits until one is")
        case .commitsNotFlushed:
            return (true, "database: synchronous_commit=off (\(settings)); a crash can lose commits already acknowledged. Set it to on")
        case .singleServer:
            return (false, "database: a single server, no standby (\(settings)); the loss of its machine loses what it holds")
        }
    }

    /// Reads the settings in force for the service's own sessions (a role's or database's
    /// `SET synchronous_commit` included). `pg_stat_replication` lists standbys to any role.
    public static func read(pool: PostgresPool) async throws -> ClusterDurability {
        try await StoreError.mapping {
            try await pool.withConnection { connection in
                let row = try connection.query("""
                    SELECT current_setting('synchronous_commit') AS commit, current_setting('synchronous_standby_names') AS names,
                           (SELECT count(*) FROM pg_stat_replication) AS standbys
                    """).first
                return ClusterDurability(
                    synchronousCommit: try row?.decode("commit", as: String.self) ?? "",
                    synchronousStandbyNames: try row?.decode("names", as: String.self) ?? "",
                    standbys: try row?.decode("standbys", as: Int.self) ?? 0)
            }
        }
    }
}
