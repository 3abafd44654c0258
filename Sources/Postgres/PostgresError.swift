/// One error type for everything the wrapper can fail at.
///
/// `description` stays generic so that server text never leaks into an HTTP response
/// by accident; the details are in the fields and in `String(reflecting:)`.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure this is. A struct rather than an enum so that new kinds
    /// can be added without breaking callers' `switch` statements.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let base: String
        private init(_ base: String) { self.base = base }

        /// Could not establish a connection.
        public static let connectionFailed = Code("connectionFailed")
        /// The connection broke while in use; the statement's outcome is unknown.
        public static let connectionLost = Code("connectionLost")
        /// The connection was already closed by this process.
        public static let connectionClosed = Code("connectionClosed")
        /// The server answered with an error (see `sqlState`).
        public static let server = Code("server")
        /// A result column could not be decoded into the requested Swift type.
        public static let decoding = Code("decoding")
        /// A value could not be encoded as a parameter.
        public static let encoding = Code("encoding")
        /// No pooled connection became free within the acquire timeout.
        public static let poolTimeout = Code("poolTimeout")
        /// The pool has been shut down.
        public static let poolClosed = Code("poolClosed")
        /// A misuse of the client library (bad conninfo, too many parameters, …).
        public static let clientError = Code("clientError")

        public var description: String { base }
    }

    public var code: Code
    /// Five-character SQLSTATE from the server, e.g. `23505` for a unique violation.
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    public var constraint: String?
    public var table: String?
    public var column: String?

    public init(
        code: Code, sqlState: String? = nil, message: String, detail: String? = nil, hint: String? = nil,
        constraint: String? = nil, table: String? = nil, column: String? = nil
    ) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column
    }

    public var description: String { "PostgresError(\(code))" }

    public var debugDescription: String {
        var parts = ["code: \(code)"]
        if let sqlState { parts.append("sqlState: \(sqlState)") }
        parts.append("message: \(message)")
        if let detail { parts.append("detail: \(detail)") }
        if let hint { parts.append("hint: \(hint)") }
        if let constraint { parts.append("constraint: \(constraint)") }
        if let table { parts.append("table: \(table)") }
        if let column { parts.append("column: \(column)") }
        return "PostgresError(\(parts.joined(separator: ", ")))"
    }
}

extension PostgresError {
    /// SQLSTATE values callers commonly branch on.
    public enum SQLState {
        public static let uniqueViolation = "23505"
        public static let foreignKeyViolation = "23503"
        public static let checkViolation = "23514"
        public static let notNullViolation = "23502"
        public static let syntaxError = "42601"
        public static let undefinedTable = "42P01"
        public static let serializationFailure = "40001"
        public static let deadlockDetected = "40P01"
        public static let queryCanceled = "57014"
        public static let adminShutdown = "57P01"
        public static let crashShutdown = "57P02"
        public static let cannotConnectNow = "57P03"
        /// A write on a standby, or in a session made read-only (a demoted primary).
        public static let readOnlySQLTransaction = "25006"
        public static let invalidTextRepresentation = "22P02"
        public static let characterNotInRepertoire = "22021"
        public static let untranslatableCharacter = "22P05"
    }

    public var isUniqueViolation: Bool { sqlState == SQLState.uniqueViolation }

    /// True when the failure is about the connection rather than the statement:
    /// the caller may retry on a fresh connection (if the work is idempotent) or report "unavailable".
    public var isConnectionFailure: Bool {
        switch code {
        case .connectionFailed, .connectionLost, .connectionClosed, .poolTimeout, .poolClosed: return true
        default:
            // Class 08 is connection exceptions; 57P0x is the server shutting down; 25006 is a
            // write refused by a server that is (or became) a standby: the primary is elsewhere.
            guard let sqlState else { return false }
            return sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") || sqlState == SQLState.readOnlySQLTransaction
        }
    }

    /// True for failures that a retry of the whole transaction can resolve.
    public var isTransient: Bool {
        sqlState == SQLState.serializationFailure || sqlState == SQLState.deadlockDetected
    }
}
