import AgentKit
import Synchronization

/// Requests waiting for a task to change: status reads waiting for it to leave the queue
/// (`GET /agent/status/...?wait=`) and event streams waiting for its next event or text. Woken
/// through the `Notifier` by the notification that every statement pausing or ending a task
/// sends, whichever process ran it; by this process's own steps (`changed`); by `EventPoller` for
/// the steps of other processes; and by the model's text as it is written (`delta`), from a run in
/// this process or relayed from the process that runs the task (`PeerDeltas`).
public final class TaskWatch: Sendable {
    /// What woke a subscription.
    public struct Wake: Sendable {
        /// The task may have changed: read it again.
        public var changed: Bool
        /// Text written since the last wake, in order.
        public var deltas: [MessageDelta]
    }

    private struct Waiter {
        var changed = false
        var deltas: [MessageDelta] = []
        var deltaBytes = 0
        /// The message whose text overflowed this waiter: the rest of it is dropped too, so the
        /// preview stops rather than skipping a piece.
        var dropping: Int?
        /// Woken by every step (event streams), not only when the task pauses or ends (status waits).
        let wantsSteps: Bool
        let wantsDeltas: Bool
        var continuation: CheckedContinuation<Void, Never>?
        /// The wait is over (timed out) even if nothing came: a late suspension returns at once.
        var released = false

        var ready: Bool { changed || !deltas.isEmpty }
    }

    private struct State {
        /// By task (`TaskKey` compares ids exactly: look-alike ids name two tasks).
        var waiters: [TaskKey: [Int: Waiter]] = [:]
        /// The text of each model call in progress so far, for a stream that joins in the middle.
        var partial: [TaskKey: (position: Int, text: String, done: Bool, full: Bool)] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())
    /// Set on shutdown: no wait starts any more.
    private let closed = Atomic<Bool>(false)

    /// Text kept per waiter (a slow reader) and per model call in progress; beyond it, deltas
    /// are dropped: they are a preview, and the stored `message` that follows has the whole text.
    static let maxDeltaBytes = 1 << 20

    public init() {}

    /// Reads with `read`; while `pending` says the task has not paused or ended yet, waits for a
    /// change (or `timeout`) and reads again. The waiter is registered before the first read, so
    /// a NOTIFY sent between a read and the wait is not missed.
    public func read<T: Sendable>(
        _ key: TaskKey, waitingUpTo timeout: Duration, pending: (T) -> Bool, _ read: () async throws -> T
    ) async throws -> T {
        let subscription = subscribe(key, steps: false)
        defer { subscription.cancel() }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var value = try await read()
        // A reconnect wakes every waiter, settled or not: it waits on until the task is.
        while pending(value), clock.now < deadline, !subscription.isClosed {
            guard await subscription.next(timeout: deadline - clock.now).changed else { return try await read() }
            value = try await read()
        }
        return value
    }

    /// A standing registration for a task's changes, for a reader that reads, waits, and reads
    /// again. It ends with `cancel`, or when the last reference goes: a response whose body never
    /// runs (a HEAD request, a client gone before the body) must not leave its waiter behind.
    public final class Subscription: Sendable {
        let watch: TaskWatch
        public let key: TaskKey
        let id: Int

        init(watch: TaskWatch, key: TaskKey, id: Int) {
            self.watch = watch
            self.key = key
            self.id = id
        }

        deinit { watch.forget(key, id: id) }

        /// Waits until the task may have changed or text arrived since the last wake (or since
        /// `subscribe`), or until `timeout`. A change during the reader's read is not lost: it
        /// wakes the next call at once.
        public func next(timeout: Duration) async -> Wake {
            await watch.wait(key, id: id, timeout: timeout)
            return watch.take(key, id: id)
        }

        /// True once the service is shutting down: readers should finish.
        public var isClosed: Bool { watch.closed.load(ordering: .sequentiallyConsistent) }

        public func cancel() { watch.forget(key, id: id) }
    }

    /// Registers before the reader's first read; `Subscription.cancel` when done. With `steps`,
    /// every step wakes it, not only a pause or an end. With `deltas`, the subscription also
    /// receives the model's text, starting with the text so far of a model call in progress in
    /// this process.
    public func subscribe(_ key: TaskKey, steps: Bool = true, deltas: Bool = false) -> Subscription {
        let closed = self.closed.load(ordering: .sequentiallyConsistent)
        let id = state.withLock { state -> Int in
            state.nextID += 1
            var waiter = Waiter(changed: closed, wantsSteps: steps, wantsDeltas: deltas)
            if deltas, let partial = state.partial[key] {
                if !partial.text.isEmpty { waiter.deltas = [MessageDelta(position: partial.position, delta: .text(partial.text))] }
                if partial.done { waiter.deltas.append(MessageDelta(position: partial.position, delta: .done)) }
                waiter.deltaBytes = partial.text.utf8.count
                // Past the cap already: the rest of that message is not sent either.
                if partial.full { waiter.dropping = partial.position }
            }
            state.waiters[key, default: [:]][state.nextID] = waiter
            return state.nextID
        }
        return Subscription(watch: self, key: key, id: id)
    }

    /// The task changed (a step committed, here or elsewhere): wakes the waiters that follow its steps.
    public func changed(_ key: TaskKey) {
        wake(key) { waiter in if waiter.wantsSteps { waiter.changed = true } }
    }

    /// This process's run of the task stopped: its text in progress is of no use any more. (A
    /// stream that joins while the run goes on gets the text so far of the current model call;
    /// text of a message already stored is dropped by the stream itself.)
    public func runEnded(_ key: TaskKey) {
        state.withLock { _ = $0.partial.removeValue(forKey: key) }
    }

    /// The task paused or ended (its notification): wakes every waiter.
    public func settled(_ key: TaskKey) {
        wake(key) { waiter in waiter.changed = true }
    }

    /// The model wrote text for the task: to the streams that want it.
    public func delta(_ key: TaskKey, _ delta: MessageDelta) {
        let size: Int
        switch delta.delta {
        case .text(let text): size = text.utf8.count
        case .restart, .done: size = 0
        }
        state.withLock { state in
            if state.partial[key]?.position != delta.position { state.partial[key] = (delta.position, "", false, false) }
            // In place: a copy of the text so far per piece would be quadratic in a long reply.
            switch delta.delta {
            case .restart:
                state.partial[key]?.text = ""
                state.partial[key]?.full = false
            case .done: state.partial[key]?.done = true
            case .text(let text):
                // Past the cap the text so far stops growing (a later, smaller piece would leave a hole).
                guard state.partial[key]?.full != true else { break }
                if (state.partial[key]?.text.utf8.count ?? 0) + size <= Self.maxDeltaBytes {
                    state.partial[key]?.text += text
                } else {
                    state.partial[key]?.full = true
                }
            }
        }
        wake(key) { waiter in
            guard waiter.wantsDeltas else { return }
            // Only text is dropped: a restart (which starts the text over) and the end always pass.
            guard case .text = delta.delta else {
                if delta.delta == .restart { waiter.dropping = nil }
                waiter.deltas.append(delta)
                return
            }
            if let dropping = waiter.dropping {
                guard dropping != delta.position else { return }
                waiter.dropping = nil
            }
            guard waiter.deltaBytes + size <= Self.maxDeltaBytes else {
                waiter.dropping = delta.position
                return
            }
            waiter.deltas.append(delta)
            waiter.deltaBytes += size
        }
    }

    /// After the listener reconnects (notifications may have been missed): every waiter reads again.
    public func wakeAll() {
        let keys = state.withLock { Array($0.waiters.keys) }
        for key in keys { wake(key) { $0.changed = true } }
    }

    /// On shutdown: every waiter answers now, and later ones do not wait.
    public func close() {
        closed.store(true, ordering: .sequentiallyConsistent)
        wakeAll()
    }

    /// Applies `change` to every waiter of `key` and resumes the ones it made ready.
    private func wake(_ key: TaskKey, _ change: (inout Waiter) -> Void) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard var waiters = state.waiters[key] else { return [] }
            var resumed: [CheckedContinuation<Void, Never>] = []
            for (id, var waiter) in waiters {
                change(&waiter)
                if waiter.ready, let continuation = waiter.continuation {
                    resumed.append(continuation)
                    waiter.continuation = nil
                }
                waiters[id] = waiter
            }
            state.waiters[key] = waiters
            return resumed
        }
        for continuation in ready { continuation.resume() }
    }

    /// Suspends until the waiter is ready (a change, text, shutdown) or `timeout` passes.
    private func wait(_ key: TaskKey, id: Int, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let now = self.state.withLock { state -> Bool in
                        guard var waiter = state.waiters[key]?[id], !waiter.ready, !waiter.released else { return true }
                        waiter.continuation = continuation
                        state.waiters[key]?[id] = waiter
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // Whichever finished first, the other must not stay suspended.
            let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
                let continuation = state.waiters[key]?[id]?.continuation
                state.waiters[key]?[id]?.continuation = nil
                state.waiters[key]?[id]?.released = true
                return continuation
            }
            continuation?.resume()
        }
    }

    /// What the waiter has gathered, and a fresh start for the next wait.
    private func take(_ key: TaskKey, id: Int) -> Wake {
        let closed = self.closed.load(ordering: .sequentiallyConsistent)
        return state.withLock { state in
            guard var waiter = state.waiters[key]?[id] else { return Wake(changed: true, deltas: []) }
            let wake = Wake(changed: waiter.changed, deltas: waiter.deltas)
            waiter.changed = closed
            waiter.deltas = []
            waiter.deltaBytes = 0
            waiter.released = false
            state.waiters[key]?[id] = waiter
            return wake
        }
    }

    private func forget(_ key: TaskKey, id: Int) {
        state.withLock { state in
            state.waiters[key]?[id] = nil
            if state.waiters[key]?.isEmpty == true { state.waiters[key] = nil }
        }
    }
}
