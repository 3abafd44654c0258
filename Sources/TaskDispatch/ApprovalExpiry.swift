import AgentKit
import Logging
import ServiceLifecycle
import Store

/// Decides the approvals that waited past their deadline (`APPROVAL_TIMEOUT_S` or the agent's
/// `approval_timeout_s`) with their timeout action, and queues their tasks again. Deadlines are
/// rows, not timers, so they hold across restarts; every process runs one, which is safe (see
/// `InterruptStore.expire`). It asks the database at the next deadline its last round saw,
/// when this process's runs ask an approval with a deadline (`asked`), and every ten seconds
/// for those asked by processes that died since (`RoundScheduler`).
public struct ApprovalExpiry: Service {
    let interrupts: InterruptStore
    let logger: Logger
    /// Told of each task queued again (this process's event streams).
    let onExpired: @Sendable (TaskKey) -> Void
    /// Told of each approval decided: its timeout action and the seconds it had waited.
    let onDecided: @Sendable (String, Double) -> Void
    let scheduler: RoundScheduler

    /// Approvals decided per statement; more wait for the next round, which comes at once.
    static let batchSize = 500

    public init(
        interrupts: InterruptStore, safetyInterval: Duration = .seconds(10), logger: Logger,
        onExpired: @escaping @Sendable (TaskKey) -> Void = { _ in }, onDecided: @escaping @Sendable (String, Double) -> Void = { _, _ in }
    ) {
        self.interrupts = interrupts
        self.logger = logger
        self.onExpired = onExpired
        self.onDecided = onDecided
        scheduler = RoundScheduler(safetyInterval: safetyInterval)
    }

    /// A run of this process asked an approval that the service decides after `timeout`.
    public func asked(_ timeout: ApprovalTimeout) {
        scheduler.due(at: .now + .seconds(timeout.seconds))
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await scheduler.run {
                do {
                    let round = try await interrupts.expire(limit: Self.batchSize)
                    for key in round.expired { onExpired(key) }
                    for (decision, waited) in round.decisions { onDecided(decision, waited) }
                    if !round.expired.isEmpty { logger.info("approvals expired", metadata: ["tasks": "\(round.expired.count)"]) }
                    return round.expired.count == Self.batchSize ? 0 : round.nextDeadlineIn
                } catch {
                    logger.warning("deciding expired approvals failed", metadata: ["error": "\(String(reflecting: error))"])
                    return 1
                }
            }
        }
    }
}
