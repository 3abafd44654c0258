import Synchronization

/// Work that must not overlap for one key, run one at a time per key in this process, the
/// others waiting in memory (holding no connection) in arrival order.
/// Keys are compared as `String`: use it only for keys that are ASCII (API key ids are).
final class Turns: Sendable {
    /// A key is present while its work runs; its array holds the callers waiting after it.
    private let queues = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    func serially<T: Sendable>(_ key: String, _ body: () async throws -> T) async throws -> T {
        await take(key)
        defer { pass(key) }
        return try await body()
    }

    private func take(_ key: String) async {
        await withCheckedContinuation { continuation in
            let now = queues.withLock { queues -> Bool in
                guard queues[key] != nil else {
                    queues[key] = []
                    return true
                }
                queues[key]?.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Hands the turn to the next waiter, or frees the key.
    private func pass(_ key: String) {
        let next = queues.withLock { queues -> CheckedContinuation<Void, Never>? in
            guard var waiting = queues[key], !waiting.isEmpty else {
                queues[key] = nil
                return nil
            }
            let first = waiting.removeFirst()
            queues[key] = waiting
            return first
        }
        next?.resume()
    }
}
