import AgentKit
import Synchronization

/// Requests waiting for a task to change: status reads waiting for it to leave the queue
/// (`GET /agent/status/...?wait=`) and event streams waiting for its next event. Woken through
/// the `Notifier` by the notification that every statement pausing or ending a task sends,
/// whichever process ran it; by this process's own steps (`changed`); and by `EventPoller` for
/// the steps of other processes.
public final class TaskWatch: Sendable {
    private struct Waiter {
        var fired = false
        var continuation: CheckedContinuation<Void, Never>?
    }

    /// By task (`TaskKey` compares ids exactly: look-alike ids name two tasks).
    private let waiters = Mutex<[TaskKey: [Int: Waiter]]>([:])
    private let nextID = Atomic<Int>(0)
    /// Set on shutdown: no wait starts any more.
    fileprivate let closed = Atomic<Bool>(false)

    public init() {}

    /// Reads with `read`; while `pending` says the task has not paused or ended yet, waits for a
    /// change (or `timeout`) and reads again. The waiter is registered before the first read, so
    /// a NOTIFY sent between a read and the wait is not missed.
    public func read<T: Sendable>(
        _ key: TaskKey, waitingUpTo timeout: Duration, pending: (T) -> Bool, _ read: () async throws -> T
    ) async throws -> T {
        let subscription = subscribe(key)
        defer { subscription.cancel() }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var value = try await read()
        // Steps that do not settle the task wake it too (`changed`): it waits on until one does.
        while pending(value), clock.now < deadline, !subscription.isClosed {
            guard await subscription.next(timeout: deadline - clock.now) else { return try await read() }
            value = try await read()
        }
        return value
    }

    /// A standing registration for a task's changes, for a reader that reads, waits, and reads again.
    public struct Subscription: Sendable {
        let watch: TaskWatch
        public let key: TaskKey
        let id: Int

        /// Waits until the task may have changed since the last wake (or since `subscribe`), or
        /// until `timeout`; false on timeout. A change during the reader's read is not lost: it
        /// wakes the next call at once.
        public func next(timeout: Duration) async -> Bool {
            let fired = await watch.wait(key, id: id, timeout: timeout)
            watch.rearm(key, id: id)
            return fired
        }

        /// True once the service is shutting down: readers should finish.
        public var isClosed: Bool { watch.closed.load(ordering: .sequentiallyConsistent) }

        public func cancel() { watch.forget(key, id: id) }
    }

    /// Registers before the reader's first read; `Subscription.cancel` when done.
    public func subscribe(_ key: TaskKey) -> Subscription {
        Subscription(watch: self, key: key, id: register(key))
    }

    /// The task changed (a step this process committed): wakes its waiters.
    public func changed(_ key: TaskKey) { settled(key) }

    private func rearm(_ name: TaskKey, id: Int) {
        waiters.withLock { waiters in
            guard var waiter = waiters[name]?[id] else { return }
            waiter.fired = closed.load(ordering: .sequentiallyConsistent)
            waiters[name]?[id] = waiter
        }
    }

    private func register(_ name: TaskKey) -> Int {
        let id = nextID.add(1, ordering: .relaxed).newValue
        // Read under the lock that `close` takes after setting it: a waiter is either seen by
        // close's wake-up or sees `closed` itself.
        waiters.withLock { $0[name, default: [:]][id] = Waiter(fired: closed.load(ordering: .sequentiallyConsistent)) }
        return id
    }

    /// Suspends until the waiter is fired (NOTIFY, reconnect, shutdown) or `timeout` passes;
    /// true when fired.
    @discardableResult
    private func wait(_ name: TaskKey, id: Int, timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
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
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let fired = await group.next() ?? false
            fire(name, id: id)
            group.cancelAll()
            return fired
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
