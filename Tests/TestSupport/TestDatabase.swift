import Foundation
import Postgres
import Store

/// Databases for tests on the cluster that `make test` starts (`DATABASE_URL`).
/// The repository's migrations are applied once into a template; every test that asks gets
/// its own copy (`CREATE DATABASE … TEMPLATE …`), so tests run in parallel without sharing rows.
public enum TestDatabase {
    public struct MissingURL: Error, CustomStringConvertible {
        public var description: String { "DATABASE_URL is not set: run the tests with `make test`" }
    }

    /// The URL of the cluster's maintenance database.
    public static func adminURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else { throw MissingURL() }
        return url
    }

    /// The same server, another database.
    public static func url(database: String) throws -> String {
        guard var components = URLComponents(string: try adminURL()) else { throw MissingURL() }
        components.path = "/" + database
        guard let url = components.string else { throw MissingURL() }
        return url
    }

    /// A new, empty database (no migrations).
    public static func empty() async throws -> String {
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await admin { try $0.execute("CREATE DATABASE \(name)") }
        return try url(database: name)
    }

    /// A new database with every migration in sql/ applied.
    public static func migrated() async throws -> String {
        try await template.ready()
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await admin { try $0.execute("CREATE DATABASE \(name) TEMPLATE \(Template.name)") }
        return try url(database: name)
    }

    /// The repository's sql/ folder, found from this source file.
    public static var sqlDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("sql", isDirectory: true)
    }

    static func admin(_ body: @escaping @Sendable (PostgresConnection) throws -> Void) async throws {
        let url = try adminURL()
        try await offPool {
            let connection = try PostgresConnection.connect(url)
            defer { connection.close() }
            try body(connection)
        }
    }

    private static let template = Template()

    private actor Template {
        static let name = "agentd_template"
        private var preparing: Task<Void, any Error>?

        func ready() async throws {
            if preparing == nil {
                preparing = Task {
                    try await TestDatabase.admin { connection in
                        try connection.execute("DROP DATABASE IF EXISTS \(Template.name)")
                        try connection.execute("CREATE DATABASE \(Template.name)")
                    }
                    let pool = PostgresPool(configuration: .init(conninfo: try TestDatabase.url(database: Template.name), size: 1))
                    do {
                        try await Migrator(directory: TestDatabase.sqlDirectory).migrate(pool)
                        await pool.shutdown()
                    } catch {
                        await pool.shutdown()
                        throw error
                    }
                }
            }
            try await preparing?.value
        }
    }
}
