import Logging
import NIOPosix
import Synchronization

/// A bounded pool of connections with a thread pool of the same size beside it.
///
/// Work is handed over as a synchronous closure that runs on one of the pool's own
/// threads with a connection to itself, so a whole transaction costs one thread hop and
/// no event loop or cooperative-pool thread ever waits on the database.
public final class PostgresPool: Sendable {
    public struct Configuration: Sendable {
        /// URL or conninfo string.
        public var conninfo: String
        /// Connections (and threads) at most.
        public var size: Int
        /// How long a caller waits for a free connection before `poolTimeout`.
        public var acquireTimeout: Duration
        public var connectionSettings: PostgresConnection.Settings
        /// Told how long each caller waited for its connection (a metric's histogram).
        public var onAcquired: (@Sendable (Duration) -> Void)?

        public init(
            conninfo: String, size: Int = 8, acquireTimeout: Duration = .seconds(5),
            connectionSettings: PostgresConnection.Settings = .init(), onAcquired: (@Sendable (Duration) -> Void)? = nil
        ) {
            self.conninfo = conninfo
            self.size = max(1, size)
            self.acquireTimeout = acquireTimeout
            self.connectionSettings = connectionSettings
            self.onAcquired = onAcquired
        }
    }

    /// What a waiting caller is given: a connection, or the right to open one.
    private enum Grant: Sendable {
        case connection(PostgresConnection)
        case openSlot
    }

    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Grant, any Error>
    }

    /// Who is served first when callers wait for a connection.
    public enum Priority: Sendable {
        case normal
        /// Served before every `normal` waiter: work that feeds many callers at once (the
        /// dispatcher's claim). Behind thousands of task starts in the queue, a claim waited up
        /// to a second, and the tasks it would have started with it.
        case urgent
    }

    private struct State {
        var idle: [PostgresConnection] = []
        /// Connections that exist or are being opened, idle or not.
        var open = 0
        var waiters = WaiterQueue()
        var urgentWaiters = WaiterQueue()
        var nextWaiterID = 0
        var closed = false

        /// Urgent waiters served in a row while normal ones waited.
        var urgentStreak = 0

        /// Urgent first, but never more than `maxUrgentStreak` in a row while normal callers wait:
        /// with a small pool, a steady stream of urgent work must not starve them.
        mutating func nextWaiter() -> Waiter? {
            if waiters.isEmpty || urgentStreak < PostgresPool.maxUrgentStreak, let urgent = urgentWaiters.popFirst() {
                urgentStreak = waiters.isEmpty ? 0 : urgentStreak + 1
                return urgent
            }
            urgentStreak = 0
            return waiters.popFirst() ?? urgentWaiters.popFirst()
        }
    }

    /// First in, first out, without moving the whole queue on each removal (thousands wait
    /// under a burst of task starts).
    private struct WaiterQueue {
        private var items: [Waiter?] = []
        private var head = 0
        private(set) var count = 0

        var isEmpty: Bool { count == 0 }

        mutating func append(_ waiter: Waiter) {
            items.append(waiter)
            count += 1
        }

        mutating func popFirst() -> Waiter? {
            while head < items.count {
                let waiter = items[head]
                items[head] = nil
                head += 1
                if let waiter {
                    count -= 1
                    compact()
                    return waiter
                }
            }
            compact()
            return nil
        }

        /// Removes the waiter `id` (timed out or cancelled), wherever it is.
        mutating func remove(id: Int) -> Waiter? {
            guard let index = items[head...].firstIndex(where: { $0?.id == id }), let waiter = items[index] else { return nil }
            items[index] = nil
            count -= 1
            compact()
            return waiter
        }

        mutating func removeAll() -> [Waiter] {
            let all = items[head...].compactMap { $0 }
            self = WaiterQueue()
            return all
        }

        private mutating func compact() {
            if count == 0 {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 64, head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
        }
    }

    public struct Statistics: Sendable {
        public var open: Int
        public var idle: Int
        public var waiting: Int
    }

    static let maxUrgentStreak = 4

    public let configuration: Configuration
    private let threads: NIOThreadPool
    private let state = Mutex(State())
    private let logger: Logger

    public init(configuration: Configuration, logger: Logger = Logger(label: "agentd.postgres")) {
        self.configuration = configuration
        self.logger = logger
        threads = NIOThreadPool(numberOfThreads: configuration.size)
        threads.start()
    }

    public var statistics: Statistics {
        state.withLock { Statistics(open: $0.open, idle: $0.idle.count, waiting: $0.waiters.count + $0.urgentWaiters.count) }
    }

    // MARK: Using a connection

    /// Runs `body` on a pool thread with a connection of its own. Cancelling the calling task
    /// cancels the running statement on the server.
    @discardableResult
    public func withConnection<T: Sendable>(
        priority: Priority = .normal, _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        try await withConnection(preferring: nil, priority: priority, body)
    }

    /// `withConnection`, on an idle connection that already has `settings` for its session if there
    /// is one (see `PostgresConnection.applyForSession`): a tenant's work and the dispatcher's
    /// alternate on a pool, and each switch costs a round trip.
    private func withConnection<T: Sendable>(
        preferring settings: [(name: String, value: String)]?, priority: Priority,
        _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        let asked = ContinuousClock.now
        let connection = try await acquire(preferring: settings, priority: priority)
        defer { release(connection) }
        configuration.onAcquired?(ContinuousClock.now - asked)
        // A cancel that arrived while acquiring would find no statement to cancel.
        try Task.checkCancellation()
        return try await withTaskCancellationHandler {
            try await threads.runIfActive { try body(connection) }
        } onCancel: {
            connection.cancelRunningStatement()
        }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    @discardableResult
    public func withTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withConnection { connection in try connection.withTransaction(body) }
    }

    /// Runs `body` in a transaction with `SET LOCAL` settings (see `PostgresConnection.withTransaction(settings:_:)`).
    @discardableResult
    public func withTransaction<T: Sendable>(
        settings: [(name: String, value: String)], _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        try await withConnection { connection in
            try connection.withTransaction(settings: settings, body)
        }
    }

    /// Runs `body` outside a transaction block, each statement its own transaction, under session
    /// `settings` (see `PostgresConnection.applyForSession`): a one-statement body is one round trip.
    @discardableResult
    public func withSessionSettings<T: Sendable>(
        _ settings: [(name: String, value: String)], priority: Priority = .normal,
        _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        try await withConnection(preferring: settings, priority: priority) { connection in
            try connection.applyForSession(settings)
            return try body(connection)
        }
    }

    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresResult {
        try await withConnection { connection in try connection.query(query) }
    }

    /// Proves a round trip to the server works.
    public func healthCheck() async throws {
        try await query("SELECT 1")
    }

    /// Fails waiting callers, closes idle connections, and closes busy ones as they come back.
    public func shutdown() async {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            let idle = state.idle
            state.open -= state.idle.count
            state.idle = []
            return (idle, state.urgentWaiters.removeAll() + state.waiters.removeAll())
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: PostgresError(code: .poolClosed, message: "the pool is shut down"))
        }
        for connection in idle { connection.close() }
        try? await threads.shutdownGracefully()
    }

    // MARK: Acquire and release

    private func acquire(preferring settings: [(name: String, value: String)]?, priority: Priority) async throws -> PostgresConnection {
        while true {
            switch try await grant(preferring: settings, priority: priority) {
            case .connection(let connection):
                if connection.isReusable() { return connection }
                logger.debug("discarding a pooled connection that went bad while idle")
                discard(connection)
            case .openSlot:
                return try await openConnection()
            }
        }
    }

    private func grant(preferring settings: [(name: String, value: String)]?, priority: Priority) async throws -> Grant {
        try Task.checkCancellation()
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        // The timer exists only for a caller that waits: most find a connection at once, and a
        // Task per statement was a measurable share of the pool's cost.
        let timer = Mutex<Task<Void, any Error>?>(nil)
        defer { timer.withLock { $0?.cancel() } }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Grant, any Error>) in
                let immediate: Result<Grant, any Error>? = state.withLock { state in
                    if state.closed { return .failure(PostgresError(code: .poolClosed, message: "the pool is shut down")) }
                    if let settings, let index = state.idle.lastIndex(where: { $0.hasSessionSettings(settings) }) {
                        return .success(.connection(state.idle.remove(at: index)))
                    }
                    if let connection = state.idle.popLast() { return .success(.connection(connection)) }
                    if state.open < configuration.size {
                        state.open += 1
                        return .success(.openSlot)
                    }
                    switch priority {
                    case .normal: state.waiters.append(Waiter(id: id, continuation: continuation))
                    case .urgent: state.urgentWaiters.append(Waiter(id: id, continuation: continuation))
                    }
                    return nil
                }
                if let immediate {
                    continuation.resume(with: immediate)
                } else {
                    let timeout = configuration.acquireTimeout
                    timer.withLock { timer in
                        timer = Task { [weak self] in
                            try await Task.sleep(for: timeout)
                            self?.failWaiter(
                                id, with: PostgresError(code: .poolTimeout, message: "no database connection became free within \(timeout)"))
                        }
                    }
                }
            }
        } onCancel: {
            failWaiter(id, with: CancellationError())
        }
    }

    private func failWaiter(_ id: Int, with error: any Error) {
        let waiter = state.withLock { state in state.urgentWaiters.remove(id: id) ?? state.waiters.remove(id: id) }
        waiter?.continuation.resume(throwing: error)
    }

    /// Opens a connection in a slot already counted in `open`.
    private func openConnection() async throws -> PostgresConnection {
        let conninfo = configuration.conninfo
        let settings = configuration.connectionSettings
        do {
            return try await threads.runIfActive { try PostgresConnection.connect(conninfo, settings: settings) }
        } catch {
            giveUpSlot()
            throw error
        }
    }

    private func release(_ connection: PostgresConnection) {
        guard connection.isReusable() else {
            discard(connection)
            return
        }
        let handOver = state.withLock { state -> (Waiter?, close: Bool) in
            if let waiter = state.nextWaiter() { return (waiter, false) }
            if state.closed {
                state.open -= 1
                return (nil, true)
            }
            state.idle.append(connection)
            return (nil, false)
        }
        if let waiter = handOver.0 { waiter.continuation.resume(returning: .connection(connection)) }
        if handOver.close { closeOffLoop(connection) }
    }

    /// Closes a broken connection; its slot goes to the first waiter, who opens a new one.
    private func discard(_ connection: PostgresConnection) {
        closeOffLoop(connection)
        giveUpSlot()
    }

    private func giveUpSlot() {
        let waiter = state.withLock { state -> Waiter? in
            if !state.closed, let waiter = state.nextWaiter() { return waiter }
            state.open -= 1
            return nil
        }
        waiter?.continuation.resume(returning: .openSlot)
    }

    /// `PQfinish` writes to the socket, so it runs on the pool's threads too.
    private func closeOffLoop(_ connection: PostgresConnection) {
        threads.submit { _ in connection.close() }
    }
}
