/// A result column: its name and the type the server reported.
public struct PostgresColumn: Sendable, Hashable {
    public var name: String
    public var type: PostgresType
}

/// The rows of one statement, copied out of libpq's result so it can be freed at once.
public struct PostgresResult: Sendable {
    public let columns: [PostgresColumn]
    public let rows: [PostgresRow]
    /// Rows inserted, updated or deleted (`PQcmdTuples`), 0 when not applicable.
    public let affectedRows: Int

    init(columns: [PostgresColumn], cells: [[String?]], affectedRows: Int) {
        self.columns = columns
        let lookup = PostgresRow.Lookup(columns: columns)
        self.rows = cells.map { PostgresRow(lookup: lookup, cells: $0) }
        self.affectedRows = affectedRows
    }

    public var first: PostgresRow? { rows.first }
    public var isEmpty: Bool { rows.isEmpty }
    public var count: Int { rows.count }
}

/// One row. Columns are read by name; a column that is missing, NULL where a value is
/// required, or of a type that does not fit fails with an error naming the column.
public struct PostgresRow: Sendable {
    final class Lookup: Sendable {
        let columns: [PostgresColumn]
        let indexByName: [String: Int]
        init(columns: [PostgresColumn]) {
            self.columns = columns
            var index: [String: Int] = [:]
            // The first column of a name wins, as in `SELECT a.*, b.*` readers expect.
            for (i, column) in columns.enumerated() where index[column.name] == nil { index[column.name] = i }
            indexByName = index
        }
    }

    let lookup: Lookup
    let cells: [String?]

    public var columns: [PostgresColumn] { lookup.columns }

    /// Decodes a non-NULL column.
    public func decode<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        let (index, column) = try locate(name)
        guard let text = cells[index] else {
            throw PostgresError(code: .decoding, message: "column \"\(name)\" is NULL, expected \(T.self)")
        }
        return try convert(text, column: column, as: T.self)
    }

    /// Decodes a column that may be NULL.
    public func decode<T: PostgresDecodable>(_ name: String, as type: T?.Type) throws -> T? {
        let (index, column) = try locate(name)
        guard let text = cells[index] else { return nil }
        return try convert(text, column: column, as: T.self)
    }

    /// True when the column exists and is NULL.
    public func isNull(_ name: String) throws -> Bool {
        let (index, _) = try locate(name)
        return cells[index] == nil
    }

    private func locate(_ name: String) throws -> (Int, PostgresColumn) {
        guard let index = lookup.indexByName[name] else {
            throw PostgresError(code: .decoding, message: "no column \"\(name)\" in the result")
        }
        return (index, lookup.columns[index])
    }

    private func convert<T: PostgresDecodable>(_ text: String, column: PostgresColumn, as: T.Type) throws -> T {
        guard let value = T(postgresText: text, type: column.type) else {
            throw PostgresError(
                code: .decoding,
                message: "column \"\(column.name)\" of type \(column.type) cannot be decoded as \(T.self)")
        }
        return value
    }
}
