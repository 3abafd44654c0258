import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite("migrations")
struct MigratorTests {
    /// Migrations whose second application would be visible: each inserts a row.
    static let counting = [
        Migration(version: 1, name: "first", sql: "CREATE TABLE applied (file text); INSERT INTO applied VALUES ('first');"),
        Migration(version: 2, name: "second", sql: "INSERT INTO applied VALUES ('second');"),
        Migration(version: 3, name: "third", sql: "INSERT INTO applied VALUES ('third'); CREATE INDEX ON applied (file);"),
    ]

    func applied(_ url: String) throws -> [String] {
        let connection = try PostgresConnection.connect(url)
        defer { connection.close() }
        return try connection.query("SELECT file FROM applied ORDER BY file").rows.map { try $0.decode("file", as: String.self) }
    }

    @Test("twice in a row applies each file exactly once")
    func twice() async throws {
        let url = try await TestDatabase.empty()
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let migrator = Migrator(migrations: Self.counting)
        #expect(try await migrator.migrate(pool).map(\.version) == [1, 2, 3])
        #expect(try await migrator.migrate(pool).isEmpty)
        #expect(try applied(url) == ["first", "second", "third"])
        await pool.shutdown()
    }

    @Test("from two connections at once applies each file exactly once")
    func concurrently() async throws {
        let url = try await TestDatabase.empty()
        let first = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let second = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let migrator = Migrator(migrations: Self.counting)
        async let a = migrator.migrate(first)
        async let b = migrator.migrate(second)
        let (ranA, ranB) = try await (a, b)
        #expect(ranA.count + ranB.count == 3)
        #expect(try applied(url) == ["first", "second", "third"])
        await first.shutdown()
        await second.shutdown()
    }

    @Test("a failing migration rolls back whole and is not recorded")
    func failing() async throws {
        let url = try await TestDatabase.empty()
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let broken = Self.counting + [Migration(version: 4, name: "broken", sql: "INSERT INTO applied VALUES ('fourth'); SELEC oops;")]
        await #expect(throws: PostgresError.self) { try await Migrator(migrations: broken).migrate(pool) }
        #expect(try applied(url) == ["first", "second", "third"])
        let versions = try await pool.query("SELECT version FROM schema_migrations ORDER BY version").rows.map { try $0.decode("version", as: Int.self) }
        #expect(versions == [1, 2, 3])
        await pool.shutdown()
    }

    @Test("an applied migration that was edited is refused")
    func edited() async throws {
        let url = try await TestDatabase.empty()
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        try await Migrator(migrations: Self.counting).migrate(pool)
        var changed = Self.counting
        changed[1].sql = "INSERT INTO applied VALUES ('changed');"
        await #expect(throws: MigrationError.self) { try await Migrator(migrations: changed).migrate(pool) }
        await pool.shutdown()
    }

    @Test("the repository's sql/ folder migrates an empty database and creates the core tables")
    func repositorySchema() async throws {
        let url = try await TestDatabase.empty()
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let migrator = try Migrator(directory: TestDatabase.sqlDirectory)
        #expect(migrator.migrations.first?.version == 1)
        try await migrator.migrate(pool)
        let tables = try await pool.query("""
            SELECT table_name FROM information_schema.tables
            WHERE table_schema = 'public' ORDER BY table_name
            """).rows.map { try $0.decode("table_name", as: String.self) }
        for table in ["memories", "messages", "schema_migrations", "sessions", "tasks"] {
            #expect(tables.contains(table))
        }
        // Every tenant table has tenant_id first in its primary key.
        let leading = try await pool.query("""
            SELECT c.relname AS table_name, a.attname AS first_column
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
            WHERE i.indisprimary AND c.relname IN ('sessions', 'tasks', 'messages', 'memories')
            """).rows
        #expect(leading.count == 4)
        for row in leading { #expect(try row.decode("first_column", as: String.self) == "tenant_id") }
        await pool.shutdown()
    }

    @Test("the template copies carry the schema")
    func migratedCopy() async throws {
        let url = try await TestDatabase.migrated()
        let connection = try PostgresConnection.connect(url)
        defer { connection.close() }
        let count = try connection.query("SELECT count(*) AS n FROM schema_migrations").first?.decode("n", as: Int.self)
        #expect((count ?? 0) >= 1)
    }

    @Test("tasks stored before the event stream existed get the events their rows tell, numbered from 1")
    func eventBackfill() async throws {
        let url = try await TestDatabase.empty()
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 1))
        let all = try Migrator(directory: TestDatabase.sqlDirectory).migrations
        try await Migrator(migrations: all.filter { $0.version < 8 }).migrate(pool)
        try await pool.withConnection { connection in
            try connection.execute("""
                SET agentd.scope = 'system';
                INSERT INTO sessions (user_id, session_id) VALUES ('u1', 's1');
                INSERT INTO tasks (user_id, session_id, task_id, query, state, result) VALUES ('u1', 's1', 'done', 'q', 'completed', '{"messages": []}');
                INSERT INTO messages (user_id, session_id, task_id, position, type, content) VALUES
                    ('u1', 's1', 'done', 0, 'human', 'q'), ('u1', 's1', 'done', 1, 'ai', ''), ('u1', 's1', 'done', 2, 'tool', 'ok'),
                    ('u1', 's1', 'done', 3, 'ai', 'answer');
                INSERT INTO tasks (user_id, session_id, task_id, query, state, interrupt_data) VALUES ('u1', 's1', 'asks', 'q', 'interrupted', '{"x": 1}');
                INSERT INTO tasks (user_id, session_id, task_id, query) VALUES ('u1', 's1', 'waits', 'q');
                """)
        }
        try await Migrator(migrations: all).migrate(pool)
        let rows = try await pool.query("""
            SELECT t.task_id, t.events, string_agg(e.type || ':' || e.seq, ' ' ORDER BY e.seq) AS events_told
            FROM tasks t JOIN task_events e USING (tenant_id, user_id, session_id, task_id)
            GROUP BY t.task_id, t.events ORDER BY t.task_id
            """).rows
        let told = try rows.map { [try $0.decode("task_id", as: String.self), "\(try $0.decode("events", as: Int.self))", try $0.decode("events_told", as: String.self)] }
        #expect(told == [
            ["asks", "2", "task.queued:1 interrupt:2"],
            ["done", "5", "task.queued:1 message:2 tool.result:3 message:4 task.completed:5"],
            ["waits", "1", "task.queued:1"],
        ])
        await pool.shutdown()
    }
}
