import AgentKit
import Logging
import Synchronization

/// Tells event streams of the steps that other processes commit. A step that pauses or ends a
/// task sends a notification (`Notifier`), and this process's own steps wake its streams
/// directly; the steps in between (a claim, a model message, a tool result, a resume) send
/// nothing, because a notification in every step would cost every task, watched or not. So
/// while any stream of this process waits, one statement per interval reads the latest event
/// number of every task they watch, and wakes the streams of the tasks that moved on.
public final class EventPoller: Sendable {
    public typealias Probe = @Sendable ([TaskKey]) async throws -> [TaskKey: Int]

    /// How soon a stream hears of another process's claim, or of a resume through a third
    /// process: within this. A pause or an end comes at once (its notification), and so do the
    /// steps of a run it relays text from (`PeerRelay`). One small statement per interval per
    /// process, while any stream waits.
    public static let defaultInterval: Duration = .milliseconds(25)

    private struct Watched {
        /// Streams watching the task, by id, with the latest seq each has read.
        var readers: [Int: Int] = [:]
    }

    private struct State {
        var watched: [TaskKey: Watched] = [:]
        var nextID = 0
        var polling = false
    }

    private let state = Mutex(State())
    private let probe: Probe
    private let watch: TaskWatch
    private let interval: Duration
    private let logger: Logger

    public init(interval: Duration, watch: TaskWatch, logger: Logger, probe: @escaping Probe) {
        self.interval = interval
        self.watch = watch
        self.logger = logger
        self.probe = probe
    }

    /// Watches `key` for events after `latest` until `stop`.
    public func track(_ key: TaskKey, latest: Int) -> Int {
        let (id, start) = state.withLock { state -> (Int, Bool) in
            state.nextID += 1
            state.watched[key, default: Watched()].readers[state.nextID] = latest
            let start = !state.polling
            state.polling = true
            return (state.nextID, start)
        }
        if start { Task { await self.poll() } }
        return id
    }

    /// The stream has read up to `latest`.
    public func advance(_ key: TaskKey, id: Int, latest: Int) {
        state.withLock { state in
            if state.watched[key]?.readers[id] != nil { state.watched[key]?.readers[id] = latest }
        }
    }

    public func stop(_ key: TaskKey, id: Int) {
        state.withLock { state in
            state.watched[key]?.readers[id] = nil
            if state.watched[key]?.readers.isEmpty == true { state.watched[key] = nil }
        }
    }

    /// Runs while anything is watched; the next `track` starts it again.
    private func poll() async {
        while true {
            try? await Task.sleep(for: interval)
            let watched = state.withLock { state -> [TaskKey: Int]? in
                guard !state.watched.isEmpty else {
                    state.polling = false
                    return nil
                }
                return state.watched.compactMapValues { $0.readers.values.min() }
            }
            guard let watched else { return }
            do {
                let latest = try await probe(Array(watched.keys))
                for (key, read) in watched where (latest[key] ?? Int.max) > read {
                    // Moved on, or gone (deleted): the stream reads and sees which.
                    watch.changed(key)
                }
            } catch {
                logger.debug("event poll failed", metadata: ["error": "\(String(reflecting: error))"])
            }
        }
    }
}
