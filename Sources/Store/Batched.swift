import Synchronization

/// Reads by key that concurrent callers share, like a group commit: one read serves every key
/// asked for while the previous reads were running.
///
/// Every caller gets the result of a read that started after it asked: callers that arrive
/// while a read is running wait for the next one, which serves all of them. So the answer is
/// as fresh as a read of one's own, and under load the database sees one statement per round
/// trip instead of one per caller. Up to `concurrentReads` reads run at once, so that one read
/// waiting for a pooled connection does not hold up every caller.
final class Batched<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct State {
        var waiting: [(key: Key, continuation: CheckedContinuation<Value, any Error>)] = []
        var reading = 0
    }

    struct Missing: Error {}

    private let state = Mutex(State())
    /// Reads the values of the given keys (each once); a key left out of the result fails its callers.
    private let read: @Sendable ([Key]) async throws -> [Key: Value]
    private let concurrentReads: Int

    init(concurrentReads: Int = 1, _ read: @escaping @Sendable ([Key]) async throws -> [Key: Value]) {
        self.concurrentReads = max(1, concurrentReads)
        self.read = read
    }

    func value(for key: Key) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let leads = state.withLock { state in
                state.waiting.append((key, continuation))
                guard state.reading < concurrentReads else { return false }
                state.reading += 1
                return true
            }
            if leads { Task { await self.drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLock { state in
                defer { state.waiting = [] }
                if state.waiting.isEmpty { state.reading -= 1 }
                return state.waiting
            }
            guard !batch.isEmpty else { return }
            do {
                let values = try await read(Array(Set(batch.map(\.key))))
                for waiter in batch {
                    if let value = values[waiter.key] {
                        waiter.continuation.resume(returning: value)
                    } else {
                        waiter.continuation.resume(throwing: Missing())
                    }
                }
            } catch {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}
