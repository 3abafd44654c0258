import Synchronization

/// A client cancelled the task (`POST /agent/cancel`): the run stops its model call at once and
/// takes no further step, but lets a tool that has started finish, since its effect may already
/// be under way. Swift task cancellation is not used for this: it would reach into the tool.
public final class CancelSignal: Sendable {
    private struct State {
        var fired = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var isFired: Bool { state.withLock { $0.fired } }

    public func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Thrown by `abortable` when the signal fired first.
    public struct Fired: Error, Sendable {}

    /// Runs `operation`, cancelling it (Swift cancellation) if the signal fires first.
    public func abortable<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        if isFired { throw Fired() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                await self.waitUntilFired()
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                // The waiter returned: the signal fired, or the caller was cancelled (shutdown).
                if isFired { throw Fired() }
                throw CancellationError()
            }
            return value
        }
    }

    /// Returns when the signal fires or the calling task is cancelled.
    private func waitUntilFired() async {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.fired || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}
