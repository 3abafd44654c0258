import CLibPQ
import Foundation
import Synchronization

/// A message received through LISTEN.
public struct PostgresNotification: Sendable, Hashable {
    public var channel: String
    public var payload: String
    /// The backend that sent the NOTIFY.
    public var senderPID: Int32
}

/// One libpq connection. Every method blocks the calling thread on the network, so call it
/// from a thread of your own or through `PostgresPool`, never from an event loop or a
/// Swift concurrency task directly.
///
/// The handle is guarded by a mutex, so two threads can never be inside libpq on the same
/// connection at once; the pool additionally hands a connection to one caller at a time.
public final class PostgresConnection: Sendable {
    /// Session settings applied right after connecting.
    public struct Settings: Sendable {
        public var applicationName: String
        public var connectTimeoutSeconds: Int
        /// `statement_timeout`; nil keeps the server's default.
        public var statementTimeout: Duration?
        /// `idle_in_transaction_session_timeout`, so a stalled caller cannot hold locks forever.
        public var idleInTransactionTimeout: Duration?
        /// A role to `SET ROLE` to after connecting (one the login role is a member of).
        public var role: String?

        public init(
            applicationName: String = "agentd", connectTimeoutSeconds: Int = 5,
            statementTimeout: Duration? = .seconds(30), idleInTransactionTimeout: Duration? = .seconds(60), role: String? = nil
        ) {
            self.applicationName = applicationName
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.statementTimeout = statementTimeout
            self.idleInTransactionTimeout = idleInTransactionTimeout
            self.role = role
        }
    }

    private struct Handle: @unchecked Sendable {
        // Only touched inside `handle.withLock`.
        var pointer: OpaquePointer?
    }

    private let handle: Mutex<Handle>
    /// `PGcancel` is safe to use from another thread while a statement runs; it has its own lock
    /// so that cancelling never waits for the statement it cancels.
    private let cancelHandle: Mutex<Handle>
    /// The password from the conninfo, removed from any error text before it leaves this type.
    private let secret: String?
    /// Custom settings in force for the whole session (see `applyForSession`).
    private let sessionSettings = Mutex<[String: String]>([:])
    /// Statements prepared on this connection, by text and parameter types (see `query`).
    private let preparedStatements = Mutex<[PreparedKey: String]>([:])

    private struct PreparedKey: Hashable {
        var sql: String
        var types: [Oid]
    }

    /// More distinct statements than this run unprepared: the service has a few dozen, so
    /// only generated SQL would get here, and it should not grow the server's memory.
    static let maxPreparedStatements = 256
    public let backendPID: Int32

    // MARK: Connecting

    /// libpq settings agentd's connections get unless the conninfo says otherwise.
    ///
    /// - `target_session_attrs=read-write`: of several hosts (`postgres://h1,h2/db`), libpq takes
    ///   the one that accepts writes; after a failover, the next connection finds the new primary.
    ///   A PostgreSQL 14+ server reports whether it is writable as the session starts, so this
    ///   costs no round trip.
    /// - TCP keepalives: a host that vanishes without closing its connections (a machine lost, a
    ///   network cut) is noticed in about 25 s, not the kernel's two hours.
    /// - `tcp_user_timeout`: a statement sent to such a host fails after 20 s unacknowledged rather
    ///   than the kernel's 15 minutes of retransmissions.
    public static let defaultOptions: [(keyword: String, value: String)] = [
        ("target_session_attrs", "read-write"), ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
        ("tcp_user_timeout", "20000"),
    ]

    /// Connects with a URL (`postgres://user:pass@host:port/db?sslmode=…`, several hosts
    /// allowed: `postgres://h1:5432,h2:5432/db`) or a `key=value` conninfo string. A server that
    /// is a standby or read-only is refused (`connectionFailed`, SQLSTATE 25006), whatever the
    /// conninfo's `target_session_attrs`: agentd writes on every connection.
    public static func connect(_ conninfo: String, settings: Settings = Settings()) throws -> PostgresConnection {
        let secret = try Self.passwordIn(conninfo)
        // Our defaults come before the conninfo so the caller's values win; the encoding comes
        // after because the wrapper depends on UTF-8.
        let keywords = ["connect_timeout", "application_name"] + Self.defaultOptions.map(\.keyword) + ["dbname", "client_encoding"]
        let values = [String(settings.connectTimeoutSeconds), settings.applicationName] + Self.defaultOptions.map(\.value) + [conninfo, "UTF8"]
        let pointer = withCStringArray(keywords) { keywordPointers in
            withCStringArray(values) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let pointer else {
            throw PostgresError(code: .connectionFailed, message: "out of memory allocating a connection")
        }
        guard PQstatus(pointer) == CONNECTION_OK else {
            let message = redact(Self.errorMessage(pointer), secret: secret)
            PQfinish(pointer)
            throw PostgresError(code: .connectionFailed, message: message)
        }
        if Self.readOnly(pointer) {
            let server = Self.address(pointer)
            PQfinish(pointer)
            throw PostgresError(
                code: .connectionFailed, sqlState: PostgresError.SQLState.readOnlySQLTransaction,
                message: "the server at \(server) is a standby or read-only; agentd needs the primary")
        }
        // libpq prints NOTICEs to stderr by default; they are informational, and server text
        // has no place on our stderr.
        PQsetNoticeReceiver(pointer, { _, _ in }, nil)
        let connection = PostgresConnection(pointer: pointer, secret: secret)
        do {
            try connection.execute(Self.sessionSetup(settings))
            if let role = settings.role { try connection.execute("SET ROLE " + connection.escapeIdentifier(role)) }
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    private init(pointer: OpaquePointer, secret: String?) {
        handle = Mutex(Handle(pointer: pointer))
        cancelHandle = Mutex(Handle(pointer: PQgetCancel(pointer)))
        backendPID = PQbackendPID(pointer)
        self.secret = secret
    }

    deinit {
        close()
    }

    private static func sessionSetup(_ settings: Settings) -> String {
        // Fixed formats so that the text decoders see one shape of dates and floats.
        var sql = "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET extra_float_digits = 3;"
        if let timeout = settings.statementTimeout {
            sql += " SET statement_timeout = \(timeout.milliseconds);"
        }
        if let timeout = settings.idleInTransactionTimeout {
            sql += " SET idle_in_transaction_session_timeout = \(timeout.milliseconds);"
        }
        return sql
    }

    private static func passwordIn(_ conninfo: String) throws -> String? {
        try parsedOptions(conninfo)["password"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A URL's or conninfo's options as libpq reads them (`PQconninfoParse`), the ones it sets.
    static func parsedOptions(_ conninfo: String) throws -> [String: String] {
        var errorPointer: UnsafeMutablePointer<CChar>?
        guard let list = PQconninfoParse(conninfo, &errorPointer) else {
            throw PostgresError(code: .clientError, message: parseFailure(errorPointer))
        }
        return optionsFreeing(list)
    }

    /// The keywords and values of a libpq option array (`PQconninfoParse`, `PQconninfo`), which
    /// is freed here.
    private static func optionsFreeing(_ list: UnsafeMutablePointer<PQconninfoOption>) -> [String: String] {
        defer { PQconninfoFree(list) }
        var options: [String: String] = [:]
        var option = list
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { options[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        return options
    }

    /// libpq's reason a conninfo could not be read (freed here), without what it quotes: the part
    /// it could not read may be the password (`invalid percent-encoded token: "…"`).
    static func parseFailure(_ errorPointer: UnsafeMutablePointer<CChar>?) -> String {
        guard let errorPointer else { return "invalid connection string" }
        let reason = String(cString: errorPointer).trimmingCharacters(in: .whitespacesAndNewlines)
        PQfreemem(errorPointer)
        return "invalid connection string: " + reason.replacing(/"[^"]*"/, with: "\"…\"")
    }

    /// Closes the connection; later calls fail with `connectionClosed`. Safe to call twice.
    public func close() {
        cancelHandle.withLock { cancel in
            if let pointer = cancel.pointer { PQfreeCancel(pointer) }
            cancel.pointer = nil
        }
        handle.withLock { handle in
            if let pointer = handle.pointer { PQfinish(pointer) }
            handle.pointer = nil
        }
    }

    public var isClosed: Bool { handle.withLock { $0.pointer == nil } }

    /// True once the server says the session cannot write: it is a standby (`in_hot_standby`), or
    /// it was made read-only (`default_transaction_read_only`: pg_auto_failover keeps a standby it
    /// promotes read-only until the monitor confirms the promotion). PostgreSQL 14+ reports both as
    /// they change, before the next result of the session.
    public var isReadOnlySession: Bool {
        handle.withLock { handle in handle.pointer.map(Self.readOnly) ?? false }
    }

    static func readOnly(_ pointer: OpaquePointer) -> Bool {
        // Read on every release of a pooled connection: compared in place, no String made.
        func on(_ parameter: String) -> Bool { PQparameterStatus(pointer, parameter).map { strcmp($0, "on") == 0 } ?? false }
        return on("in_hot_standby") || on("default_transaction_read_only")
    }

    /// The host and port this connection reached, e.g. `127.0.0.1:5432`.
    public var serverAddress: String { handle.withLock { $0.pointer.map(Self.address) ?? "closed" } }

    static func address(_ pointer: OpaquePointer) -> String {
        PostgresTargets.server(PQhost(pointer).map { String(cString: $0) } ?? "?", PQport(pointer).map { String(cString: $0) } ?? "?")
    }

    /// The options in force for this connection (libpq's `PQconninfo`), the password left out.
    public var options: [String: String] {
        handle.withLock { handle in
            guard let pointer = handle.pointer, let list = PQconninfo(pointer) else { return [:] }
            var options = Self.optionsFreeing(list)
            options["password"] = nil
            return options
        }
    }

    /// Whether the connection can be handed to the next caller, decided without a round trip:
    /// it must be open, outside a transaction, and the server must not have spoken unprompted
    /// (a terminated backend sends its FATAL message and closes the socket).
    public func isReusable() -> Bool {
        handle.withLock { handle in
            // A session that became read-only is a primary demoted under it: the next caller
            // gets a new connection, which finds the new primary.
            guard let pointer = handle.pointer, PQstatus(pointer) == CONNECTION_OK,
                PQtransactionStatus(pointer) == PQTRANS_IDLE, !Self.readOnly(pointer)
            else { return false }
            var descriptor = pollfd(fd: PQsocket(pointer), events: Int16(POLLIN), revents: 0)
            return poll(&descriptor, 1, 0) == 0
        }
    }

    /// Asks the server to cancel the statement running on this connection, from any thread.
    public func cancelRunningStatement() {
        cancelHandle.withLock { cancel in
            guard let pointer = cancel.pointer else { return }
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(pointer, &buffer, Int32(buffer.count))
        }
    }

    // MARK: Statements

    /// Runs one statement with bound parameters (text format). Each statement is prepared on the
    /// connection the first time it runs there and executed by name afterwards: `make bench` found
    /// planning the service's statements anew on every call took two thirds of the server's time.
    @discardableResult
    public func query(_ query: PostgresQuery) throws -> PostgresResult {
        let bound = try BoundQuery(query)
        return try withOpenHandle { pointer in
            let name = try preparedName(bound.key, pointer: pointer)
            let result: OpaquePointer? = bound.withValues { values in
                if let name { return PQexecPrepared(pointer, name, Int32(bound.key.types.count), values, nil, nil, 0) }
                return PQexecParams(pointer, query.sql, Int32(bound.key.types.count), bound.key.types, values, nil, nil, 0)
            }
            return try consume(result, pointer: pointer)
        }
    }

    /// A query's parameters in libpq's text format: every value in one buffer, NUL-terminated.
    private struct BoundQuery {
        var key: PreparedKey
        var buffer: [UInt8] = []
        var offsets: [Int?] = []

        init(_ query: PostgresQuery) throws {
            guard query.binds.count <= Int(UInt16.max) else {
                throw PostgresError(code: .clientError, message: "too many parameters (\(query.binds.count))")
            }
            key = PreparedKey(sql: query.sql, types: query.binds.map { Oid($0.type.rawValue) })
            offsets.reserveCapacity(query.binds.count)
            for (index, bind) in query.binds.enumerated() {
                guard let bytes = bind.bytes else {
                    offsets.append(nil)
                    continue
                }
                if bytes.contains(0) {
                    throw PostgresError(
                        code: .encoding, message: "parameter $\(index + 1) contains a NUL character, which PostgreSQL text cannot hold")
                }
                offsets.append(buffer.count)
                buffer.append(contentsOf: bytes)
                buffer.append(0)
            }
        }

        func withValues<T>(_ body: ([UnsafePointer<CChar>?]) -> T) -> T {
            buffer.withUnsafeBufferPointer { bytes in
                let base = bytes.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }
                return body(offsets.map { offset in
                    guard let offset, let base else { return nil }
                    return base + offset
                })
            }
        }
    }

    /// Why a pipelined transaction rolled back: the statement that failed (nil: BEGIN or COMMIT)
    /// and its error. No statement of it took effect.
    public struct PipelineFailure: Error, Sendable {
        public var index: Int?
        public var error: PostgresError
    }

    /// Runs `queries` in one transaction sent in libpq's pipeline mode: BEGIN, the statements and
    /// COMMIT go out together and their results come back together, one round trip and one commit
    /// for all of them. Each statement sees what the ones before it wrote (read committed: each takes
    /// its own snapshot). When one fails, those after it are skipped and the whole transaction rolls
    /// back (`PipelineFailure`); a broken connection throws `PostgresError` (`connectionLost`), and
    /// then whether it committed is unknown, as for any statement.
    public func pipelinedTransaction(_ queries: [PostgresQuery]) throws -> [PostgresResult] {
        // A statement that cannot be bound fails alone, before anything is sent.
        var bound: [BoundQuery] = []
        for (index, query) in queries.enumerated() {
            do {
                bound.append(try BoundQuery(query))
            } catch let error as PostgresError {
                throw PipelineFailure(index: index, error: error)
            }
        }
        return try handle.withLock { handle in
            guard let pointer = handle.pointer else {
                throw PostgresError(code: .connectionClosed, message: "the connection is closed")
            }
            // Prepared first, one round trip each, once per connection: preparing inside the
            // pipeline would make a failed preparation abort it.
            var names: [String?] = []
            for (index, query) in bound.enumerated() {
                do {
                    names.append(try preparedName(query.key, pointer: pointer))
                } catch let error as PostgresError where error.code == .server {
                    throw PipelineFailure(index: index, error: error)
                }
            }
            guard PQenterPipelineMode(pointer) == 1 else { throw failure(pointer) }
            do {
                let results = try runPipeline(bound, names: names, pointer: pointer)
                guard PQexitPipelineMode(pointer) == 1 else { throw failure(pointer) }
                return results
            } catch {
                leavePipeline(&handle, pointer)
                throw error
            }
        }
    }

    /// Runs read-only `queries` sent together in pipeline mode: one round trip for all of them,
    /// each with its own snapshot, as if run one after another. They share one implicit
    /// transaction, so they are for reads; a statement that fails is that statement's `.failure`,
    /// and the ones after it, which the server then skipped, run again one at a time.
    public func pipelinedReads(_ queries: [PostgresQuery]) throws -> [Result<PostgresResult, PostgresError>] {
        var outcomes = [Result<PostgresResult, PostgresError>?](repeating: nil, count: queries.count)
        var sendable: [(index: Int, query: BoundQuery)] = []
        for (index, query) in queries.enumerated() {
            do {
                sendable.append((index, try BoundQuery(query)))
            } catch let error as PostgresError {
                outcomes[index] = .failure(error)
            }
        }
        let skipped: [Int] = try handle.withLock { handle in
            guard let pointer = handle.pointer else {
                throw PostgresError(code: .connectionClosed, message: "the connection is closed")
            }
            var names: [(index: Int, query: BoundQuery, name: String?)] = []
            for (index, query) in sendable {
                do {
                    names.append((index, query, try preparedName(query.key, pointer: pointer)))
                } catch let error as PostgresError where error.code == .server {
                    outcomes[index] = .failure(error)
                }
            }
            guard !names.isEmpty else { return [] }
            guard PQenterPipelineMode(pointer) == 1 else { throw failure(pointer) }
            do {
                for (_, query, name) in names {
                    guard send(query, name: name, pointer: pointer) else { throw failure(pointer) }
                }
                guard PQpipelineSync(pointer) == 1 else { throw failure(pointer) }
                var skipped: [Int] = []
                for (index, _, _) in names {
                    guard let result = PQgetResult(pointer) else { throw failure(pointer) }
                    if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                        PQclear(result)
                        skipped.append(index)
                    } else {
                        do {
                            outcomes[index] = .success(try consume(result, pointer: pointer))
                        } catch let error as PostgresError {
                            if error.isConnectionFailure || PQstatus(pointer) != CONNECTION_OK { throw error }
                            outcomes[index] = .failure(error)
                        }
                    }
                    if let extra = PQgetResult(pointer) {
                        PQclear(extra)
                        throw PostgresError(code: .clientError, message: "a pipelined statement returned more than one result")
                    }
                }
                guard let sync = PQgetResult(pointer) else { throw failure(pointer) }
                let syncStatus = PQresultStatus(sync)
                PQclear(sync)
                guard syncStatus == PGRES_PIPELINE_SYNC, PQexitPipelineMode(pointer) == 1 else { throw failure(pointer) }
                return skipped
            } catch {
                leavePipeline(&handle, pointer)
                throw error
            }
        }
        for index in skipped {
            do {
                outcomes[index] = .success(try query(queries[index]))
            } catch let error as PostgresError {
                outcomes[index] = .failure(error)
            }
        }
        return outcomes.map { $0 ?? .failure(PostgresError(code: .clientError, message: "a pipelined statement has no result")) }
    }

    /// Sends one statement of a pipeline, by its prepared name if it has one.
    private func send(_ query: BoundQuery, name: String?, pointer: OpaquePointer) -> Bool {
        query.withValues { values in
            if let name { return PQsendQueryPrepared(pointer, name, Int32(query.key.types.count), values, nil, nil, 0) }
            return PQsendQueryParams(pointer, query.key.sql, Int32(query.key.types.count), query.key.types, values, nil, nil, 0)
        } == 1
    }

    /// After a pipeline failed: leaves no pipeline and no transaction behind (a failed transaction
    /// block stays open until rolled back); a connection that cannot be brought back is closed.
    private func leavePipeline(_ handle: inout Handle, _ pointer: OpaquePointer) {
        if PQexitPipelineMode(pointer) != 1 || (PQtransactionStatus(pointer) != PQTRANS_IDLE && !rollBack(pointer)) {
            PQfinish(pointer)
            handle.pointer = nil
        }
    }

    private func rollBack(_ pointer: OpaquePointer) -> Bool {
        guard let result = PQexec(pointer, "ROLLBACK") else { return false }
        defer { PQclear(result) }
        return PQresultStatus(result) == PGRES_COMMAND_OK && PQtransactionStatus(pointer) == PQTRANS_IDLE
    }

    /// Sends the pipeline and reads its results: BEGIN's, each statement's, COMMIT's, then the sync.
    private func runPipeline(_ bound: [BoundQuery], names: [String?], pointer: OpaquePointer) throws -> [PostgresResult] {
        guard PQsendQueryParams(pointer, "BEGIN", 0, nil, nil, nil, nil, 0) == 1 else { throw failure(pointer) }
        for (query, name) in zip(bound, names) {
            guard send(query, name: name, pointer: pointer) else { throw failure(pointer) }
        }
        guard PQsendQueryParams(pointer, "COMMIT", 0, nil, nil, nil, nil, 0) == 1, PQpipelineSync(pointer) == 1 else {
            throw failure(pointer)
        }
        var results: [PostgresResult] = []
        results.reserveCapacity(bound.count)
        // The server's refusal of a statement (it rolls the transaction back), and a failure on this
        // side to read a result the server sent (which rolls nothing back).
        var refusal: PipelineFailure?
        var unreadable: PostgresError?
        var committed = false
        let commitCommand = bound.count + 1
        // Command 0 is BEGIN, 1...count the statements, count + 1 COMMIT.
        for command in 0...commitCommand {
            let statement = command >= 1 && command <= bound.count ? command - 1 : nil
            guard let result = PQgetResult(pointer) else { throw failure(pointer) }
            let status = PQresultStatus(result)
            switch status {
            case PGRES_PIPELINE_ABORTED:
                PQclear(result)
            case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
                let error = Self.error(from: result, pointer: pointer, secret: secret)
                PQclear(result)
                if error.isConnectionFailure || PQstatus(pointer) != CONNECTION_OK {
                    // The server ended the session at this command: before COMMIT, nothing of the
                    // transaction took effect; at COMMIT, whether it did is unknown.
                    guard command < commitCommand else { throw error }
                    throw PipelineFailure(index: statement, error: error)
                }
                if error.sqlState == nil {
                    if unreadable == nil { unreadable = error }
                } else if refusal == nil {
                    refusal = PipelineFailure(index: statement, error: error)
                }
            default:
                if statement != nil {
                    do {
                        results.append(try consume(result, pointer: pointer))
                    } catch let error as PostgresError {
                        if unreadable == nil { unreadable = error }
                    }
                } else {
                    // COMMIT of a transaction that already failed answers ROLLBACK rather than an error.
                    committed = command == commitCommand && String(cString: PQcmdStatus(result)) == "COMMIT"
                    PQclear(result)
                }
            }
            // Each command's results end with a null.
            if let extra = PQgetResult(pointer) {
                PQclear(extra)
                if PQstatus(pointer) != CONNECTION_OK { throw failure(pointer) }
                throw PostgresError(code: .clientError, message: "a pipelined statement returned more than one result")
            }
        }
        guard let sync = PQgetResult(pointer) else { throw failure(pointer) }
        let syncStatus = PQresultStatus(sync)
        PQclear(sync)
        guard syncStatus == PGRES_PIPELINE_SYNC else {
            if PQstatus(pointer) != CONNECTION_OK { throw failure(pointer) }
            throw PostgresError(code: .clientError, message: "the pipeline ended without its sync (status \(syncStatus.rawValue))")
        }
        if committed {
            // Committed, but a result could not be read here: an error, never a failure to replay.
            if let unreadable { throw unreadable }
            return results
        }
        throw refusal
            ?? PipelineFailure(
                index: nil, error: PostgresError(code: .server, sqlState: "25P02", message: "the transaction was aborted and rolled back"))
    }

    /// The name `key` is prepared under on this connection, preparing it now if it is new; nil
    /// once the connection holds `maxPreparedStatements`.
    private func preparedName(_ key: PreparedKey, pointer: OpaquePointer) throws -> String? {
        let (known, count) = preparedStatements.withLock { ($0[key], $0.count) }
        if let known { return known }
        guard count < Self.maxPreparedStatements else { return nil }
        let name = "agentd_\(count)"
        _ = try consume(PQprepare(pointer, name, key.sql, Int32(key.types.count), key.types), pointer: pointer)
        preparedStatements.withLock { $0[key] = name }
        return name
    }

    /// Runs a script of one or more statements without parameters (a migration file).
    /// The statements run in one implicit transaction unless the script has its own.
    public func execute(_ script: String) throws {
        guard !script.utf8.contains(0) else {
            throw PostgresError(code: .encoding, message: "the script contains a NUL character")
        }
        try withOpenHandle { pointer in
            _ = try consume(PQexec(pointer, script), pointer: pointer)
        }
    }

    /// Runs `body` in a transaction: commits when it returns, rolls back when it throws.
    /// The body's error is what the caller sees; a failed rollback closes the connection
    /// rather than hiding it.
    @discardableResult
    public func withTransaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try withTransaction(begin: "BEGIN", body)
    }

    private func withTransaction<T>(begin: String, _ body: (PostgresConnection) throws -> T) throws -> T {
        try execute(begin)
        let value: T
        do {
            value = try body(self)
        } catch {
            do {
                try execute("ROLLBACK")
            } catch {
                close()
            }
            throw error
        }
        let tag = try withOpenHandle { pointer in
            guard let result = PQexec(pointer, "COMMIT") else { throw failure(pointer) }
            defer { PQclear(result) }
            guard PQresultStatus(result) == PGRES_COMMAND_OK else {
                throw Self.error(from: result, pointer: pointer, secret: secret)
            }
            return String(cString: PQcmdStatus(result))
        }
        // COMMIT of a transaction that already failed answers ROLLBACK rather than an error.
        if tag == "ROLLBACK" {
            throw PostgresError(code: .server, sqlState: "25P02", message: "the transaction was aborted and rolled back")
        }
        return value
    }

    /// Makes `settings` hold for the session, so that statements outside a transaction block run
    /// under them. The connection remembers what it applied and sends only changes: for one
    /// tenant after another on the same connection, nothing at all. Applied outside any
    /// transaction, so no rollback can undo it behind the connection's back.
    public func applyForSession(_ settings: [(name: String, value: String)]) throws {
        // Compared by bytes, as the server would: Swift's == calls canonically equivalent values
        // equal, and a tenant "café" (NFC) must not keep the setting of "café" (NFD).
        let changed = sessionSettings.withLock { applied in
            settings.filter { setting in applied[setting.name].map { !$0.utf8.elementsEqual(setting.value.utf8) } ?? true }
        }
        guard !changed.isEmpty else { return }
        var query = PostgresQuery(unsafeSQL: "SELECT ")
        for (index, (name, value)) in changed.enumerated() {
            try Self.checkSettingName(name)
            query.sql += (index == 0 ? "" : ", ") + "set_config($\(2 * index + 1), $\(2 * index + 2), false)"
            query.binds += [PostgresBind(type: String.postgresType, text: name), PostgresBind(type: String.postgresType, text: value)]
        }
        try self.query(query)
        sessionSettings.withLock { applied in
            for (name, value) in changed { applied[name] = value }
        }
    }

    /// Whether every one of `settings` is in force for the session already (`applyForSession`
    /// would send nothing).
    public func hasSessionSettings(_ settings: [(name: String, value: String)]) -> Bool {
        sessionSettings.withLock { applied in
            settings.allSatisfy { setting in applied[setting.name].map { $0.utf8.elementsEqual(setting.value.utf8) } ?? false }
        }
    }

    private static func checkSettingName(_ name: String) throws {
        guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") }) else {
            throw PostgresError(code: .clientError, message: "invalid setting name \(name)")
        }
    }

    /// Runs `body` in a transaction that first sets each of `settings` with `SET LOCAL`, so
    /// they hold for this transaction only (custom settings such as `agentd.tenant_id`).
    /// Names must be setting names, never input; values are quoted as literals.
    @discardableResult
    public func withTransaction<T>(settings: [(name: String, value: String)], _ body: (PostgresConnection) throws -> T) throws -> T {
        var begin = "BEGIN;"
        for (name, value) in settings {
            try Self.checkSettingName(name)
            begin += " SET LOCAL \(name) = \(try escapeLiteral(value));"
        }
        return try withTransaction(begin: begin, body)
    }

    // MARK: LISTEN / NOTIFY

    public func listen(_ channel: String) throws {
        try execute("LISTEN " + escapeIdentifier(channel))
    }

    public func unlisten(_ channel: String) throws {
        try execute("UNLISTEN " + escapeIdentifier(channel))
    }

    public func notify(_ channel: String, payload: String = "") throws {
        try query("SELECT pg_notify(\(channel), \(payload))")
    }

    /// Waits until at least one notification has arrived, the timeout passes, or
    /// `wakeDescriptor` becomes readable. Sleeps in `poll(2)` on the connection's socket.
    public func waitForNotifications(timeout: Duration, wakeDescriptor: Int32? = nil) throws -> [PostgresNotification] {
        try waitForNotifications(timeout: timeout, wakeDescriptors: wakeDescriptor.map { [$0] } ?? [])
    }

    /// Notifications that arrived with the results of statements already run, without waiting
    /// or reading the socket: after a round trip, every notification the server sent before
    /// the statement's result.
    public func pendingNotifications() throws -> [PostgresNotification] {
        try withOpenHandle { pointer in Self.drainNotifications(pointer) }
    }

    /// `waitForNotifications`, woken by whichever of `wakeDescriptors` becomes readable first.
    public func waitForNotifications(timeout: Duration, wakeDescriptors: [Int32]) throws -> [PostgresNotification] {
        try withOpenHandle { pointer in
            var received = Self.drainNotifications(pointer)
            if !received.isEmpty { return received }
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: timeout)
            while true {
                let remaining = clock.now.duration(to: deadline)
                if remaining <= .zero { return [] }
                var descriptors = [pollfd(fd: PQsocket(pointer), events: Int16(POLLIN), revents: 0)]
                for wake in wakeDescriptors { descriptors.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0)) }
                let ready = poll(&descriptors, nfds_t(descriptors.count), Int32(clamping: max(1, remaining.milliseconds)))
                if ready < 0 {
                    if errno == EINTR { continue }
                    throw PostgresError(code: .connectionLost, message: "poll failed: \(String(cString: strerror(errno)))")
                }
                if descriptors.dropFirst().contains(where: { $0.revents != 0 }) { return [] }
                if descriptors[0].revents != 0 {
                    guard PQconsumeInput(pointer) == 1 else {
                        throw PostgresError(code: .connectionLost, message: redact(Self.errorMessage(pointer), secret: secret))
                    }
                    received = Self.drainNotifications(pointer)
                    if !received.isEmpty { return received }
                }
            }
        }
    }

    private static func drainNotifications(_ pointer: OpaquePointer) -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notify = PQnotifies(pointer) {
            received.append(
                PostgresNotification(
                    channel: String(cString: notify.pointee.relname),
                    payload: String(cString: notify.pointee.extra),
                    senderPID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
        return received
    }

    /// A string literal, quoted for this connection's encoding.
    public func escapeLiteral(_ literal: String) throws -> String {
        guard !literal.utf8.contains(0) else { throw PostgresError(code: .encoding, message: "the literal contains a NUL character") }
        return try withOpenHandle { pointer in
            guard let escaped = PQescapeLiteral(pointer, literal, literal.utf8.count) else {
                throw PostgresError(code: .encoding, message: redact(Self.errorMessage(pointer), secret: secret))
            }
            defer { PQfreemem(escaped) }
            return String(cString: escaped)
        }
    }

    public func escapeIdentifier(_ identifier: String) throws -> String {
        try withOpenHandle { pointer in
            guard let escaped = PQescapeIdentifier(pointer, identifier, identifier.utf8.count) else {
                throw PostgresError(code: .encoding, message: redact(Self.errorMessage(pointer), secret: secret))
            }
            defer { PQfreemem(escaped) }
            return String(cString: escaped)
        }
    }

    // MARK: Internals

    private func withOpenHandle<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        try handle.withLock { handle in
            guard let pointer = handle.pointer else {
                throw PostgresError(code: .connectionClosed, message: "the connection is closed")
            }
            return try body(pointer)
        }
    }

    /// Turns a `PGresult` into rows or an error, and clears it.
    private func consume(_ result: OpaquePointer?, pointer: OpaquePointer) throws -> PostgresResult {
        guard let result else { throw failure(pointer) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return PostgresResult(columns: [], cells: [], affectedRows: Int(String(cString: PQcmdTuples(result))) ?? 0)
        case PGRES_TUPLES_OK:
            return Self.rows(of: result)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            throw Self.error(from: result, pointer: pointer, secret: secret)
        default:
            throw PostgresError(code: .clientError, message: "unsupported result status \(status.rawValue) (COPY is not supported)")
        }
    }

    /// The error of a call that returned no result at all (out of memory or a broken connection).
    private func failure(_ pointer: OpaquePointer) -> PostgresError {
        let lost = PQstatus(pointer) != CONNECTION_OK
        return PostgresError(code: lost ? .connectionLost : .clientError, message: redact(Self.errorMessage(pointer), secret: secret))
    }

    private static func rows(of result: OpaquePointer) -> PostgresResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        var columns: [PostgresColumn] = []
        columns.reserveCapacity(columnCount)
        for column in 0..<Int32(columnCount) {
            columns.append(
                PostgresColumn(name: String(cString: PQfname(result, column)), type: PostgresType(rawValue: PQftype(result, column))))
        }
        var cells: [[String?]] = []
        cells.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) == 1 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, row, column))
                    let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, row, column), count: length)
                    values.append(String(decoding: bytes, as: UTF8.self))
                }
            }
            cells.append(values)
        }
        return PostgresResult(columns: columns, cells: cells, affectedRows: rowCount)
    }

    private static func error(from result: OpaquePointer, pointer: OpaquePointer, secret: String?) -> PostgresError {
        func field(_ code: Character) -> String? {
            guard let ascii = code.asciiValue, let value = PQresultErrorField(result, Int32(ascii)) else { return nil }
            return String(cString: value)
        }
        let sqlState = field("C")
        let lost = PQstatus(pointer) != CONNECTION_OK
        let message = field("M") ?? errorMessage(pointer)
        let code: PostgresError.Code = lost ? .connectionLost : (sqlState == nil ? .clientError : .server)
        return PostgresError(
            code: code, sqlState: sqlState, message: redact(message, secret: secret), detail: field("D"), hint: field("H"),
            constraint: field("n"), table: field("t"), column: field("c"))
    }

    private static func errorMessage(_ pointer: OpaquePointer) -> String {
        guard let message = PQerrorMessage(pointer) else { return "unknown libpq error" }
        return String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

private func redact(_ text: String, secret: String?) -> String {
    guard let secret, !secret.isEmpty else { return text }
    return text.replacingOccurrences(of: secret, with: "********")
}

/// Gives a C function a NULL-terminated array of C strings that live only for the call.
private func withCStringArray<T>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> T) -> T {
    let duplicates = strings.map { strdup($0) }
    defer { duplicates.forEach { free($0) } }
    return body(duplicates.map { $0.map { UnsafePointer($0) } } + [nil])
}

extension Duration {
    /// Whole milliseconds, rounded up so that a short timeout is never zero.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}
