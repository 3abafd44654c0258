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
    /// Of those, the ones the primary counts as synchronous (`sync_state` sync or quorum); nil
    /// when this role may not see it (`pg_read_all_stats`).
    public var synchronousStandbys: Int?

    public init(synchronousCommit: String, synchronousStandbyNames: String, standbys: Int, synchronousStandbys: Int?) {
        self.synchronousCommit = synchronousCommit
        self.synchronousStandbyNames = synchronousStandbyNames
        self.standbys = standbys
        self.synchronousStandbys = synchronousStandbys
    }

    public enum Verdict: Sendable, Equatable {
        /// Commits wait until a standby has them on disk: a failover to it loses nothing acknowledged.
        case synchronous
        /// Commits wait only until a standby has written them (`remote_write`), not flushed: the
        /// primary's loss together with the standby's operating system can lose the last ones.
        case synchronousWriteOnly
        /// A standby flushes commits after they are acknowledged: a failover can lose the last ones.
        case asynchronous
        /// Standbys are named synchronous but none connected counts as one: every commit waits.
        case waitingForStandby
        /// `synchronous_commit` is `off`: a crash of this very server can lose acknowledged commits.
        case commitsNotFlushed
        /// No standby: the data lives and dies with this machine's disk.
        case singleServer
    }

    public var verdict: Verdict {
        if synchronousCommit == "off" { return .commitsNotFlushed }
        let named = !synchronousStandbyNames.trimmingCharacters(in: .whitespaces).isEmpty
        guard named, synchronousCommit != "local" else { return standbys > 0 ? .asynchronous : .singleServer }
        // Unseen (no pg_read_all_stats): any standby is taken for a synchronous one.
        guard (synchronousStandbys ?? standbys) > 0 else { return .waitingForStandby }
        return synchronousCommit == "remote_write" ? .synchronousWriteOnly : .synchronous
    }

    /// The log line for the verdict, and whether it is a warning.
    public var report: (warning: Bool, message: String) {
        let seen = synchronousStandbys.map { "\($0) synchronous" } ?? "their sync state not visible to this role"
        let settings = "synchronous_commit=\(synchronousCommit), synchronous_standby_names='\(synchronousStandbyNames)', standbys=\(standbys) (\(seen))"
        switch verdict {
        case .synchronous:
            return (false, "database: commits wait for a synchronous standby (\(settings))")
        case .synchronousWriteOnly:
            return (true, "database: commits wait only until a standby has written them, not flushed them (\(settings)); "
                + "set synchronous_commit to on so that a failover loses nothing acknowledged")
        case .asynchronous:
            return (true, "database: the cluster replicates asynchronously (\(settings)); a failover can lose tasks, approvals and memories "
                + "already acknowledged. Name the standby in synchronous_standby_names (pg_auto_failover does) and keep synchronous_commit on")
        case .waitingForStandby:
            return (true, "database: synchronous_standby_names is set but no synchronous standby is connected (\(settings)); every commit waits until one is")
        case .commitsNotFlushed:
            return (true, "database: synchronous_commit=off (\(settings)); a crash can lose commits already acknowledged. Set it to on")
        case .singleServer:
            return (false, "database: a single server, no standby (\(settings)); the loss of its machine loses what it holds")
        }
    }

    /// Reads the settings in force for the service's own sessions (a role's or database's
    /// `SET synchronous_commit` included). `pg_stat_replication` lists standbys to any role, and
    /// their `sync_state` to roles with `pg_read_all_stats`.
    public static func read(pool: PostgresPool) async throws -> ClusterDurability {
        try await StoreError.mapping {
            let row = try await pool.query("""
                SELECT current_setting('synchronous_commit') AS commit, current_setting('synchronous_standby_names') AS names,
                       count(*) AS standbys,
                       CASE WHEN bool_and(sync_state IS NOT NULL) OR count(*) = 0
                            THEN count(*) FILTER (WHERE sync_state IN ('sync', 'quorum')) END AS synchronous
                FROM pg_stat_replication
                """).first
            return ClusterDurability(
                synchronousCommit: try row?.decode("commit", as: String.self) ?? "",
                synchronousStandbyNames: try row?.decode("names", as: String.self) ?? "",
                standbys: try row?.decode("standbys", as: Int.self) ?? 0,
                synchronousStandbys: try row?.decode("synchronous", as: Int?.self))
        }
    }
}
