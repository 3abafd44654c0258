import Foundation
import Postgres
import Testing
import TestSupport

private struct Payload: Codable, Equatable, Sendable {
    var name: String
    var tags: [String]
    var nested: [String: Int]
}

@Suite("libpq connection")
struct ConnectionTests {
    let url: String

    init() async throws {
        url = try await TestDatabase.empty()
    }

    func connect() throws -> PostgresConnection {
        try PostgresConnection.connect(url)
    }

    @Test("every parameter type makes the round trip through a typed table")
    func roundTrip() throws {
        let connection = try connect()
        defer { connection.close() }
        try connection.execute("""
            CREATE TABLE samples (
                id serial PRIMARY KEY, s text, i bigint, i64 bigint, d double precision, b boolean,
                t timestamptz, u uuid, j jsonb, raw jsonb
            )
            """)
        let megabyte = String(repeating: "长文本 long text 🚀 ", count: 1 << 20 / 24)
        let strings = [
            "你会使用工具来帮助用户。", "emoji 👩‍💻🎉 and ZWJ", megabyte, "",
            "it's \"quoted\" \\ back'slash'; DROP TABLE samples; --", "$1 $2 ? %s {}",
        ]
        let date = Date(timeIntervalSince1970: 1_764_000_000.123456)
        let uuid = UUID()
        let payload = Payload(name: "酒店", tags: ["a", "b\"c"], nested: ["x": 1])
        let json = try PostgresJSON(payload)
        let raw = PostgresJSON(rawBytes: Array(#"{"k": [1, 2, null], "s": "值"}"#.utf8))
        for string in strings {
            let row = try #require(
                try connection.query("""
                    INSERT INTO samples (s, i, i64, d, b, t, u, j, raw)
                    VALUES (\(string), \(42), \(Int64.min), \(0.1), \(true), \(date), \(uuid), \(json), \(raw))
                    RETURNING *
                    """).first)
            #expect(try row.decode("s", as: String.self) == string)
            #expect(try row.decode("i", as: Int.self) == 42)
            #expect(try row.decode("i64", as: Int64.self) == Int64.min)
            #expect(try row.decode("d", as: Double.self) == 0.1)
            #expect(try row.decode("b", as: Bool.self) == true)
            #expect(abs(try row.decode("t", as: Date.self).timeIntervalSince1970 - date.timeIntervalSince1970) < 0.000_001)
            #expect(try row.decode("u", as: UUID.self) == uuid)
            #expect(try row.decode("j", as: PostgresJSON.self).decode(Payload.self) == payload)
            let rawBack = try row.decode("raw", as: PostgresJSON.self)
            #expect(String(decoding: rawBack.bytes, as: UTF8.self) == #"{"k": [1, 2, null], "s": "值"}"#)
        }
        // The table survived the value that looks like an injection.
        #expect(try connection.query("SELECT count(*) AS n FROM samples").first?.decode("n", as: Int.self) == strings.count)

        // Empty string and NULL stay apart.
        let none: String? = nil
        let row = try #require(try connection.query("SELECT \("") AS empty, \(none) AS missing").first)
        #expect(try row.decode("empty", as: String?.self) == "")
        #expect(try row.decode("missing", as: String?.self) == nil)
        #expect(try row.isNull("missing"))

        // Floats at their edges.
        for value in [Double.infinity, -Double.infinity, Double.greatestFiniteMagnitude, Double.leastNonzeroMagnitude, -0.0, 1.0 / 3.0] {
            let back = try connection.query("SELECT \(value)::float8 AS v").first?.decode("v", as: Double.self)
            #expect(back == value)
        }
        let nan = try connection.query("SELECT \(Double.nan)::float8 AS v").first?.decode("v", as: Double.self)
        #expect(nan?.isNaN == true)

        // Typed NULLs of every kind.
        let nullInt: Int? = nil, nullDate: Date? = nil, nullUUID: UUID? = nil, nullBool: Bool? = nil
        let nulls = try #require(
            try connection.query("INSERT INTO samples (i, t, u, b) VALUES (\(nullInt), \(nullDate), \(nullUUID), \(nullBool)) RETURNING i, t, u, b").first)
        #expect(try nulls.decode("i", as: Int?.self) == nil)
        #expect(try nulls.decode("t", as: Date?.self) == nil)
        #expect(try nulls.decode("u", as: UUID?.self) == nil)
        #expect(try nulls.decode("b", as: Bool?.self) == nil)
    }

    @Test("a text array binds as one parameter")
    func textArray() throws {
        let connection = try connect()
        defer { connection.close() }
        let names = ["a", "b\"c", "d\\e", "", "中文"]
        let rows = try connection.query("SELECT unnest(\(names)) AS name").rows
        #expect(try rows.map { try $0.decode("name", as: String.self) } == names)
    }

    @Test("a fragment's placeholders are renumbered after the outer query's")
    func fragments() throws {
        let connection = try connect()
        defer { connection.close() }
        let inner: PostgresQuery = "SELECT \(2) AS a, \("x") AS b"
        let outer: PostgresQuery = "SELECT \(40) + f.a AS sum, f.b || \("y") AS text FROM (\(fragment: inner)) AS f"
        #expect(outer.sql == "SELECT $1 + f.a AS sum, f.b || $2 AS text FROM (SELECT $3 AS a, $4 AS b) AS f")
        let row = try #require(try connection.query(outer).first)
        #expect(try row.decode("sum", as: Int.self) == 42)
        #expect(try row.decode("text", as: String.self) == "xy")
    }

    @Test("fragments renumber two-digit placeholders, keep other text byte for byte, and nest")
    func fragmentRenumbering() throws {
        var inner: PostgresQuery = "SELECT '名前 ü' AS label"
        for value in 1...11 { inner = "\(fragment: inner), \(value) AS v\(unsafeSQL: String(value))" }
        #expect(inner.sql.hasSuffix("$10 AS v10, $11 AS v11"))
        let outer: PostgresQuery = "WITH a AS (SELECT \("x") AS x), b AS (\(fragment: inner)) SELECT \(fragment: "\(7) AS seven")"
        #expect(outer.binds.count == 13)
        #expect(outer.sql.hasPrefix("WITH a AS (SELECT $1 AS x), b AS (SELECT '名前 ü' AS label, $2 AS v1, $3 AS v2"))
        #expect(outer.sql.hasSuffix("$11 AS v10, $12 AS v11) SELECT $13 AS seven"))
        let connection = try connect()
        defer { connection.close() }
        let row = try #require(try connection.query("SELECT label, v11 FROM (\(fragment: inner)) AS i WHERE \(1) = 1").first)
        #expect(try row.decode("label", as: String.self) == "名前 ü")
        #expect(try row.decode("v11", as: Int.self) == 11)
    }

    @Test("decoding errors name the column and the types")
    func decodingErrors() throws {
        let connection = try connect()
        defer { connection.close() }
        let row = try #require(try connection.query("SELECT 'x'::text AS word, NULL::int AS nothing").first)
        let wrongType = #expect(throws: PostgresError.self) { try row.decode("word", as: Int.self) }
        #expect(wrongType?.code == .decoding)
        #expect(wrongType?.message.contains("\"word\"") == true)
        #expect(wrongType?.message.contains("text") == true)
        #expect(wrongType?.message.contains("Int") == true)
        let null = #expect(throws: PostgresError.self) { try row.decode("nothing", as: Int.self) }
        #expect(null?.message.contains("\"nothing\"") == true)
        let missing = #expect(throws: PostgresError.self) { try row.decode("absent", as: String.self) }
        #expect(missing?.message.contains("\"absent\"") == true)
    }

    @Test("server errors carry SQLSTATE and the constraint name")
    func serverErrors() throws {
        let connection = try connect()
        defer { connection.close() }
        try connection.execute("CREATE TABLE people (name text CONSTRAINT people_name_key UNIQUE)")
        try connection.query("INSERT INTO people VALUES (\("ada"))")
        let unique = #expect(throws: PostgresError.self) { try connection.query("INSERT INTO people VALUES (\("ada"))") }
        #expect(unique?.sqlState == "23505")
        #expect(unique?.isUniqueViolation == true)
        #expect(unique?.constraint == "people_name_key")
        #expect(unique?.detail?.contains("ada") == true)
        #expect(unique?.isConnectionFailure == false)
        // The generic description keeps server text out of anything that prints it.
        #expect(unique.map { "\($0)" }?.contains("ada") == false)

        let syntax = #expect(throws: PostgresError.self) { try connection.query("SELEC 1") }
        #expect(syntax?.sqlState == "42601")
        #expect(syntax?.code == .server)

        // The connection stays usable after errors.
        #expect(try connection.query("SELECT 1 AS one").first?.decode("one", as: Int.self) == 1)
    }

    @Test("a value with a NUL character is refused before it reaches the server")
    func nulCharacter() throws {
        let connection = try connect()
        defer { connection.close() }
        let error = #expect(throws: PostgresError.self) { try connection.query("SELECT \("a\u{0}b") AS v") }
        #expect(error?.code == .encoding)
        #expect(try connection.query("SELECT 1 AS one").count == 1)
    }

    @Test("a throwing transaction leaves nothing behind; a returning one commits")
    func transactions() throws {
        struct Boom: Error {}
        let connection = try connect()
        defer { connection.close() }
        try connection.execute("CREATE TABLE ledger (entry text)")
        #expect(throws: Boom.self) {
            try connection.withTransaction { connection in
                try connection.query("INSERT INTO ledger VALUES (\("lost"))")
                throw Boom()
            }
        }
        try connection.withTransaction { connection in
            try connection.query("INSERT INTO ledger VALUES (\("kept"))")
        }
        // A statement error that the body swallowed still aborts the transaction: COMMIT says so.
        let aborted = #expect(throws: PostgresError.self) {
            try connection.withTransaction { connection in
                try connection.query("INSERT INTO ledger VALUES (\("also lost"))")
                _ = try? connection.query("SELECT 1/0")
            }
        }
        #expect(aborted?.sqlState == "25P02")
        let entries = try connection.query("SELECT entry FROM ledger").rows.map { try $0.decode("entry", as: String.self) }
        #expect(entries == ["kept"])
    }

    @Test("a pipelined transaction commits its statements together, each seeing the ones before it, and returns their results in order")
    func pipelinedTransaction() throws {
        let connection = try connect()
        let listener = try connect()
        defer {
            connection.close()
            listener.close()
        }
        try connection.execute("CREATE TABLE ledger (id int PRIMARY KEY, entry text)")
        try listener.listen("ledger")
        let results = try connection.pipelinedTransaction([
            "INSERT INTO ledger VALUES (1, \("one")) RETURNING txid_current() AS txid, pg_notify('ledger', 'same')",
            "INSERT INTO ledger SELECT 2, entry || \("+two") FROM ledger WHERE id = 1 RETURNING txid_current() AS txid, pg_notify('ledger', 'same')",
            "SELECT count(*) AS rows, txid_current() AS txid FROM ledger",
        ])
        #expect(results.count == 3)
        let txids = try results.map { try $0.rows[0].decode("txid", as: Int64.self) }
        #expect(Set(txids).count == 1)
        #expect(results[1].rows.count == 1)
        #expect(try results[2].rows[0].decode("rows", as: Int.self) == 2)
        #expect(try connection.query("SELECT entry FROM ledger WHERE id = 2").rows[0].decode("entry", as: String.self) == "one+two")
        // One commit, so one delivery of a notification sent twice with the same payload.
        #expect(try listener.waitForNotifications(timeout: .seconds(5)).map(\.payload) == ["same"])
        #expect(try listener.waitForNotifications(timeout: .milliseconds(200)).isEmpty)
        // The connection is back to normal use: plain statements and transactions work.
        #expect(try connection.query("SELECT 1 AS one").rows[0].decode("one", as: Int.self) == 1)
        #expect(connection.isReusable())
    }

    @Test("a pipelined transaction with a failing statement rolls back whole, names the statement, and leaves the connection usable")
    func pipelinedTransactionFailure() throws {
        let connection = try connect()
        defer { connection.close() }
        try connection.execute("CREATE TABLE ledger (id int PRIMARY KEY, entry text)")
        try connection.query("INSERT INTO ledger VALUES (1, 'kept')")
        for (statements, failing) in [
            (["INSERT INTO ledger VALUES (2, 'lost')", "INSERT INTO ledger VALUES (1, 'duplicate')", "INSERT INTO ledger VALUES (3, 'skipped')"] as [PostgresQuery], 1),
            (["INSERT INTO ledger VALUES (4, 'lost')", "SELECT 1/0 AS boom"], 1),
            (["SELECT nonsense FROM nowhere"], 0),
        ] {
            let failure = #expect(throws: PostgresConnection.PipelineFailure.self) { try connection.pipelinedTransaction(statements) }
            #expect(failure?.index == failing)
            #expect(failure?.error.sqlState != nil)
            #expect(connection.isReusable())
            #expect(try connection.query("SELECT count(*) AS rows FROM ledger").rows[0].decode("rows", as: Int.self) == 1)
        }
        let duplicate = try #require(try? connection.pipelinedTransaction(["SELECT 1"]))
        #expect(duplicate.count == 1)
        // A NUL in a parameter is refused before anything is sent, as that statement's failure.
        let unbindable = #expect(throws: PostgresConnection.PipelineFailure.self) {
            try connection.pipelinedTransaction(["SELECT 1", "SELECT \("a\u{0}b")::text AS v"])
        }
        #expect(unbindable?.index == 1)
        #expect(unbindable?.error.code == .encoding)
        #expect(try connection.query("SELECT 2 AS two").rows[0].decode("two", as: Int.self) == 2)
    }

    @Test("pipelined reads answer each statement in order in one round trip; a failing one fails alone")
    func pipelinedReads() throws {
        let connection = try connect()
        defer { connection.close() }
        try connection.execute("CREATE TABLE ledger (id int PRIMARY KEY, entry text); INSERT INTO ledger VALUES (1, 'one'), (2, 'two')")
        let good = try connection.pipelinedReads([
            "SELECT entry FROM ledger WHERE id = \(1)", "SELECT count(*) AS rows FROM ledger", "SELECT entry FROM ledger WHERE id = \(2)",
        ])
        #expect(try good.map { try $0.get().rows.count } == [1, 1, 1])
        #expect(try good[0].get().rows[0].decode("entry", as: String.self) == "one")
        #expect(try good[1].get().rows[0].decode("rows", as: Int.self) == 2)
        #expect(try good[2].get().rows[0].decode("entry", as: String.self) == "two")
        // Refused at execution (prepared fine), at preparation, and at binding: each fails alone.
        let mixed = try connection.pipelinedReads([
            "SELECT 1 / (\(0) - 0) AS boom", "SELECT entry FROM ledger WHERE id = \(2)", "SELECT nonsense FROM nowhere",
            "SELECT \("a\u{0}b")::text AS v", "SELECT count(*) AS rows FROM ledger",
        ])
        func failed(_ result: Result<PostgresResult, PostgresError>) -> PostgresError? {
            if case .failure(let error) = result { return error }
            return nil
        }
        #expect(failed(mixed[0])?.sqlState == "22012")
        #expect(try mixed[1].get().rows[0].decode("entry", as: String.self) == "two")
        #expect(failed(mixed[2])?.sqlState == "42P01")
        #expect(failed(mixed[3])?.code == .encoding)
        #expect(try mixed[4].get().rows[0].decode("rows", as: Int.self) == 2)
        #expect(connection.isReusable())
        #expect(try connection.query("SELECT 3 AS three").rows[0].decode("three", as: Int.self) == 3)
    }

    @Test("a pipelined transaction whose backend is terminated before its commit fails, as a connection failure, with nothing written")
    func pipelinedTransactionLostConnection() throws {
        let connection = try connect()
        let killer = try connect()
        defer {
            connection.close()
            killer.close()
        }
        try connection.execute("CREATE TABLE ledger (id int PRIMARY KEY)")
        let statements: [PostgresQuery] = ["INSERT INTO ledger VALUES (\(1))", "INSERT INTO ledger VALUES (\(2) + 1)"]
        // Prepared by a first run, so that the second's statements go out in the pipeline itself.
        _ = try connection.pipelinedTransaction(statements)
        try killer.query("SELECT pg_terminate_backend(\(Int(connection.backendPID))::int) AS killed")
        // The server ends the session at the first statement, before COMMIT: a failure to replay, as a connection failure.
        let failure = #expect(throws: PostgresConnection.PipelineFailure.self) { try connection.pipelinedTransaction(statements) }
        #expect(failure?.error.isConnectionFailure == true)
        #expect(!connection.isReusable())
        #expect(try killer.query("SELECT count(*) AS rows FROM ledger").rows[0].decode("rows", as: Int.self) == 2)
    }

    @Test("NOTIFY reaches a LISTENing connection with its payload; an idle wait ends at its timeout")
    func listenNotify() throws {
        let listener = try connect()
        let sender = try connect()
        defer {
            listener.close()
            sender.close()
        }
        let channel = "agentd tasks \"odd\" name"
        try listener.listen(channel)

        let clock = ContinuousClock()
        let start = clock.now
        let nothing = try listener.waitForNotifications(timeout: .milliseconds(300))
        let waited = clock.now - start
        #expect(nothing.isEmpty)
        #expect(waited >= .milliseconds(300))
        #expect(waited < .seconds(5))

        try sender.notify(channel, payload: "任务 42 'payload'")
        let received = try listener.waitForNotifications(timeout: .seconds(5))
        #expect(received.map(\.payload) == ["任务 42 'payload'"])
        #expect(received.first?.channel == channel)
        #expect(received.first?.senderPID == sender.backendPID)

        // A notification inside a rolled-back transaction is never delivered.
        struct Abort: Error {}
        _ = try? sender.withTransaction { connection in
            try connection.notify(channel, payload: "rolled back")
            throw Abort()
        }
        try sender.notify(channel, payload: "after")
        #expect(try listener.waitForNotifications(timeout: .seconds(5)).map(\.payload) == ["after"])

        try listener.unlisten(channel)
        try sender.notify(channel, payload: "unheard")
        #expect(try listener.waitForNotifications(timeout: .milliseconds(200)).isEmpty)
    }

    @Test("a wake-up descriptor ends a wait early")
    func wakeDescriptor() throws {
        let listener = try connect()
        defer { listener.close() }
        try listener.listen("nothing")
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        defer {
            close(descriptors[0])
            close(descriptors[1])
        }
        var byte: UInt8 = 1
        #expect(write(descriptors[1], &byte, 1) == 1)
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try listener.waitForNotifications(timeout: .seconds(30), wakeDescriptor: descriptors[0]).isEmpty)
        #expect(clock.now - start < .seconds(10))
    }

    @Test("statement_timeout ends a long statement with SQLSTATE 57014")
    func statementTimeout() throws {
        let connection = try PostgresConnection.connect(url, settings: .init(statementTimeout: .milliseconds(200)))
        defer { connection.close() }
        let error = #expect(throws: PostgresError.self) { try connection.query("SELECT pg_sleep(5)") }
        #expect(error?.sqlState == "57014")
        #expect(try connection.query("SELECT 1 AS one").count == 1)
    }

    @Test("connection failures say why and never echo the password")
    func connectionFailure() throws {
        let refused = #expect(throws: PostgresError.self) {
            try PostgresConnection.connect("postgres://someone:hunter2-secret@127.0.0.1:1/nowhere?connect_timeout=2")
        }
        #expect(refused?.code == .connectionFailed)
        #expect(refused?.isConnectionFailure == true)
        #expect(refused?.message.isEmpty == false)
        #expect(refused.map { String(reflecting: $0) }?.contains("hunter2-secret") == false)

        let garbage = #expect(throws: PostgresError.self) { try PostgresConnection.connect("postgres://a:hunter2@host:notaport/x") }
        #expect(garbage.map { String(reflecting: $0) }?.contains("hunter2") == false)

        let missingDatabase = #expect(throws: PostgresError.self) {
            try PostgresConnection.connect(try TestDatabase.url(database: "no_such_database"))
        }
        #expect(missingDatabase?.message.contains("no_such_database") == true)
    }

    @Test("a closed connection fails cleanly, and closing twice is harmless")
    func closedConnection() throws {
        let connection = try connect()
        connection.close()
        connection.close()
        #expect(connection.isClosed)
        #expect(!connection.isReusable())
        let error = #expect(throws: PostgresError.self) { try connection.query("SELECT 1") }
        #expect(error?.code == .connectionClosed)
    }
}
