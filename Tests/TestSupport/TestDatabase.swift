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

    /// Two at a time: the suite's tests all start at once, and their copies, each a few hundred
    /// milliseconds of the cluster's disk and CPU, would otherwise all run together and starve
    /// the tests already under way (the suite's deadlines were tuned with two at a time).
    static func admin(_ body: @escaping @Sendable (PostgresConnection) throws -> Void) async throws {
        let url = try adminURL()
        await adminSlots.acquire()
        do {
            try await offPool {
                let connection = try PostgresConnection.connect(url)
                defer { connection.close() }
                try body(connection)
            }
        } catch {
            await adminSlots.release()
            throw error
        }
        await adminSlots.release()
    }

    private static let adminSlots = Slots(2)

    /// A counting semaphore for async callers.
    actor Slots {
        private var free: Int
        private var waiting: [CheckedContinuation<Void, Never>] = []
        init(_ count: Int) { free = count }

        func acquire() async {
            if free > 0 {
                free -= 1
                return
            }
            await withCheckedContinuation { waiting.append($0) }
        }

        func release() {
            if waiting.isEmpty { free += 1 } else { waiting.removeFirst().resume() }
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
