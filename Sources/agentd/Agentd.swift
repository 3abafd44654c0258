import AgentdApp
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
        subcommands: [Serve.self, Migrate.self]
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serves the HTTP API and runs agent tasks (dispatcher and worker slots) in one process.",
        discussion: """
            Configuration comes from the environment (defaults in brackets):
              DATABASE_URL        [\(AgentdConfiguration.defaultDatabaseURL)]
              HOST, PORT          [127.0.0.1, 8001]
              LLM_BASE_URL        OpenAI-compatible base URL, e.g. https://api.openai.com/v1 [unset: offline model]
              LLM_API_KEY, LLM_MODEL [none, gpt-4o-mini]
              LLM_TIMEOUT_S, LLM_MAX_RETRIES [60, 3]
              WORKER_SLOTS        tasks in flight per process [256]
              DB_POOL_SIZE        database connections (and threads) [8]
              MAX_STEPS           model calls per task [10]
              HISTORY_MESSAGES    messages of earlier turns the model sees [20]
              MEMORY_RECALL_LIMIT long-term memories recalled per task [5]
              APPROVAL_TOOLS      tools that wait for a human, comma-separated [book_hotel]
              LEASE_SECONDS, MAX_ATTEMPTS [30, 3]
              STATEMENT_TIMEOUT_S [30]
              LOG_LEVEL           [info]
            Pending migrations are applied first unless --no-migrate is given.
            """
    )

    @Flag(name: .customLong("migrate"), inversion: .prefixedNo, help: "Apply pending migrations before serving.")
    var migrate = true

    func run() async throws {
        let configuration: AgentdConfiguration
        do {
            configuration = try AgentdConfiguration(environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError("\(error)")
        }
        var logger = Logger(label: "agentd")
        logger.logLevel = configuration.logLevel
        if migrate { try await Migrate.apply(databaseURL: configuration.databaseURL, logger: logger) }
        let serverLogger = logger
        try await AgentdServer.run(configuration, logger: logger) { port in
            serverLogger.info("agentd listening", metadata: ["address": "http://\(configuration.host):\(port)"])
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Applies the schema migrations in sql/ that the database has not seen yet.",
        discussion: """
            Reads DATABASE_URL (default \(AgentdConfiguration.defaultDatabaseURL)) and the migrations from \
            AGENTD_SQL_DIR, or the sql/ folder found from the working directory or the executable. \
            Safe to run twice and from several processes at once.
            """
    )

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let applied = try await Self.apply(
            databaseURL: environment["DATABASE_URL"] ?? AgentdConfiguration.defaultDatabaseURL, logger: Logger(label: "agentd.migrate"))
        print(applied.isEmpty ? "schema is up to date" : "applied \(applied.map { "\($0.version)_\($0.name)" }.joined(separator: ", "))")
    }

    @discardableResult
    static func apply(databaseURL: String, logger: Logger) async throws -> [Migration] {
        guard let directory = Migrator.locateDirectory() else {
            throw ValidationError("cannot find the sql/ folder; set AGENTD_SQL_DIR")
        }
        let migrator = try Migrator(directory: directory)
        let pool = PostgresPool(configuration: .init(conninfo: databaseURL, size: 1))
        do {
            let applied = try await migrator.migrate(pool, logger: logger)
            await pool.shutdown()
            return applied
        } catch {
            await pool.shutdown()
            throw ValidationError("migration failed: \(String(reflecting: error))")
        }
    }
}
