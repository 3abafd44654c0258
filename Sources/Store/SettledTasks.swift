import AgentKit
import Postgres
import Synchronization

/// Settled tasks (completed, error, cancelled) kept in memory for status reads, so that the
/// read clients repeat most needs no statement.
///
/// A settled task changes only when it is deleted or an operator updates its row; sql/013's
/// triggers notify every process of either, naming the session. A read answers from here only
/// after `caughtUp` proved that this process has heard every notification committed before the
/// read began, so it is never older than a write that finished before it started, whichever
/// process made the write. A read that cannot prove it reads the database.
///
/// Filled by database reads that find a task settled; a fill is dropped when any invalidation
/// arrived while its read ran (`generation`), since the row it read may already be gone.
/// Bounded by an estimate of the bytes it holds; the oldest entries go first.
public final class SettledTasks: Sendable {
    private struct Entry {
        var snapshot: TaskSnapshot
        var bytes: Int
        /// Its place in `order`: a key forgotten and filled again has a new one, and the old place is skipped.
        var slot: UInt64
    }

    private struct State {
        /// By session (a key with an empty task id), so that a session's invalidation touches only its tasks.
        var sessions: [TaskKey: [TaskKey: Entry]] = [:]
        var count = 0
        /// Keys in the order they were filled, with their slots; a slot no entry has any more is skipped.
        var order: [(key: TaskKey, slot: UInt64)] = []
        var head = 0
        var nextSlot: UInt64 = 0
        var bytes = 0
        /// Moves on with every invalidation.
        var generation: UInt64 = 0

        func holds(_ key: TaskKey, slot: UInt64) -> Bool {
            sessions[SettledTasks.session(of: key)]?[key]?.slot == slot
        }

        mutating func remove(_ key: TaskKey, slot: UInt64) {
            let session = SettledTasks.session(of: key)
            guard holds(key, slot: slot), let gone = sessions[session]?.removeValue(forKey: key) else { return }
            if sessions[session]?.isEmpty == true { sessions[session] = nil }
            count -= 1
            bytes -= gone.bytes
        }
    }

    private static func session(of key: TaskKey) -> TaskKey {
        TaskKey(tenantID: key.tenantID, userID: key.userID, sessionID: key.sessionID, taskID: "")
    }

    public static let settledStates: Set<TaskState> = [.completed, .error, .cancelled]
    /// What an entry costs besides its text: the key, the dictionary slot, the snapshot's fields.
    static let entryOverhead = 256

    public let capacityBytes: Int
    private let state = Mutex(State())
    private let proveCaughtUp: @Sendable () async -> Bool

    /// - Parameter caughtUp: true once every invalidation committed before the call has been
    ///   delivered to `invalidate` (`Notifier.caughtUp`).
    public init(capacityBytes: Int, caughtUp: @escaping @Sendable () async -> Bool) {
        self.capacityBytes = max(0, capacityBytes)
        proveCaughtUp = caughtUp
    }

    /// Subscribes a cache to `notifier`: its invalidations, and its proof of being caught up.
    public convenience init(capacityBytes: Int, notifier: Notifier) {
        self.init(capacityBytes: capacityBytes, caughtUp: { await notifier.caughtUp() })
        notifier.onInvalidated { [weak self] in self?.invalidate($0) }
    }

    /// The triggers that keep every process's memory true (sql/013, sql/014), installed and
    /// enabled. Without them (a database not yet migrated: `agentd serve --no-migrate`) nothing
    /// would tell a process that a task was deleted or a key revoked, so reads go to the database.
    public static func invalidationTriggersInstalled(pool: PostgresPool) async throws -> Bool {
        let names = ["task_invalidated_by_delete", "task_invalidated_by_update", "task_invalidated_by_truncate", "api_keys_changed"]
        let installed = try await pool.system { connection in
            try connection.query("""
                SELECT count(*) AS installed FROM pg_trigger
                WHERE tgname = ANY(\(names)) AND NOT tgisinternal AND tgenabled <> 'D'
                  AND tgrelid IN ('tasks'::regclass, 'api_keys'::regclass)
                """).first?.decode("installed", as: Int.self)
        }
        return installed == names.count
    }

    public var count: Int { state.withLock { $0.count } }
    public var bytes: Int { state.withLock { $0.bytes } }
    var generation: UInt64 { state.withLock { $0.generation } }
    /// Keys kept to order evictions, live or not (bounded: see `fill`).
    var orderLength: Int { state.withLock { $0.order.count - $0.head } }

    /// The task as this process last read it settled, if it still may answer a read that starts now.
    func snapshot(_ key: TaskKey) async -> TaskSnapshot? {
        guard state.withLock({ $0.sessions[Self.session(of: key)]?[key] != nil }) else { return nil }
        guard await proveCaughtUp() else { return nil }
        // Looked up again: catching up may have delivered the task's invalidation.
        return state.withLock { $0.sessions[Self.session(of: key)]?[key]?.snapshot }
    }

    /// Keeps the settled ones of `snapshots`, read by a statement that began after `generation`
    /// was taken, unless an invalidation arrived since.
    func fill(_ snapshots: [(key: TaskKey, snapshot: TaskSnapshot, bytes: Int)], readAfter generation: UInt64) {
        guard capacityBytes > 0 else { return }
        state.withLock { state in
            guard state.generation == generation else { return }
            for (key, snapshot, bytes) in snapshots where Self.settledStates.contains(snapshot.state) {
                let cost = bytes + Self.entryOverhead
                guard cost <= capacityBytes else { continue }
                let session = Self.session(of: key)
                if let old = state.sessions[session]?[key] {
                    state.sessions[session]?[key] = Entry(snapshot: snapshot, bytes: cost, slot: old.slot)
                    state.bytes -= old.bytes
                } else {
                    state.sessions[session, default: [:]][key] = Entry(snapshot: snapshot, bytes: cost, slot: state.nextSlot)
                    state.order.append((key, state.nextSlot))
                    state.nextSlot += 1
                    state.count += 1
                }
                state.bytes += cost
            }
            while state.bytes > capacityBytes, state.head < state.order.count {
                let oldest = state.order[state.head]
                state.head += 1
                state.remove(oldest.key, slot: oldest.slot)
            }
            // Keys of invalidated entries stay behind in `order`: rebuilt once they outnumber the live ones.
            if state.order.count - state.head > 2 * state.count + 1024 {
                state.order = state.order[state.head...].filter { state.holds($0.key, slot: $0.slot) }
                state.head = 0
            } else if state.head > 1024, state.head * 2 > state.order.count {
                state.order.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    /// Forgets the tasks of a session, or (nil) every task.
    public func invalidate(_ scope: Notifier.Invalidated?) {
        state.withLock { state in
            state.generation &+= 1
            guard let scope else {
                state = State(generation: state.generation)
                return
            }
            let session = TaskKey(tenantID: scope.tenantID, userID: scope.userID, sessionID: scope.sessionID, taskID: "")
            // Their keys stay in `order` until eviction or the next rebuild (in `fill`) reaches them.
            guard let gone = state.sessions.removeValue(forKey: session) else { return }
            state.count -= gone.count
            state.bytes -= gone.values.reduce(0) { $0 + $1.bytes }
        }
    }
}
