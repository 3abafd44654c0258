import AgentKit
import Logging
import ServiceLifecycle
import Store
import Synchronization

/// Decides the approvals that waited past their deadline (`APPROVAL_TIMEOUT_S` or the agent's
/// `approval_timeout_s`) with their timeout action, and queues their tasks again. Deadlines are
/// rows, not timers, so they hold across restarts; every process runs one, which is safe (see
/// `InterruptStore.expire`).
///
/// It asks the database only when a deadline may have come: at start, at the next deadline
/// the last round saw, when this process's runs ask an approval with a deadline (`asked`), and
/// every `safetyInterval` for those asked by processes that died since. Without deadlines that is
/// one statement per `safetyInterval`, not one a second per process.
public final class ApprovalExpiry: Service, Sendable {
    let interrupts: InterruptStore
    let safetyInterval: Duration
    let logger: Logger
    /// Told of each task queued again (this process's event streams).
    let onExpired: @Sendable (TaskKey) -> Void
    /// The earliest moment a deadline was announced for by this process's runs.
    private let announced = Mutex<ContinuousClock.Instant?>(nil)

    /// Approvals decided per statement; more wait for the next round, which comes at once.
    static let batchSize = 500
    /// How late after its deadline an approval may be decided (the local clock is checked this often).
    static let tick = Duration.milliseconds(200)

    public init(
        interrupts: InterruptStore, safetyInterval: Duration = .seconds(10), logger: Logger,
        onExpired: @escaping @Sendable (TaskKey) -> Void = { _ in }
    ) {
        self.interrupts = interrupts
        self.safetyInterval = safetyInterval
        self.logger = logger
        self.onExpired = onExpired
    }

    /// A run of this process asked an approval that the service decides after `timeout`.
    public func asked(_ timeout: ApprovalTimeout) {
        let due = ContinuousClock.now + .seconds(timeout.seconds)
        announced.withLock { earliest in
            if earliest.map({ due < $0 }) ?? true { earliest = due }
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var nextRound = ContinuousClock.now
            while !Task.isCancelled {
                let now = ContinuousClock.now
                let announcedDue = self.announced.withLock { $0.map { $0 <= now } ?? false }
                if now >= nextRound || announcedDue {
                    nextRound = await self.round()
                }
                do {
                    try await Task.sleep(for: Self.tick)
                } catch {
                    return
                }
            }
        }
    }

    /// One statement; returns when the next one is due.
    private func round() async -> ContinuousClock.Instant {
        announced.withLock { $0 = nil }
        let started = ContinuousClock.now
        do {
            let (expired, nextIn) = try await interrupts.expire(limit: Self.batchSize)
            for key in expired { onExpired(key) }
            if !expired.isEmpty { logger.info("approvals expired", metadata: ["tasks": "\(expired.count)"]) }
            if expired.count == Self.batchSize { return started }
            let untilNext = nextIn.map { Duration.seconds(max(0, $0)) } ?? safetyInterval
            return started + min(untilNext, safetyInterval)
        } catch {
            logger.warning("deciding expired approvals failed", metadata: ["error": "\(String(reflecting: error))"])
            return started + .seconds(1)
        }
    }
}
