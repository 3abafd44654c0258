/// The one rule for every identifier the service compares: tenant, user, session, task and
/// key ids (and agent ids later).
///
/// Ids are opaque: two are the same id only when their Unicode scalars are the same (hence
/// their UTF-8 bytes), which is how PostgreSQL compares them and how the original service
/// (Python `str`) did. Swift's `String ==` and `hashValue` treat canonically equivalent text
/// as equal — "café" with a precomposed é equals "cafe" + U+0301 — so a key for one user
/// could act for its look-alike, and a batch of reads could merge two users' keys. So ids are
/// never compared or hashed as `String`: compare with `same`, key collections by `Identifier`.
/// Nothing is normalised: what a client stored under one form it reads under that form.
public struct Identifier: Hashable, Sendable, CustomStringConvertible {
    public let text: String

    public init(_ text: String) { self.text = text }

    public var description: String { text }

    public static func == (a: Identifier, b: Identifier) -> Bool { same(a.text, b.text) }

    public func hash(into hasher: inout Hasher) { Self.hash(text, into: &hasher) }

    /// Byte equality of the UTF-8 forms (native Swift strings are UTF-8, so this is a memcmp).
    public static func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// Feeds the exact bytes, then the length, so that adjacent ids of a key hash apart.
    public static func hash(_ text: String, into hasher: inout Hasher) {
        var text = text
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        hasher.combine(text.utf8.count)
    }

    // MARK: What an id may be

    /// Longest id, in Unicode scalars (so at most four times as many UTF-8 bytes).
    public static let maxScalars = 128
    /// Longest id in UTF-8 bytes: what the scalar limit implies, stated for index sizing.
    public static let maxBytes = 4 * maxScalars

    /// Why `value` cannot be an id, or nil when it can. Lengths count scalars and bytes, never
    /// grapheme clusters: one letter with 3,000 combining accents is one "character" to Swift
    /// and 6 KB to an index. Refused: '/', which would split a path; control characters; and,
    /// for an id being created, format characters (category Cf: right-to-left overrides,
    /// zero-width spaces and joiners), which make two ids look alike or an id look like
    /// another, and line and paragraph separators. Ids created before that rule (sql/007) may
    /// hold them, so reads and deletes (`creating: false`) still accept them.
    public static func problem(with value: String, field: String, creating: Bool = true) -> String? {
        if value.isEmpty { return "\(field) must not be empty" }
        if value.unicodeScalars.count > maxScalars || value.utf8.count > maxBytes {
            return "\(field) must be at most \(maxScalars) characters (Unicode scalars)"
        }
        let refused = value.unicodeScalars.first { scalar in
            switch scalar.properties.generalCategory {
            case .control: true
            case .format, .lineSeparator, .paragraphSeparator: creating
            default: scalar == "/"
            }
        }
        if let refused {
            let code = "U+" + String(refused.value, radix: 16, uppercase: true).leftPadded(to: 4)
            return "\(field) must not contain '/', control, format or separator characters (found \(code))"
        }
        return nil
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
