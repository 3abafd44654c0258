import Foundation
import Logging
import Postgres
import Synchronization

/// Owns one connection and one OS thread that LISTENs on channels and calls `onNotify` for
/// every batch of notifications, and `onConnect` after every (re)connect so that nothing sent
/// while it was away is missed. It sleeps in poll(2) on the socket; `stop()` and `caughtUp`
/// wake it through pipes.
final class NotificationListener: Sendable {
    /// Callers of `caughtUp` waiting for a round trip on the connection: `waiting` for the next
    /// one to be sent, `sent` for the one under way.
    private struct Barriers {
        var waiting: [Int: (deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var sent: [Int: (deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var nextID = 0
        /// Listening now (every channel), so a round trip proves delivery.
        var connected = false
        /// A byte is in the pipe for `waiting`; the thread has not taken them yet.
        var woken = false
        /// A task fails the waiters whose deadline passed (one at a time, for every waiter).
        var timing = false
    }
    private let conninfo: String
    private let channels: [String]
    private let logger: Logger
    private let onConnect: @Sendable () -> Void
    private let onNotify: @Sendable ([PostgresNotification]) -> Void
    private let pipe: (read: Int32, write: Int32)
    private let barrierPipe: (read: Int32, write: Int32)
    private let stopped = Atomic<Bool>(false)
    private let barriers = Mutex(Barriers())
    /// How long `caughtUp` waits for its round trip before it answers false.
    static let barrierTimeout: Duration = .seconds(1)

    init?(
        conninfo: String, channels: [String], logger: Logger, onConnect: @escaping @Sendable () -> Void,
        onNotify: @escaping @Sendable ([PostgresNotification]) -> Void
    ) {
        var descriptors: [Int32] = [0, 0]
        guard Foundation.pipe(&descriptors) == 0 else { return nil }
        var barrierDescriptors: [Int32] = [0, 0]
        guard Foundation.pipe(&barrierDescriptors) == 0 else {
            close(descriptors[0])
            close(descriptors[1])
            return nil
        }
        // The thread drains it without blocking; a caller never blocks writing to it.
        for descriptor in barrierDescriptors { _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK) }
        barrierPipe = (barrierDescriptors[0], barrierDescriptors[1])
        self.conninfo = conninfo
        self.channels = channels
        self.logger = logger
        self.onConnect = onConnect
        self.onNotify = onNotify
        pipe = (descriptors[0], descriptors[1])
    }

    deinit {
        close(pipe.read)
        close(pipe.write)
        close(barrierPipe.read)
        close(barrierPipe.write)
    }

    /// True once every notification committed before this call has been delivered to `onNotify`
    /// (and `onNotify` returned); false when that cannot be proved within `barrierTimeout`
    /// (not connected, or the connection is slow). One round trip on the listening connection
    /// serves every caller that arrived while the previous one was under way.
    ///
    /// Why a round trip proves it: a committing session signals every listening backend before
    /// its COMMIT returns, and an idle backend sends what it was signalled about before it reads
    /// the next query; libpq hands over the notifications that came before a result.
    func caughtUp() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let (wake, time, refused) = barriers.withLock { state -> (Bool, Bool, Bool) in
                guard state.connected, !stopped.load(ordering: .relaxed) else { return (false, false, true) }
                state.nextID += 1
                state.waiting[state.nextID] = (ContinuousClock.now + Self.barrierTimeout, continuation)
                let wake = !state.woken
                state.woken = true
                let time = !state.timing
                state.timing = true
                return (wake, time, false)
            }
            if refused { return continuation.resume(returning: false) }
            if wake {
                var byte: UInt8 = 1
                _ = write(barrierPipe.write, &byte, 1)
            }
            if time { Task { await self.expireBarriers() } }
        }
    }

    /// Fails the waiters whose deadline passed, until none is left.
    private func expireBarriers() async {
        while true {
            let next = barriers.withLock { state -> ContinuousClock.Instant? in
                let now = ContinuousClock.now
                for (id, waiter) in state.waiting where waiter.deadline <= now {
                    state.waiting[id] = nil
                    waiter.continuation.resume(returning: false)
                }
                for (id, waiter) in state.sent where waiter.deadline <= now {
                    state.sent[id] = nil
                    waiter.continuation.resume(returning: false)
                }
                let earliest = (state.waiting.values.map(\.deadline) + state.sent.values.map(\.deadline)).min()
                if earliest == nil { state.timing = false }
                return earliest
            }
            guard let next else { return }
            try? await Task.sleep(until: next, clock: .continuous)
        }
    }

    /// Answers every waiter with `value` and forgets them (on a lost connection: false).
    private func settleBarriers(_ value: Bool, connected: Bool) {
        barriers.withLock { state in
            for waiter in state.waiting.values { waiter.continuation.resume(returning: value) }
            for waiter in state.sent.values { waiter.continuation.resume(returning: value) }
            state.waiting = [:]
            state.sent = [:]
            state.connected = connected
            // A byte may be left in the pipe; the thread drains it and finds nobody waiting.
            state.woken = false
        }
    }

    /// On the thread: a round trip for the waiters that asked before it was sent.
    private func runBarrier(_ connection: PostgresConnection) throws {
        let due = barriers.withLock { state -> Bool in
            state.woken = false
            state.sent.merge(state.waiting) { first, _ in first }
            state.waiting = [:]
            return !state.sent.isEmpty
        }
        guard due else { return }
        try connection.query("SELECT 1")
        let received = try connection.pendingNotifications()
        if !received.isEmpty { onNotify(received) }
        barriers.withLock { state in
            for waiter in state.sent.values { waiter.continuation.resume(returning: true) }
            state.sent = [:]
        }
    }

    /// Runs the listening thread until `stop()`.
    func run() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread { [self] in
                loop()
                done.resume()
            }
            thread.name = "agentd-listener"
            thread.start()
        }
    }

    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        var byte: UInt8 = 1
        _ = write(pipe.write, &byte, 1)
        settleBarriers(false, connected: false)
    }

    private func loop() {
        var backoff = 0.1
        while !stopped.load(ordering: .sequentiallyConsistent) {
            do {
                let connection = try PostgresConnection.connect(conninfo, settings: .init(applicationName: "agentd-listener"))
                defer { connection.close() }
                for channel in channels { try connection.listen(channel) }
                logger.debug("listening", metadata: ["channels": "\(channels)"])
                backoff = 0.1
                onConnect()  // catch up on anything sent while we were not listening
                barriers.withLock { $0.connected = true }
                // Whatever happens to the connection, no waiter is left believing it is caught up.
                defer { settleBarriers(false, connected: false) }
                while !stopped.load(ordering: .sequentiallyConsistent) {
                    let received = try connection.waitForNotifications(
                        timeout: .seconds(10), wakeDescriptors: [pipe.read, barrierPipe.read])
                    if !received.isEmpty { onNotify(received) }
                    // Emptied before `woken` is read: a byte written after this wakes the next wait.
                    var byte: UInt8 = 0
                    while read(barrierPipe.read, &byte, 1) > 0 {}
                    if barriers.withLock({ $0.woken }) {
                        try runBarrier(connection)
                    } else if received.isEmpty, !stopped.load(ordering: .sequentiallyConsistent) {
                        // Quiet for a while: prove the connection is alive (a silent network drop
                        // would otherwise leave us waiting forever).
                        try connection.query("SELECT 1")
                    }
                    // Learnt from the result just read: a server that turned read-only (demoted)
                    // sends no more notifications; listen where writes go now.
                    if connection.isReadOnlySession {
                        throw PostgresError(
                            code: .connectionLost, sqlState: PostgresError.SQLState.readOnlySQLTransaction,
                            message: "the server became read-only (a standby)")
                    }
                }
            } catch {
                guard !stopped.load(ordering: .sequentiallyConsistent) else { break }
                logger.warning("listener connection lost; reconnecting", metadata: ["error": "\(String(reflecting: error))"])
                sleepUnlessStopped(seconds: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
    }

    private func sleepUnlessStopped(seconds: Double) {
        var descriptor = pollfd(fd: pipe.read, events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, Int32(seconds * 1000))
    }
}
