import AgentdApp
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// A primary with a real hot standby (pg_basebackup, streaming): what agentd does when its
/// `DATABASE_URL` names a cluster (README, "A database cluster").
@Suite("database cluster")
struct ClusterTests {
    @Test("DATABASE_URL: several hosts, each with its port or one port for all, read by libpq's parser; standby-only targets refused")
    func targets() throws {
        let cluster = try PostgresTargets.parse("postgres://agentd:hunter2@db1:5432,db2:5433/agentd?target_session_attrs=read-write")
        #expect(cluster.servers == ["db1:5432", "db2:5433"])
        #expect(cluster.database == "agentd" && cluster.user == "agentd" && cluster.sessionAttributes == "read-write")
        #expect(!cluster.description.contains("hunter2"))
        // One port for every host; a host without a port gets 5432; agentd's default is read-write.
        #expect(try PostgresTargets.parse("host=a,b,c port=6000 dbname=x").servers == ["a:6000", "b:6000", "c:6000"])
        let mixed = try PostgresTargets.parse("postgres://h1,h2:6001/db")
        #expect(mixed.servers == ["h1:5432", "h2:6001"] && mixed.sessionAttributes == "read-write")
        #expect(try PostgresTargets.parse("postgres://[::1]:5433/db").servers == ["[::1]:5433"])
        #expect(try PostgresTargets.parse("postgres://h1/db?target_session_attrs=any").sessionAttributes == "any")
        for bad in [
            "host=a,b port=1,2,3", "postgres://h1,h2/db?target_session_attrs=standby", "postgres://h1/db?target_session_attrs=read-only",
            "postgres://agentd:hunter2@h1:notaport/db", "postgres://h1:99999/db", "not a url at all = =",
            "postgres://h1,h2/db?target_session_attrs=any",
            // libpq quotes what it cannot read, and here that is the password.
            "postgres://agentd:hunter2%zz@h1/db", "host=h1 password=hunter2 x", "host=h1 password='hunter2",
        ] {
            let error = #expect(throws: PostgresError.self, "\(bad)") { try PostgresTargets.parse(bad) }
            #expect(error?.message.contains("hunter2") == false, "\(error?.message ?? "")")
            #expect(error?.message.isEmpty == false)
        }
        #expect(try PostgresTargets.parse("postgres://h1/db?target_session_attrs=primary").sessionAttributes == "primary")
        // agentd serve refuses such a URL at start, with the reason.
        let refused = #expect(throws: (any Error).self) {
            try AgentdConfiguration(environment: ["DATABASE_URL": "postgres://h1,h2/db?target_session_attrs=prefer-standby"])
        }
        #expect("\(refused.map { String(describing: $0) } ?? "")".contains("target_session_attrs=prefer-standby"))
        #expect(try AgentdConfiguration(environment: ["DATABASE_URL": "postgres://h1:5432,h2:5432/agentd"]).databaseURL.contains("h2"))
    }

    @Test("the durability verdict: synchronous only with a standby named, counted synchronous, and commits waiting for its flush")
    func verdicts() {
        func verdict(_ commit: String, _ names: String, _ standbys: Int, _ synchronous: Int?) -> ClusterDurability.Verdict {
            ClusterDurability(synchronousCommit: commit, synchronousStandbyNames: names, standbys: standbys, synchronousStandbys: synchronous).verdict
        }
        #expect(verdict("on", "ANY 1 (pgautofailover_standby_2)", 1, 1) == .synchronous)
        #expect(verdict("remote_apply", "*", 2, 1) == .synchronous)
        #expect(verdict("on", "*", 1, nil) == .synchronous, "sync state not visible: a connected standby is taken for one")
        #expect(verdict("remote_write", "*", 1, 1) == .synchronousWriteOnly)
        #expect(verdict("on", "", 1, 0) == .asynchronous)
        #expect(verdict("local", "*", 1, 1) == .asynchronous)
        #expect(verdict("on", "*", 0, 0) == .waitingForStandby)
        #expect(verdict("on", "other_standby", 1, 0) == .waitingForStandby, "a standby streams, but not the one named")
        #expect(verdict("off", "*", 1, 1) == .commitsNotFlushed)
        #expect(verdict("on", " ", 0, 0) == .singleServer)
        for (commit, names, standbys, synchronous, warning) in [
            ("on", "", 1, 0, true), ("on", "", 0, 0, false), ("on", "*", 1, 1, false), ("remote_write", "*", 1, 1, true), ("on", "x", 1, 0, true),
        ] {
            let durability = ClusterDurability(
                synchronousCommit: commit, synchronousStandbyNames: names, standbys: standbys, synchronousStandbys: synchronous)
            #expect(durability.report.warning == warning, "\(durability)")
        }
    }

    /// A private primary (this suite changes its settings) with migrations, and its standby.
    static func primaryAndStandby() async throws -> (primary: PrivateCluster, standby: PrivateStandby) {
        let primary = try await offPool { try PrivateCluster() }
        let pool = PostgresPool(configuration: .init(conninfo: primary.url, size: 1))
        try await Migrator(directory: TestDatabase.sqlDirectory).migrate(pool)
        await pool.shutdown()
        let standby = try await offPool { try PrivateStandby(of: primary) }
        return (primary, standby)
    }

    @Test("a standby is never used: named first it is passed over for the primary; alone it is refused, whatever target_session_attrs says")
    func standbyRefused() async throws {
        let (primary, standby) = try await Self.primaryAndStandby()
        defer {
            standby.remove()
            primary.remove()
        }
        let both = "postgres://postgres@127.0.0.1:\(standby.port),127.0.0.1:\(primary.port)/postgres"
        try await offPool {
            let connection = try PostgresConnection.connect(both)
            defer { connection.close() }
            #expect(connection.serverAddress == "127.0.0.1:\(primary.port)")
            #expect(connection.options["target_session_attrs"] == "read-write")
            #expect(connection.options["keepalives_idle"] == "10")
            #expect(!connection.isReadOnlySession)
            try connection.execute("CREATE TABLE IF NOT EXISTS cluster_probe (n int); INSERT INTO cluster_probe VALUES (1)")
            for url in [standby.url, standby.url + "?target_session_attrs=any"] {
                let error = #expect(throws: PostgresError.self, "\(url)") { try PostgresConnection.connect(url) }
                #expect(error?.code == .connectionFailed && error?.isConnectionFailure == true)
            }
        }
        // Past libpq's own check (`any`), agentd's: SQLSTATE 25006, the standby named.
        let refusal = await #expect(throws: PostgresError.self) {
            try await offPool { _ = try PostgresConnection.connect(standby.url + "?target_session_attrs=any") }
        }
        #expect(refusal?.sqlState == PostgresError.SQLState.readOnlySQLTransaction)
        #expect(refusal?.message.contains("127.0.0.1:\(standby.port)") == true)
    }

    @Test("a primary made read-only under a pooled connection (a demotion): the write fails as unavailable, the connection is dropped, the next one is fresh")
    func demotedSessionDropped() async throws {
        let cluster = try await offPool { try PrivateCluster() }
        defer { cluster.remove() }
        let pool = PostgresPool(configuration: .init(conninfo: cluster.url, size: 1))
        defer { Task { await pool.shutdown() } }
        try await pool.query("CREATE TABLE demoted_probe (n int)")
        let before = try await pool.withConnection { $0.backendPID }
        let admin = try await offPool { try PostgresConnection.connect(cluster.url) }
        defer { admin.close() }
        try await offPool {
            try admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            try admin.execute("SELECT pg_reload_conf()")
        }
        // The pooled backend reads the new setting between statements, once the signal reaches it.
        var failure: PostgresError?
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while failure == nil, clock.now < deadline {
            do {
                try await pool.query("INSERT INTO demoted_probe VALUES (1)")
                try await Task.sleep(for: .milliseconds(50))
            } catch let error as PostgresError {
                failure = error
            }
        }
        let error = try #require(failure)
        #expect(error.sqlState == PostgresError.SQLState.readOnlySQLTransaction)
        #expect(error.isConnectionFailure, "a write the server refuses as read-only means the primary is elsewhere")
        #expect(pool.statistics.open == 0, "the read-only session is not handed to the next caller")
        try await offPool {
            try admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
            try admin.execute("SELECT pg_reload_conf()")
        }
        try await pool.query("INSERT INTO demoted_probe VALUES (2)")
        #expect(try await pool.withConnection { $0.backendPID } != before)
    }

    @Test("at start agentd warns of an asynchronous cluster and says so when commits wait for a standby; a cluster URL with the standby first works end to end")
    func startupVerdict() async throws {
        let (primary, standby) = try await Self.primaryAndStandby()
        defer {
            standby.remove()
            primary.remove()
        }
        let admin = try await offPool { try PostgresConnection.connect(primary.url) }
        defer { admin.close() }
        // The standby streams before the service looks.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        while try await offPool({ try admin.query("SELECT count(*) AS n FROM pg_stat_replication").first?.decode("n", as: Int.self) }) == 0,
            clock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(100))
        }
        let cluster = "postgres://postgres@127.0.0.1:\(standby.port),127.0.0.1:\(primary.port)/postgres"

        let asynchronous = LogCapture()
        let first = try await ServiceHarness.start(database: cluster, logs: asynchronous)
        #expect(asynchronous.text.contains("replicates asynchronously"), "\(asynchronous.text.suffix(2000))")
        #expect(try await first.invoke("u1", "s1", "t1", "hello").status == 200)
        #expect(try await first.settle("u1", "s1", "t1")["status"] == "completed")
        await first.stop()

        try await offPool {
            try admin.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            try admin.execute("SELECT pg_reload_conf()")
        }
        // The walsender takes the new setting when the reload reaches it.
        let synchronousBy = clock.now + .seconds(30)
        while try await offPool({
            try admin.query("SELECT count(*) AS n FROM pg_stat_replication WHERE sync_state = 'sync'").first?.decode("n", as: Int.self)
        }) == 0, clock.now < synchronousBy {
            try await Task.sleep(for: .milliseconds(100))
        }
        let synchronous = LogCapture()
        let second = try await ServiceHarness.start(database: cluster, logs: synchronous)
        #expect(synchronous.text.contains("commits wait for a synchronous standby"), "\(synchronous.text.suffix(2000))")
        #expect(!synchronous.text.contains("asynchronously"))
        // Synchronous commits go through: the standby confirms each.
        #expect(try await second.invoke("u1", "s1", "t2", "again").status == 200)
        #expect(try await second.settle("u1", "s1", "t2")["status"] == "completed")
        await second.stop()
    }
}

/// A hot standby of a `PrivateCluster` (pg.sh standby: pg_basebackup, asynchronous streaming).
final class PrivateStandby: Sendable {
    let directory: URL
    let port: Int
    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    init(of primary: PrivateCluster) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentd-standby-\(UUID().uuidString.prefix(8))")
        let output = try PrivateCluster.run(["standby", primary.directory.path, directory.path])
        guard let port = Int(output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last ?? "") else {
            throw ServiceHarness.HarnessError(message: "pg.sh standby printed \(output)")
        }
        self.port = port
    }

    func remove() {
        _ = try? PrivateCluster.run(["stop", directory.path])
        try? FileManager.default.removeItem(at: directory)
    }
}
