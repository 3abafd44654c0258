import Foundation
import Logging
import Postgres

/// One numbered schema change from `sql/`, e.g. `001_core.sql`.
public struct Migration: Sendable, Hashable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies the migrations a database has not seen yet, each in its own transaction, and
/// records them in `schema_migrations`. An advisory lock makes concurrent runs (two
/// processes starting at once) apply each file exactly once.
public struct Migrator: Sendable {
    /// Arbitrary constant shared by every agentd process: the advisory lock's key.
    static let lockKey = 7_270_116_101_110_116

    public let migrations: [Migration]

    public init(migrations: [Migration]) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Reads `NNN_name.sql` files from a directory; other files are ignored.
    public init(directory: URL) throws {
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        var migrations: [Migration] = []
        var seen: [Int: String] = [:]
        for file in files where file.pathExtension == "sql" {
            let base = file.deletingPathExtension().lastPathComponent
            guard let underscore = base.firstIndex(of: "_"), let version = Int(base[..<underscore]) else { continue }
            if let other = seen[version] {
                throw MigrationError(message: "two migrations share version \(version): \(other) and \(base)")
            }
            seen[version] = base
            migrations.append(
                Migration(version: version, name: String(base[base.index(after: underscore)...]), sql: try String(contentsOf: file, encoding: .utf8)))
        }
        self.init(migrations: migrations)
    }

    /// Finds the `sql/` folder: `$AGENTD_SQL_DIR`, else `sql/` in the working directory or
    /// in a parent of it or of the executable.
    public static func locateDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL? {
        if let configured = environment["AGENTD_SQL_DIR"], !configured.isEmpty {
            return URL(fileURLWithPath: configured, isDirectory: true)
        }
        let starts = [
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true),
            URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath().deletingLastPathComponent(),
        ]
        for start in starts {
            var folder = start.standardizedFileURL
            for _ in 0..<6 {
                let candidate = folder.appendingPathComponent("sql", isDirectory: true)
                if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("001_core.sql").path) {
                    return candidate
                }
                folder = folder.deletingLastPathComponent()
            }
        }
        return nil
    }

    /// Applies what is missing and returns the migrations it applied, in order.
    @discardableResult
    public func migrate(_ pool: PostgresPool, logger: Logger = Logger(label: "agentd.migrate")) async throws -> [Migration] {
        let migrations = self.migrations
        return try await pool.withConnection { connection in
            try connection.query("SELECT pg_advisory_lock(\(Self.lockKey))")
            defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))") }
            try connection.execute(Self.createTable)
            var applied: [Int: String] = [:]
            for row in try connection.query(Self.listApplied).rows {
                applied[try row.decode("version", as: Int.self)] = try row.decode("checksum", as: String.self)
            }
            var done: [Migration] = []
            for migration in migrations {
                let checksum = try connection.query("SELECT md5(\(migration.sql)) AS checksum").first?.decode("checksum", as: String.self)
                if let recorded = applied[migration.version] {
                    if recorded != checksum {
                        throw MigrationError(
                            message: "migration \(migration.version)_\(migration.name) was changed after it was applied; add a new migration instead")
                    }
                    continue
                }
                try connection.withTransaction { connection in
                    try connection.execute(migration.sql)
                    try connection.query(Self.record(migration))
                }
                logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                done.append(migration)
            }
            return done
        }
    }

    static let createTable = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer     PRIMARY KEY,
            name       text        NOT NULL,
            checksum   text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """

    static let listApplied: PostgresQuery = "SELECT version, checksum FROM schema_migrations ORDER BY version"

    static func record(_ migration: Migration) -> PostgresQuery {
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (\(migration.version), \(migration.name), md5(\(migration.sql)))"
    }
}

public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
