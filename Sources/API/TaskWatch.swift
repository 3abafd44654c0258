import AgentKit
import Synchronization

/// Requests waiting for a task to leave the queue (`GET /agent/status/...?wait=`), woken through
/// the `Notifier` by the notification that every statement pausing or ending a task sends,
/// whichever process ran it.
public final class TaskWatch: Sendable {
    private struct Waiter {
        var fired = false
        var continuation: CheckedContinuation<Void, Never>?
    }

    /// By task (`TaskKey` compares ids exactly: look-alike ids name two tasks).
    private let waiters = Mutex<[TaskKey: [Int: Waiter]]>([:])
    private let nextID = Atomic<Int>(0)
    /// Set on shutdown: no wait starts any more.
    private let closed = Atomic<Bool>(false)

    public init() {}

    /// Reads with `read`; if `pending` says the task has not paused or ended yet, waits for its
    /// NOTIFY (or `timeout`) and reads once more. The waiter is registered before the first
    /// read, so a NOTIFY sent between that read and the wait is not missed.
    public func read<T: Sendable>(
        _ key: TaskKey, waitingUpTo timeout: Duration, pending: (T) -> Bool, _ read: () async throws -> T
    ) async throws -> T {
        let name = key
        let id = register(name)
        defer { forget(name, id: id) }
        let first = try await read()
        guard pending(first) else { return first }
        await wait(name, id: id, timeout: timeout)
        return try await read()
    }

    private func register(_ name: TaskKey) -> Int {
        let id = nextID.add(1, ordering: .relaxed).newValue
        // Read under the lock that `close` takes after setting it: a waiter is either seen by
        // close's wake-up or sees `closed` itself.
        waiters.withLock { $0[name, default: [:]][id] = Waiter(fired: closed.load(ordering: .sequentiallyConsistent)) }
        return id
    }

    /// Suspends until the waiter is fired (NOTIFY, reconnect, shutdown) or `timeout` passes.
    private func wait(_ name: TaskKey, id: Int, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let now = self.waiters.withLock { waiters -> Bool in
                        guard var waiter = waiters[name]?[id], !waiter.fired else { return true }
                        waiter.continuation = continuation
                        waiters[name]?[id] = waiter
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            fire(name, id: id)
            group.cancelAll()
        }
    }

    private func forget(_ name: TaskKey, id: Int) {
        waiters.withLock { waiters in
            waiters[name]?[id] = nil
            if waiters[name]?.isEmpty == true { waiters[name] = nil }
        }
    }

    /// The task paused or ended: wakes its waiters.
    public func settled(_ name: TaskKey) {
        let ids = waiters.withLock { $0[name].map { Array($0.keys) } ?? [] }
        for id in ids { fire(name, id: id) }
    }

    /// After the listener reconnects (notifications may have been missed): every waiter reads again.
    public func wakeAll() {
        let all = waiters.withLock { $0.flatMap { name, ids in ids.keys.map { (name, $0) } } }
        for (name, id) in all { fire(name, id: id) }
    }

    /// On shutdown: every waiter answers now, and later ones do not wait.
    public func close() {
        closed.store(true, ordering: .sequentiallyConsistent)
        wakeAll()
    }

    private func fire(_ name: TaskKey, id: Int) {
        let continuation = waiters.withLock { waiters -> CheckedContinuation<Void, Never>? in
            guard var waiter = waiters[name]?[id] else { return nil }
            waiter.fired = true
            defer { waiter.continuation = nil; waiters[name]?[id] = waiter }
            return waiter.continuation
        }
        continuation?.resume()
    }
}
