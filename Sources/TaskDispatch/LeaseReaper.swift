import Logging
import ServiceLifecycle
import Store
import Telemetry

/// Puts tasks whose lease expired (their process died or stalled) back in the queue, or ends
/// them in `error` once they have used `maxAttempts` claims. Every process runs one, which is
/// safe: the reaping statement locks the rows it takes (`FOR UPDATE SKIP LOCKED`), so each
/// expired task is reaped by exactly one process, and what it re-queues or ends notifies like
/// any other change (dispatchers claim, waiting status reads answer).
public struct LeaseReaper: Service {
    let queue: TaskQueue
    let interval: Duration
    let maxAttempts: Int
    let logger: Logger
    let metrics: ServiceMetrics

    /// - Parameter interval: how often to look; a third of the lease, so a dead process's tasks
    ///   are back in the queue within a lease and a third of its death.
    public init(queue: TaskQueue, interval: Duration, maxAttempts: Int, logger: Logger, metrics: ServiceMetrics = .disabled()) {
        self.queue = queue
        self.interval = interval
        self.maxAttempts = max(1, maxAttempts)
        self.logger = logger
        self.metrics = metrics
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while true {
                do {
                    try await Task.sleep(for: interval)
                } catch {
                    return
                }
                do {
                    let reaped = try await queue.reapExpiredLeases(maxAttempts: maxAttempts)
                    metrics.leasesExpired.increment(by: reaped.requeued + reaped.failed)
                    for _ in 0..<reaped.failed { metrics.taskFinished(.error) }
                    if reaped.requeued > 0 || reaped.failed > 0 {
                        logger.warning("expired leases", metadata: ["requeued": "\(reaped.requeued)", "failed": "\(reaped.failed)"])
                    }
                } catch {
                    logger.warning("reaping expired leases failed", metadata: ["error": "\(String(reflecting: error))"])
                }
            }
        }
    }
}
