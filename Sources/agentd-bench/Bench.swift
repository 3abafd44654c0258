import ArgumentParser
import Foundation
import Logging
import Postgres
import Store

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agentd-bench",
        abstract: "agentd's benchmarks. Each one creates its own databases on the server at DATABASE_URL.",
        subcommands: [ServiceBench.self, MemoryBench.self, ModelServerCommand.self, HopBench.self, FailoverBench.self]
    )
}

/// Helpers for databases the benchmarks create for themselves.
enum BenchDatabase {
    static func adminURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            throw ValidationError("DATABASE_URL is not set; run through `make bench` or `make bench-memory`, which start a throwaway cluster")
        }
        return url
    }

    /// Drops and creates `name`, migrates it, and returns its URL.
    static func fresh(_ name: String) async throws -> String {
        let admin = try adminURL()
        guard var components = URLComponents(string: admin) else { throw ValidationError("DATABASE_URL must be a postgres:// URL") }
        try await Task.detached {
            let connection = try PostgresConnection.connect(admin)
            defer { connection.close() }
            try connection.execute("DROP DATABASE IF EXISTS \(name)")
            try connection.execute("CREATE DATABASE \(name)")
        }.value
        components.path = "/" + name
        guard let url = components.string else { throw ValidationError("cannot build the URL of \(name)") }
        guard let directory = Migrator.locateDirectory() else { throw ValidationError("cannot find sql/; set AGENTD_SQL_DIR") }
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        try await Migrator(directory: directory).migrate(pool, logger: logger)
        await pool.shutdown()
        return url
    }
}

/// Percentiles of a sample, in the sample's unit.
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))
    return sorted[rank]
}

extension Duration {
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
