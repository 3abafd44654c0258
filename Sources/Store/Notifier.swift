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
        /// A task paused or ended; the payload names it (`settledPayload`).
        case settled = "agentd_task_settled"
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

    /// `handler` runs when new work may be waiting.
    public func onNewWork(_ handler: @escaping @Sendable () -> Void) {
        subscribers.handlers.withLock { $0.newWork.append(handler) }
    }

    /// `handler` runs with the task that settled, or with nil after a reconnect: any task may have.
    public func onSettled(_ handler: @escaping @Sendable (TaskKey?) -> Void) {
        subscribers.handlers.withLock { $0.settled.append(handler) }
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
            var settled: [@Sendable (TaskKey?) -> Void] = []
        }

        let handlers = Mutex(Handlers())

        func reconnected() {
            let current = handlers.withLock { $0 }
            for handler in current.newWork { handler() }
            for handler in current.settled { handler(nil) }
        }

        func deliver(_ notifications: [PostgresNotification]) {
            let current = handlers.withLock { $0 }
            for notification in notifications {
                switch Channel(rawValue: notification.channel) {
                case .newWork?: for handler in current.newWork { handler() }
                case .settled?:
                    guard let key = Notifier.settledKey(payload: notification.payload) else { continue }
                    for handler in current.settled { handler(key) }
                case nil: continue
                }
            }
        }
    }

    // MARK: Payloads

    /// `pg_notify` on `.settled` for the task named by four SQL text expressions. The payload
    /// is a JSON array of the ids (they may hold any character), built here for every statement
    /// that settles a task, and read back by `settledKey` as JSON, so its exact text (spacing,
    /// escapes) does not matter.
    static func notifySettled(tenant: PostgresQuery, user: PostgresQuery, session: PostgresQuery, task: PostgresQuery) -> PostgresQuery {
        """
        pg_notify(\(Channel.settled.rawValue),
                  json_build_array(\(fragment: tenant), \(fragment: user), \(fragment: session), \(fragment: task))::text)
        """
    }

    /// `pg_notify` on `.newWork` (no payload: dispatchers claim whatever is queued).
    static let notifyNewWork: PostgresQuery = "pg_notify(\(Channel.newWork.rawValue), '')"

    static func settledKey(payload: String) -> TaskKey? {
        guard case .array(let ids)? = try? JSONValue(parsing: Array(payload.utf8)), ids.count == 4,
            let tenant = ids[0].stringValue, let user = ids[1].stringValue, let session = ids[2].stringValue, let task = ids[3].stringValue
        else { return nil }
        return TaskKey(tenantID: tenant, userID: user, sessionID: session, taskID: task)
    }
}
