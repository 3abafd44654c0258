import AgentKit
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
        subcommands: [Serve.self, Migrate.self, Keys.self, Report.self]
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serves the HTTP API and runs agent tasks (dispatcher and worker slots) in one process.",
        discussion: "Configuration comes from the environment (defaults in brackets; the README's table):\n"
            + AgentdConfiguration.variablesHelp + "\nPending migrations are applied first unless --no-migrate is given."
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
        if configuration.logFormat == .json {
            let level = configuration.logLevel
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
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

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Creates, lists and revokes API keys.",
        discussion: "Reads DATABASE_URL (and DB_ROLE) like serve. A key is printed once, at creation; only its hash is stored.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Creates a key and prints it once.")
        @Option(help: "The tenant the key belongs to (created if new).") var tenant: String
        @Option(help: "Limit the key to this user of the tenant.") var user: String?
        @Flag(help: "An operator key: /system/info covers every tenant.") var admin = false
        @Option(help: "A name to recognise the key by.") var name: String?
        @Option(help: "Requests per second allowed, 0.01 to 100000 (429 beyond; per process).") var rate: Double?
        @Option(help: "Tasks queued or running at once allowed, 1 to 1000000 (429 beyond).") var maxInFlight: Int?

        func validate() throws {
            for (label, value) in [("--tenant", tenant), ("--user", user ?? "x")] {
                if let problem = Identifier.problem(with: value, field: label) { throw ValidationError(problem) }
            }
            if let problem = KeyLimits.problem(requestsPerSecond: rate, maxTasksInFlight: maxInFlight) { throw ValidationError(problem) }
        }

        func run() async throws {
            let created = try await Keys.withStore { store in
                try await store.create(
                    tenantID: tenant, userID: user, isAdmin: admin, name: name, requestsPerSecond: rate, maxTasksInFlight: maxInFlight)
            }
            print(created.key)
            FileHandle.standardError.write(Data("key \(created.record.keyID) for tenant \(tenant)\(user.map { ", user \($0)" } ?? ""): store it now, it is not shown again\n".utf8))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists keys (never their secrets).")
        func run() async throws {
            let keys = try await Keys.withStore { try await $0.list() }
            print("key_id\ttenant\tuser\tadmin\tname\trate\tmax_in_flight\tcreated\trevoked")
            for key in keys {
                let created = Date(timeIntervalSince1970: key.createdAt).formatted(.iso8601)
                let revoked = key.revokedAt.map { Date(timeIntervalSince1970: $0).formatted(.iso8601) } ?? "-"
                print(
                    [key.keyID, key.tenantID, key.userID ?? "*", key.isAdmin ? "yes" : "no", key.name ?? "-",
                     key.requestsPerSecond.map { "\($0)" } ?? "-", key.maxTasksInFlight.map { "\($0)" } ?? "-", created, revoked]
                        .joined(separator: "\t"))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revokes a key; it stops working on its next request.")
        @Argument(help: "The key's id (the part after agentd_, as `keys list` shows it).") var keyID: String
        func run() async throws {
            guard try await Keys.withStore({ try await $0.revoke(keyID: keyID) }) else {
                throw ValidationError("no active key \(keyID)")
            }
            print("revoked \(keyID)")
        }
    }

    static func withStore<T: Sendable>(_ body: (KeyStore) async throws -> T) async throws -> T {
        try await withServicePool { try await body(KeyStore(pool: $0)) }
    }
}

/// A one-connection pool on DATABASE_URL as DB_ROLE (as `serve` connects), for the commands
/// that run one or two statements, closed when `body` returns.
func withServicePool<T: Sendable>(_ body: (PostgresPool) async throws -> T) async throws -> T {
    let configuration: AgentdConfiguration
    do {
        configuration = try AgentdConfiguration(environment: ProcessInfo.processInfo.environment)
    } catch {
        throw ValidationError("\(error)")
    }
    let pool = PostgresPool(
        configuration: .init(conninfo: configuration.databaseURL, size: 1, connectionSettings: .init(role: configuration.dbRole)))
    do {
        let result = try await body(pool)
        await pool.shutdown()
        return result
    } catch {
        await pool.shutdown()
        throw error
    }
}
