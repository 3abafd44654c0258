import ArgumentParser
import Foundation
import Logging
import Postgres
import Store

@main
struct Agentd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agentd",
        abstract: "Runs LLM agents for many users at once, backed by PostgreSQL.",
        subcommands: [Migrate.self]
    )
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Applies the schema migrations in sql/ that the database has not seen yet.",
        discussion: """
            Reads DATABASE_URL (default postgres://postgres@127.0.0.1:5432/agentd) and the \
            migrations from AGENTD_SQL_DIR, or the sql/ folder found from the working directory. \
            Safe to run twice and from several processes at once.
            """
    )

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let logger = Logger(label: "agentd.migrate")
        guard let directory = Migrator.locateDirectory(environment: environment) else {
            throw ValidationError("cannot find the sql/ folder; set AGENTD_SQL_DIR")
        }
        let migrator = try Migrator(directory: directory)
        let pool = PostgresPool(configuration: .init(conninfo: environment["DATABASE_URL"] ?? Defaults.databaseURL, size: 1))
        do {
            let applied = try await migrator.migrate(pool, logger: logger)
            print(applied.isEmpty ? "schema is up to date" : "applied \(applied.map { "\($0.version)_\($0.name)" }.joined(separator: ", "))")
            await pool.shutdown()
        } catch {
            await pool.shutdown()
            throw ValidationError("migration failed: \(String(reflecting: error))")
        }
    }
}

enum Defaults {
    static let databaseURL = "postgres://postgres@127.0.0.1:5432/agentd"
}
