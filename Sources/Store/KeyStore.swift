import Crypto
import Foundation
import Postgres
import Synchronization

/// An API key as stored: never the secret, only its SHA-256.
public struct APIKeyRecord: Sendable {
    public var keyID: String
    public var tenantID: String
    /// Set: the key acts for this user only.
    public var userID: String?
    public var isAdmin: Bool
    public var name: String?
    public var requestsPerSecond: Double?
    public var maxTasksInFlight: Int?
    public var createdAt: Double
    public var revokedAt: Double?
    var secretSHA256: String
}

/// The limits a key may carry, checked when it is created (and by sql/007's constraints).
public enum KeyLimits {
    /// Requests per second: one every 100 s at least, well past any one process's rate at most.
    public static let requestsPerSecond: ClosedRange<Double> = 0.01...100_000
    public static let tasksInFlight: ClosedRange<Int> = 1...1_000_000

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// Why these limits cannot be stored, or nil. NaN and infinities are out of range.
    public static func problem(requestsPerSecond rate: Double?, maxTasksInFlight: Int?) -> String? {
        if let rate, !(rate.isFinite && requestsPerSecond.contains(rate)) {
            return "--rate must be a number of requests per second from \(requestsPerSecond.lowerBound) to \(Int(requestsPerSecond.upperBound))"
        }
        if let maxTasksInFlight, !tasksInFlight.contains(maxTasksInFlight) {
            return "--max-in-flight must be a whole number from \(tasksInFlight.lowerBound) to \(tasksInFlight.upperBound)"
        }
        return nil
    }

    /// The rate a stored value means, in range whatever the row holds (NaN: the lowest), so the
    /// limiter's arithmetic cannot overflow on any of them.
    public static func effectiveRate(_ stored: Double) -> Double {
        stored.isNaN ? requestsPerSecond.lowerBound : min(max(stored, requestsPerSecond.lowerBound), requestsPerSecond.upperBound)
    }
}

/// API keys: `agentd_<key_id>_<secret>`. The id finds the row; the secret is checked against
/// its stored SHA-256 in constant time.
public struct KeyStore: Sendable {
    let pool: PostgresPool
    /// Every request asks one of these; concurrent requests share a read (see `Batched`). Open
    /// mode's question has no key, so it is asked under the single key `true`.
    private let activeKeyReads: Batched<Bool, Bool>
    private let keyReads: Batched<String, APIKeyRecord?>
    /// What this process read, answered without a statement once the notifier has caught up.
    private let cache: KeyCache?

    /// - Parameter notifier: with one, keys are kept in memory and read again when sql/013's
    ///   trigger says the table changed; a read from memory waits until this process has heard
    ///   of every change committed before it (`Notifier.caughtUp`), so a revocation holds at once.
    public init(pool: PostgresPool, notifier: Notifier? = nil) {
        self.pool = pool
        if let notifier {
            let cache = KeyCache(caughtUp: { await notifier.caughtUp() })
            notifier.onKeysChanged { cache.invalidate() }
            self.cache = cache
        } else {
            cache = nil
        }
        activeKeyReads = Batched { _ in
            let active = try await pool.system { connection in
                try connection.query("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL) AS active").first?.decode("active", as: Bool.self)
                    ?? false
            }
            return [true: active]
        }
        keyReads = Batched { keyIDs in
            let rows = try await pool.system { connection in
                try connection.query("SELECT \(unsafeSQL: Self.columns) FROM api_keys WHERE key_id = ANY(\(keyIDs)) AND revoked_at IS NULL").rows
            }
            var found = [String: APIKeyRecord?](uniqueKeysWithValues: keyIDs.map { ($0, nil) })
            for row in rows {
                let record = try Self.record(row)
                found[record.keyID] = .some(record)
            }
            return found
        }
    }

    public struct NewKey: Sendable {
        public var record: APIKeyRecord
        /// The whole key, shown once.
        public var key: String
    }

    public func create(
        tenantID: String, userID: String?, isAdmin: Bool, name: String?, requestsPerSecond: Double?, maxTasksInFlight: Int?
    ) async throws -> NewKey {
        if let problem = KeyLimits.problem(requestsPerSecond: requestsPerSecond, maxTasksInFlight: maxTasksInFlight) {
            throw KeyLimits.Invalid(description: problem)
        }
        let keyID = Self.randomToken(length: 12)
        let secret = Self.randomToken(length: 32)
        let hash = Self.sha256(secret)
        let row = try await pool.systemTransaction { connection in
            try connection.query("INSERT INTO tenants (tenant_id) VALUES (\(tenantID)) ON CONFLICT DO NOTHING")
            return try connection.query("""
                INSERT INTO api_keys (key_id, tenant_id, user_id, is_admin, name, secret_sha256, requests_per_second, max_tasks_in_flight)
                VALUES (\(keyID), \(tenantID), \(userID), \(isAdmin), \(name), \(hash), \(requestsPerSecond), \(maxTasksInFlight))
                RETURNING \(unsafeSQL: Self.columns)
                """).first
        }
        guard let row else { throw StoreConflict("the key was not stored") }
        return NewKey(record: try Self.record(row), key: "agentd_\(keyID)_\(secret)")
    }

    public func list() async throws -> [APIKeyRecord] {
        try await pool.system { connection in
            try connection.query("SELECT \(unsafeSQL: Self.columns) FROM api_keys ORDER BY created_at, key_id").rows.map(Self.record)
        }
    }

    /// Revokes a key; false when there is no such active key.
    public func revoke(keyID: String) async throws -> Bool {
        try await pool.system { connection in
            try connection.query("UPDATE api_keys SET revoked_at = now() WHERE key_id = \(keyID) AND revoked_at IS NULL RETURNING 1 AS revoked")
                .count == 1
        }
    }

    /// Whether any key is active: without one, a loopback-only service may run open.
    public func anyActive() async throws -> Bool {
        if let cached = await cache?.anyActive() { return cached }
        // Taken before the read, which starts after this call (`Batched`).
        let generation = cache?.generation
        let active = try await activeKeyReads.value(for: true)
        if let generation { cache?.keep(anyActive: active, readAfter: generation) }
        return active
    }

    /// The active key that `presented` is, or nil. Read for every request (by a read that
    /// starts after the request arrives, shared with concurrent ones), so a revocation takes
    /// effect on the next one.
    public func verify(_ presented: String) async throws -> APIKeyRecord? {
        guard let (keyID, secret) = Self.parse(presented) else { return nil }
        let record: APIKeyRecord
        if let cached = await cache?.record(keyID) {
            record = cached
        } else {
            let generation = cache?.generation
            guard let read = try await keyReads.value(for: keyID) else { return nil }
            if let generation { cache?.keep(read, readAfter: generation) }
            record = read
        }
        return Self.matches(secret, sha256Hex: record.secretSHA256) ? record : nil
    }

    // MARK: Format

    static let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

    /// Base62 from the system's cryptographic generator (getrandom on Linux).
    static func randomToken(length: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }

    /// `agentd_` + 12 + `_` + 32 ASCII letters and digits, checked by bytes: every request parses
    /// its key, and Character's Unicode properties were 5 % of a keyed status read's CPU.
    static func parse(_ key: String) -> (keyID: String, secret: String)? {
        let bytes = key.utf8
        guard bytes.count == 52, bytes.starts(with: "agentd_".utf8) else { return nil }
        let id = bytes.dropFirst(7).prefix(12)
        let secret = bytes.dropFirst(20)
        guard bytes[bytes.index(bytes.startIndex, offsetBy: 19)] == UInt8(ascii: "_"),
            id.allSatisfy(isAlphanumeric), secret.allSatisfy(isAlphanumeric)
        else { return nil }
        return (String(decoding: id, as: UTF8.self), String(decoding: secret, as: UTF8.self))
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Lowercase hex, as sql/005 stores it.
    static func sha256(_ text: String) -> String {
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in SHA256.hash(data: Data(text.utf8)) {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// Whether `secret`'s SHA-256 is `sha256Hex` (lowercase, as stored), in time that does not
    /// depend on where they differ; without building the hex string, since every request asks.
    static func matches(_ secret: String, sha256Hex: String) -> Bool {
        let stored = sha256Hex.utf8
        guard stored.count == 64 else { return false }
        var difference: UInt8 = 0
        var index = stored.startIndex
        for byte in SHA256.hash(data: Array(secret.utf8)) {
            difference |= hexDigits[Int(byte >> 4)] ^ stored[index]
            index = stored.index(after: index)
            difference |= hexDigits[Int(byte & 0x0f)] ^ stored[index]
            index = stored.index(after: index)
        }
        return difference == 0
    }

    static let columns = """
        key_id, tenant_id, user_id, is_admin, name, secret_sha256, requests_per_second, max_tasks_in_flight,
        extract(epoch FROM created_at) AS created, extract(epoch FROM revoked_at) AS revoked
        """

    static func record(_ row: PostgresRow) throws -> APIKeyRecord {
        APIKeyRecord(
            keyID: try row.decode("key_id"), tenantID: try row.decode("tenant_id"), userID: try row.decode("user_id", as: String?.self),
            isAdmin: try row.decode("is_admin"), name: try row.decode("name", as: String?.self),
            requestsPerSecond: try row.decode("requests_per_second", as: Double?.self),
            maxTasksInFlight: try row.decode("max_tasks_in_flight", as: Int?.self), createdAt: try row.decode("created"),
            revokedAt: try row.decode("revoked", as: Double?.self), secretSHA256: try row.decode("secret_sha256"))
    }
}

/// Active keys as this process last read them, and whether any key is active. Dropped whole at
/// every change to the table (keys change seldom); a read's result is kept only if no change
/// arrived while it ran.
final class KeyCache: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var anyActive: Bool?
        var records: [String: APIKeyRecord] = [:]
    }

    /// Keys kept at most; past it the cache starts again (a flood of distinct valid keys is rare).
    static let capacity = 10_000
    private let state = Mutex(State())
    private let caughtUp: @Sendable () async -> Bool

    init(caughtUp: @escaping @Sendable () async -> Bool) {
        self.caughtUp = caughtUp
    }

    var generation: UInt64 { state.withLock { $0.generation } }

    func anyActive() async -> Bool? {
        guard state.withLock({ $0.anyActive != nil }), await caughtUp() else { return nil }
        return state.withLock { $0.anyActive }
    }

    func record(_ keyID: String) async -> APIKeyRecord? {
        guard state.withLock({ $0.records[keyID] != nil }), await caughtUp() else { return nil }
        return state.withLock { $0.records[keyID] }
    }

    func keep(anyActive: Bool, readAfter generation: UInt64) {
        state.withLock { state in
            if state.generation == generation { state.anyActive = anyActive }
        }
    }

    func keep(_ record: APIKeyRecord, readAfter generation: UInt64) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.records.count >= Self.capacity { state.records = [:] }
            state.records[record.keyID] = record
        }
    }

    func invalidate() {
        state.withLock { state in
            state.generation &+= 1
            state.anyActive = nil
            state.records = [:]
        }
    }
}
