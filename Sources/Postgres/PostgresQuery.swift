/// SQL text with its parameters. Interpolated values become `$1, $2, …` and are bound,
/// never spliced into the text; raw SQL needs the deliberately named `unsafeSQL:`.
///
///     let query: PostgresQuery = "SELECT * FROM tasks WHERE task_id = \(taskID)"
public struct PostgresQuery: Sendable, Hashable, ExpressibleByStringInterpolation {
    public var sql: String
    public var binds: [PostgresBind]

    public init(unsafeSQL sql: String, binds: [PostgresBind] = []) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringLiteral value: String) {
        self.init(unsafeSQL: value)
    }

    public init(stringInterpolation: StringInterpolation) {
        self.init(unsafeSQL: stringInterpolation.sql, binds: stringInterpolation.binds)
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql: String
        var binds: [PostgresBind]

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql = ""
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds = []
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value) {
            binds.append(PostgresBind(type: Value.postgresType, text: value.postgresText))
            sql += "$\(binds.count)"
        }

        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            if let value {
                binds.append(PostgresBind(type: Value.postgresType, text: value.postgresText))
            } else {
                binds.append(PostgresBind(type: Value.postgresType, bytes: nil))
            }
            sql += "$\(binds.count)"
        }

        /// A `text[]` parameter, e.g. for `= ANY(\(names))`.
        public mutating func appendInterpolation(_ values: [String]) {
            binds.append(PostgresBind(type: .textArray, text: PostgresArray.textLiteral(values)))
            sql += "$\(binds.count)"
        }

        /// Another query as a fragment (a CTE, a condition): its `$n` placeholders are
        /// renumbered after the ones already bound. The fragment's SQL must not contain a `$`
        /// other than its placeholders (no dollar quoting, no `$` in literals).
        public mutating func appendInterpolation(fragment: PostgresQuery) {
            let offset = binds.count
            binds.append(contentsOf: fragment.binds)
            // Nothing to renumber: a fragment's placeholders exist only for its binds. (The
            // service's statements are built this way on every call, so this path is hot.)
            guard offset > 0, !fragment.binds.isEmpty else {
                sql += fragment.sql
                return
            }
            // By UTF-8 bytes: `$` and digits are ASCII, and no byte of a multi-byte character is.
            let dollar = UInt8(ascii: "$")
            let source = Array(fragment.sql.utf8)
            var rewritten: [UInt8] = []
            rewritten.reserveCapacity(source.count + 16)
            var index = 0
            while index < source.count {
                guard source[index] == dollar else {
                    rewritten.append(source[index])
                    index += 1
                    continue
                }
                var end = index + 1
                while end < source.count, source[end] >= UInt8(ascii: "0"), source[end] <= UInt8(ascii: "9") { end += 1 }
                let digits = source[(index + 1)..<end]
                if !digits.isEmpty, digits.count <= 18 {
                    let number = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
                    rewritten.append(contentsOf: "$\(number + offset)".utf8)
                } else {
                    rewritten.append(contentsOf: source[index..<end])
                }
                index = end
            }
            sql += String(decoding: rewritten, as: UTF8.self)
        }

        /// Raw SQL; never pass anything that came from a request.
        public mutating func appendInterpolation(unsafeSQL fragment: String) {
            sql += fragment
        }
    }
}

extension PostgresQuery: CustomStringConvertible {
    /// The SQL with its parameters redacted, for logs.
    public var description: String { "\(sql) [\(binds.count) parameter(s)]" }
}

enum PostgresArray {
    /// A text array literal: every element quoted, with `"` and `\` escaped.
    static func textLiteral(_ values: [String]) -> String {
        var out = "{"
        for (i, value) in values.enumerated() {
            if i > 0 { out += "," }
            out += "\""
            for char in value.unicodeScalars {
                if char == "\"" || char == "\\" { out += "\\" }
                out.unicodeScalars.append(char)
            }
            out += "\""
        }
        return out + "}"
    }
}
