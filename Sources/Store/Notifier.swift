import AgentKit
import Logging
import Postgres
import ServiceLifecycle
import Synchronization

/// The process's one LISTEN connection: the channel names, what their payloads say, and who
/// is told. Statements send on a channel in the same statement as the change they announce
/// (so a notification arrives exactly when the change commits); subscribers hear of it here.
/// After every (re)connect each subscriber is told that anything may have happened, since
/// notifications sent while no one listened are lost.
public final class Notifier: Service {
    public enum Channel: String, CaseIterable, Sendable {
        /// A task was queued (invoke, resume, hand-back, reaping): dispatchers claim.
        case newWork = "agentd_tasks"
        /// A task paused or ended; the payload names it and its state (`notifySettled`).
        case settled = "agentd_task_settled"
        /// Webhook deliveries were written (sql/011's trigger): deliverers claim.
        case webhooks = "agentd_webhooks"
        /// A settled task was changed or deleted (sql/013's triggers, whoever ran the statement):
        /// the payload names its session, or is empty for every task (`Invalidated`).
        case invalidated = "agentd_task_invalidated"
        /// API keys changed (sql/013's trigger): cached keys are read again.
        case keys = "agentd_keys"
        /// Memories wait for their vectors (sql/021): memory embedders claim.
        case memories = "agentd_memories"
    }

    /// The tasks a change may have touched: one session's, or (nil) any.
    public struct Invalidated: Sendable {
        public var tenantID: String
        public var userID: String
        public var sessionID: String
    }

    private let subscribers = Subscribers()
    private let listener: NotificationListener

    /// Nil when the listener's wake-up pipe cannot be made.
    public init?(conninfo: String, logger: Logger) {
        let subscribers = self.subscribers
        guard
            let listener = NotificationListener(
                conninfo: conninfo, channels: Channel.allCases.map(\.rawValue), logger: logger,
                onConnect: { subscribers.reconnected() }, onNotify: { subscribers.deliver($0) })
        else { return nil }
        self.listener = listener
    }

    /// `handler` runs each time the listening connection is (re)established, the first time included.
    public func onConnect(_ handler: @escaping @Sendable () -> Void) {
        subscribers.handlers.withLock { $0.connects.append(handler) }
    }

    /// `handler` runs when new work may be waiting.
    public func onNewWork(_ handler: @escaping @Sendable () -> Void) {
        subscribers.handlers.withLock { $0.newWork.append(handler) }
    }

    /// `handler` runs when webhook deliveries may be waiting.
    public func onWebhooks(_ handler: @escaping @Sendable () -> Void) {
        subscribers.handlers.withLock { $0.webhooks.append(handler) }
    }

    /// A task that paused or ended, and how.
    public struct Settled: Sendable {
        public var key: TaskKey
        /// Nil from a process of an earlier version, whose payload named the task only.
        public var state: TaskState?
        /// The task's row (`tasks.seq`), when the statement names it (a cancel does): ids may be
        /// reused after a delete, a row never is.
        public var seq: Int64?
    }

    /// `handler` runs with the task that settled, or with nil after a reconnect: any task may have.
    public func onSettled(_ handler: @escaping @Sendable (Settled?) -> Void) {
        subscribers.handlers.withLock { $0.settled.append(handler) }
    }

    /// `handler` runs when settled tasks of a session changed or were deleted, or with nil when
    /// any task may have (a payload too long to name one session, or a reconnect).
    public func onInvalidated(_ handler: @escaping @Sendable (Invalidated?) -> Void) {
        subscribers.handlers.withLock { $0.invalidated.append(handler) }
    }

    /// `handler` runs when memories may be waiting for their vectors.
    public func onMemoriesToEmbed(_ handler: @escaping @Sendable () -> Void) {
        subscribers.handlers.withLock { $0.memories.append(handler) }
    }

    /// `handler` runs when API keys may have changed.
    public func onKeysChanged(_ handler: @escaping @Sendable () -> Void) {
        subscribers.handlers.withLock { $0.keys.append(handler) }
    }

    /// True once every notification committed before the call has been delivered to the
    /// subscribers; false when that cannot be shown promptly (see `NotificationListener.caughtUp`).
    /// Within `Notifier.request`, once per request: a round trip made after the request arrived
    /// covers every write that finished before it arrived, which is all its reads must reflect.
    public func caughtUp() async -> Bool {
        let request = Self.currentRequest
        if request?.caughtUp.load(ordering: .acquiring) == true { return true }
        let caughtUp = await listener.caughtUp()
        if caughtUp { request?.caughtUp.store(true, ordering: .releasing) }
        return caughtUp
    }

    /// One request's proof that the process has caught up (`caughtUp`).
    public final class Request: Sendable {
        let caughtUp = Atomic<Bool>(false)
        public init() {}
    }

    @TaskLocal static var currentRequest: Request?

    /// Runs `body` as one request: its reads from memory share one `caughtUp` round trip.
    public static func request<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        try await $currentRequest.withValue(Request()) { try await body() }
    }

    /// Until shutdown or cancellation: the listening thread notices neither by itself.
    public func run() async throws {
        await withTaskCancellationOrGracefulShutdownHandler {
            await listener.run()
        } onCancelOrGracefulShutdown: {
            self.listener.stop()
        }
    }

    private final class Subscribers: Sendable {
        struct Handlers {
            var newWork: [@Sendable () -> Void] = []
            var settled: [@Sendable (Settled?) -> Void] = []
            var webhooks: [@Sendable () -> Void] = []
            var invalidated: [@Sendable (Invalidated?) -> Void] = []
            var keys: [@Sendable () -> Void] = []
            var memories: [@Sendable () -> Void] = []
            var connects: [@Sendable () -> Void] = []
        }

        let handlers = Mutex(Handlers())

        func reconnected() {
            let current = handlers.withLock { $0 }
            for handler in current.newWork { handler() }
            for handler in current.settled { handler(nil) }
            for handler in current.webhooks { handler() }
            for handler in current.invalidated { handler(nil) }
            for handler in current.keys { handler() }
            for handler in current.memories { handler() }
            for handler in current.connects { handler() }
        }

        func deliver(_ notifications: [PostgresNotification]) {
            let current = handlers.withLock { $0 }
            for notification in notifications {
                switch Channel(rawValue: notification.channel) {
                case .newWork?: for handler in current.newWork { handler() }
                case .webhooks?: for handler in current.webhooks { handler() }
                case .keys?: for handler in current.keys { handler() }
                case .memories?: for handler in current.memories { handler() }
                case .invalidated?:
                    let invalidated = Notifier.invalidated(payload: notification.payload)
                    for handler in current.invalidated { handler(invalidated) }
                case .settled?:
                    guard let settled = Notifier.settled(payload: notification.payload) else { continue }
                    for handler in current.settled { handler(settled) }
                case nil: continue
                }
            }
        }
    }

    // MARK: Payloads

    /// `pg_notify` on `.settled` for the task named by four SQL text expressions, which is now in
    /// the state named by the fifth. The payload is a JSON array of the ids (they may hold any
    /// character) and the state, built here for every statement that settles a task, and read back
    /// by `settled(payload:)` as JSON, so its exact text (spacing, escapes) does not matter.
    static func notifySettled(
        tenant: PostgresQuery, user: PostgresQuery, session: PostgresQuery, task: PostgresQuery, state: PostgresQuery,
        seq: PostgresQuery = "NULL::bigint"
    ) -> PostgresQuery {
        """
        pg_notify(\(Channel.settled.rawValue),
                  json_build_array(\(fragment: tenant), \(fragment: user), \(fragment: session), \(fragment: task), \(fragment: state),
                                   \(fragment: seq))::text)
        """
    }

    /// `notifySettled` for one known task.
    static func notifySettled(key: TaskKey, state: TaskState) -> PostgresQuery {
        notifySettled(
            tenant: "\(key.tenantID)::text", user: "\(key.userID)::text", session: "\(key.sessionID)::text",
            task: "\(key.taskID)::text", state: "\(state.rawValue)::text")
    }

    /// `pg_notify` on `.newWork` (no payload: dispatchers claim whatever is queued).
    static let notifyNewWork: PostgresQuery = "pg_notify(\(Channel.newWork.rawValue), '')"

    /// A select-list item for a statement that frees `key`'s session when the CTE `source` has a
    /// row (it ended, paused or cancelled a task): wakes the dispatchers if the session has queued work.
    static func wakeSessionQueue(of key: TaskKey, ifAnyIn source: String) -> PostgresQuery {
        """
        (SELECT count(\(fragment: notifyNewWork)) FROM (
             SELECT 1 FROM tasks q
             WHERE \(fragment: key.matchesSession("q")) AND q.state = 'queued' AND EXISTS (SELECT 1 FROM \(unsafeSQL: source)) LIMIT 1) AS pending)
        """
    }

    /// sql/013's payload: a JSON array of the session's three ids, or anything else for every task.
    static func invalidated(payload: String) -> Invalidated? {
        guard case .array(let ids)? = try? JSONValue(parsing: Array(payload.utf8)), ids.count == 3,
            let tenant = ids[0].stringValue, let user = ids[1].stringValue, let session = ids[2].stringValue
        else { return nil }
        return Invalidated(tenantID: tenant, userID: user, sessionID: session)
    }

    static func settled(payload: String) -> Settled? {
        guard case .array(let ids)? = try? JSONValue(parsing: Array(payload.utf8)), (4...6).contains(ids.count),
            let tenant = ids[0].stringValue, let user = ids[1].stringValue, let session = ids[2].stringValue,
            let task = ids[3].stringValue
        else { return nil }
        let state = ids.count >= 5 ? ids[4].stringValue.flatMap(TaskState.init(rawValue:)) : nil
        let seq = ids.count == 6 ? ids[5].numberValue.flatMap { $0.isFinite && abs($0) < 9e15 ? Int64($0) : nil } : nil
        return Settled(key: TaskKey(tenantID: tenant, userID: user, sessionID: session, taskID: task), state: state, seq: seq)
    }
}
