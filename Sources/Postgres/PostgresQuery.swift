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
            var rewritten = ""
            var scalars = fragment.sql.unicodeScalars.makeIterator()
            var pending: Unicode.Scalar? = scalars.next()
            while let scalar = pending {
                pending = scalars.next()
                guard scalar == "$" else {
                    rewritten.unicodeScalars.append(scalar)
                    continue
                }
                var digits = ""
                while let next = pending, next.properties.numericType == .decimal, next.isASCII {
                    digits.unicodeScalars.append(next)
                    pending = scalars.next()
                }
                if let number = Int(digits) {
                    rewritten += "$\(number + offset)"
                } else {
                    rewritten += "$" + digits
                }
            }
            sql += rewritten
            binds.append(contentsOf: fragment.binds)
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
