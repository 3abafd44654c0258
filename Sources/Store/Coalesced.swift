import Synchronization

/// One read shared by the callers that ask for it at the same time, like a group commit.
///
/// Every caller gets the result of a read that started after it asked: callers that arrive
/// while a read is running wait for the next one, which serves all of them. So the answer is
/// as fresh as a read of one's own, and under load the database sees one read per round trip
/// instead of one per caller.
final class Coalesced<Value: Sendable>: Sendable {
    private struct State {
        var waiting: [CheckedContinuation<Value, any Error>] = []
        var reading = false
    }

    private let state = Mutex(State())
    private let read: @Sendable () async throws -> Value

    init(_ read: @escaping @Sendable () async throws -> Value) {
        self.read = read
    }

    func value() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let leads = state.withLock { state in
                state.waiting.append(continuation)
                guard !state.reading else { return false }
                state.reading = true
                return true
            }
            if leads { Task { await self.drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLock { state in
                defer { state.waiting = [] }
                if state.waiting.isEmpty { state.reading = false }
                return state.waiting
            }
            guard !batch.isEmpty else { return }
            do {
                let value = try await read()
                for waiter in batch { waiter.resume(returning: value) }
            } catch {
                for waiter in batch { waiter.resume(throwing: error) }
            }
        }
    }
}
