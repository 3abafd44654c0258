import Foundation

/// Type OIDs of the built-in types the wrapper binds and decodes (see `pg_type`).
public struct PostgresType: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Lets the server infer the type from context, as it does for a quoted literal.
    public static let unspecified = PostgresType(rawValue: 0)
    public static let bool = PostgresType(rawValue: 16)
    public static let bytea = PostgresType(rawValue: 17)
    public static let name = PostgresType(rawValue: 19)
    public static let int8 = PostgresType(rawValue: 20)
    public static let int2 = PostgresType(rawValue: 21)
    public static let int4 = PostgresType(rawValue: 23)
    public static let text = PostgresType(rawValue: 25)
    public static let oid = PostgresType(rawValue: 26)
    public static let json = PostgresType(rawValue: 114)
    public static let float4 = PostgresType(rawValue: 700)
    public static let float8 = PostgresType(rawValue: 701)
    public static let unknown = PostgresType(rawValue: 705)
    public static let bpchar = PostgresType(rawValue: 1042)
    public static let varchar = PostgresType(rawValue: 1043)
    public static let date = PostgresType(rawValue: 1082)
    public static let timestamp = PostgresType(rawValue: 1114)
    public static let timestamptz = PostgresType(rawValue: 1184)
    public static let numeric = PostgresType(rawValue: 1700)
    public static let uuid = PostgresType(rawValue: 2950)
    public static let jsonb = PostgresType(rawValue: 3802)
    public static let textArray = PostgresType(rawValue: 1009)

    public var description: String {
        switch self {
        case .bool: "bool"
        case .bytea: "bytea"
        case .name: "name"
        case .int8: "int8"
        case .int2: "int2"
        case .int4: "int4"
        case .text: "text"
        case .oid: "oid"
        case .json: "json"
        case .float4: "float4"
        case .float8: "float8"
        case .unknown: "unknown"
        case .bpchar: "bpchar"
        case .varchar: "varchar"
        case .date: "date"
        case .timestamp: "timestamp"
        case .timestamptz: "timestamptz"
        case .numeric: "numeric"
        case .uuid: "uuid"
        case .jsonb: "jsonb"
        case .textArray: "text[]"
        default: "oid \(rawValue)"
        }
    }
}

/// One bound parameter in PostgreSQL's text format; `nil` bytes is SQL NULL.
public struct PostgresBind: Sendable, Hashable {
    public var type: PostgresType
    public var bytes: [UInt8]?

    public init(type: PostgresType, bytes: [UInt8]?) {
        self.type = type
        self.bytes = bytes
    }

    public init(type: PostgresType, text: String) {
        self.init(type: type, bytes: Array(text.utf8))
    }
}

/// A Swift value that can be sent as a query parameter.
public protocol PostgresEncodable: Sendable {
    /// The parameter type announced to the server, also for a `nil` of this type.
    static var postgresType: PostgresType { get }
    /// The value in PostgreSQL's text input format.
    var postgresText: String { get }
}

/// A Swift value that can be read from a result column.
public protocol PostgresDecodable: Sendable {
    /// Decodes the column's text output; `type` is the column's type as the server reported it.
    /// Returns nil when the type or text does not fit, and the row names the column in the error.
    init?(postgresText text: String, type: PostgresType)
}

extension String: PostgresEncodable, PostgresDecodable {
    // Unspecified rather than `text`, so a string binds wherever a literal would (enums, intervals…).
    public static var postgresType: PostgresType { .unspecified }
    public var postgresText: String { self }
    public init?(postgresText text: String, type: PostgresType) { self = text }
}

private let integerTypes: Set<PostgresType> = [.int2, .int4, .int8, .oid]

extension Int: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public init?(postgresText text: String, type: PostgresType) {
        guard integerTypes.contains(type), let value = Int(text) else { return nil }
        self = value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public init?(postgresText text: String, type: PostgresType) {
        guard integerTypes.contains(type), let value = Int64(text) else { return nil }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int4 }
    public var postgresText: String { String(self) }
    public init?(postgresText text: String, type: PostgresType) {
        guard integerTypes.contains(type), let value = Int32(text) else { return nil }
        self = value
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .float8 }
    public var postgresText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return String(self)  // shortest text that reads back to the same Double
    }
    public init?(postgresText text: String, type: PostgresType) {
        switch type {
        case .float4, .float8, .numeric, .int2, .int4, .int8:
            switch text {
            case "NaN": self = .nan
            case "Infinity": self = .infinity
            case "-Infinity": self = -.infinity
            default:
                guard let value = Double(text) else { return nil }
                self = value
            }
        default:
            return nil
        }
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .bool }
    public var postgresText: String { self ? "true" : "false" }
    public init?(postgresText text: String, type: PostgresType) {
        guard type == .bool else { return nil }
        switch text {
        case "t": self = true
        case "f": self = false
        default: return nil
        }
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .uuid }
    public var postgresText: String { uuidString.lowercased() }
    public init?(postgresText text: String, type: PostgresType) {
        guard type == .uuid || type == .text || type == .varchar, let value = UUID(uuidString: text) else {
            return nil
        }
        self = value
    }
}

extension Date: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .timestamptz }
    public var postgresText: String { PostgresTimestamp.format(self) }
    public init?(postgresText text: String, type: PostgresType) {
        guard type == .timestamptz || type == .timestamp || type == .date,
            let value = PostgresTimestamp.parse(text)
        else { return nil }
        self = value
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public static var postgresType: PostgresType { Wrapped.postgresType }
    // Never called for nil: binding checks for nil first and sends SQL NULL.
    public var postgresText: String { self?.postgresText ?? "" }
}

/// JSON sent as `jsonb`, from a Codable value or from bytes that already are JSON.
public struct PostgresJSON: PostgresEncodable, PostgresDecodable, Hashable {
    public static var postgresType: PostgresType { .jsonb }
    /// The JSON text, UTF-8.
    public var bytes: [UInt8]

    public init<T: Encodable>(_ value: T, encoder: JSONEncoder = JSONEncoder()) throws {
        do {
            bytes = Array(try encoder.encode(value))
        } catch {
            throw PostgresError(code: .encoding, message: "cannot encode \(T.self) as JSON: \(error)")
        }
    }

    /// Bytes that are JSON already; the server validates them.
    public init(rawBytes: some Sequence<UInt8>) {
        bytes = Array(rawBytes)
    }

    public var postgresText: String { String(decoding: bytes, as: UTF8.self) }

    public init?(postgresText text: String, type: PostgresType) {
        guard type == .json || type == .jsonb || type == .text else { return nil }
        bytes = Array(text.utf8)
    }

    public func decode<T: Decodable>(_ type: T.Type, decoder: JSONDecoder = JSONDecoder()) throws -> T {
        do {
            return try decoder.decode(T.self, from: Data(bytes))
        } catch {
            throw PostgresError(code: .decoding, message: "cannot decode JSON as \(T.self): \(error)")
        }
    }
}

/// timestamptz text in and out, fixed to the session settings the connection sets
/// (`DateStyle=ISO`, `TimeZone=UTC`), without Foundation's formatters on the hot path.
enum PostgresTimestamp {
    static func format(_ date: Date) -> String {
        let totalMicros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        var seconds = Int(floor(totalMicros / 1_000_000))
        let micros = Int(totalMicros - Double(seconds) * 1_000_000)
        var parts = tm()
        var time = time_t(seconds)
        gmtime_r(&time, &parts)
        seconds = Int(parts.tm_sec)
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2)) "
            + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(seconds, 2)).\(pad(micros, 6))+00"
    }

    /// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]][+HH[:MM]]`.
    static func parse(_ text: String) -> Date? {
        switch text {
        case "infinity": return .distantFuture
        case "-infinity": return .distantPast
        default: break
        }
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ width: Int) -> Int? {
            guard index + width <= bytes.count else { return nil }
            var value = 0
            for _ in 0..<width {
                let byte = bytes[index]
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
                index += 1
            }
            return value
        }
        func expect(_ char: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == char else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2) else {
            return nil
        }
        var hour = 0, minute = 0, second = 0
        var fraction = 0.0
        var offsetSeconds = 0
        if expect(32) {
            guard let h = number(2), expect(58), let m = number(2), expect(58), let s = number(2) else { return nil }
            (hour, minute, second) = (h, m, s)
            if expect(46) {
                var scale = 0.1
                while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                    fraction += Double(bytes[index] - 48) * scale
                    scale /= 10
                    index += 1
                }
            }
            if index < bytes.count, bytes[index] == 43 || bytes[index] == 45 {
                let sign = bytes[index] == 45 ? -1 : 1
                index += 1
                guard let oh = number(2) else { return nil }
                var om = 0, os = 0
                if expect(58) { om = number(2) ?? 0 }
                if expect(58) { os = number(2) ?? 0 }
                offsetSeconds = sign * (oh * 3600 + om * 60 + os)
            }
        }
        guard index == bytes.count else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let epoch = timegm(&parts)
        return Date(timeIntervalSince1970: Double(epoch - offsetSeconds) + fraction)
    }
}
