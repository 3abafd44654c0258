import Foundation
import HTTPTypes
import Hummingbird
import Store
import Synchronization

/// Who may call: `Authorization: Bearer agentd_…` keys, or nobody-checks "open mode" for a
/// service that listens on loopback only and has no key at all (as the original did).
public struct AuthMiddleware: RouterMiddleware {
    public typealias Context = AgentRequestContext

    public enum Mode: Sendable {
        /// Every request needs a valid key.
        case required
        /// Requests without a key are served as the default tenant while no active key exists.
        case openWhileNoKeys
    }

    let keys: KeyStore
    let mode: Mode
    let limiter = RateLimiter()

    public init(keys: KeyStore, mode: Mode) {
        self.keys = keys
        self.mode = mode
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // From here on the request's reads from memory share one proof of being caught up.
        try await Notifier.request { try await authenticate(request, context: context, next: next) }
    }

    private func authenticate(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var context = context
        guard let header = request.headers[.authorization] else {
            if mode == .openWhileNoKeys, try await !keys.anyActive() {
                context.caller = .openMode
                context.logger[metadataKey: "tenant"] = "\(Caller.openMode.tenantID)"
                return try await next(request, context)
            }
            throw Self.unauthorized("an API key is required: send Authorization: Bearer <key>")
        }
        guard let presented = Self.bearerToken(header) else {
            throw Self.unauthorized("malformed Authorization header: expected Bearer <key>")
        }
        guard let key = try await keys.verify(presented) else {
            throw Self.unauthorized("invalid or revoked API key")
        }
        if let stored = key.requestsPerSecond {
            let rate = KeyLimits.effectiveRate(stored)
            if let wait = limiter.admit(key.keyID, rate: rate) {
                throw APIError(
                    .tooManyRequests, "rate limit of \(rate) requests per second exceeded for this key",
                    headers: [.retryAfter: "\(RateLimiter.retryAfter(seconds: wait))"])
            }
        }
        context.caller = Caller(
            tenantID: key.tenantID, userScope: key.userID, keyID: key.keyID, isAdmin: key.isAdmin, maxTasksInFlight: key.maxTasksInFlight)
        context.logger[metadataKey: "tenant"] = "\(key.tenantID)"
        return try await next(request, context)
    }

    /// The token of `Bearer <token>`: the scheme in any case, then spaces or tabs (HTTP's
    /// whitespace) around the token. By bytes: every keyed request reads it, and Foundation's
    /// `trimmingCharacters` cost 3 % of a keyed status read.
    static func bearerToken(_ header: String) -> String? {
        let bytes = Array(header.utf8)
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
        var start = 0
        while start < bytes.count, isSpace(bytes[start]) { start += 1 }
        let scheme = Array("bearer".utf8)
        guard bytes.count > start + scheme.count, zip(bytes[start...], scheme).allSatisfy({ $0 | 0x20 == $1 }),
            isSpace(bytes[start + scheme.count])
        else { return nil }
        var (first, end) = (start + scheme.count, bytes.count)
        while first < end, isSpace(bytes[first]) { first += 1 }
        while end > first, isSpace(bytes[end - 1]) { end -= 1 }
        guard first < end else { return nil }
        return String(decoding: bytes[first..<end], as: UTF8.self)
    }

    static func unauthorized(_ detail: String) -> APIError {
        APIError(.unauthorized, detail, headers: [.wwwAuthenticate: "Bearer"])
    }
}

/// Token buckets per key, in this process: `rate` tokens a second, bursts up to `rate`.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let buckets = Mutex<[String: Bucket]>([:])
    private let clock = ContinuousClock()

    /// nil when the request may go ahead, else the seconds until it would.
    /// - Parameter rate: in `KeyLimits.requestsPerSecond`, so the wait is finite and small.
    func admit(_ key: String, rate: Double) -> Double? {
        let now = clock.now
        let capacity = max(1, rate)
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
            let elapsed = bucket.updated.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(capacity, bucket.tokens + seconds * rate)
            bucket.updated = now
            defer { buckets[key] = bucket }
            guard bucket.tokens >= 1 else { return (1 - bucket.tokens) / rate }
            bucket.tokens -= 1
            return nil
        }
    }

    /// Whole seconds for the header: at least 1, at most a day, whatever `seconds` is.
    static func retryAfter(seconds: Double) -> Int {
        guard seconds.isFinite else { return 86_400 }
        return Int(min(max(seconds.rounded(.up), 1), 86_400))
    }
}
