import AgentKit
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Outbound
import ServiceLifecycle
import Store
import Synchronization

/// Sends the webhook deliveries that sql/011's trigger writes, from any process: each claimed by
/// one process for one attempt (`WebhookStore.claim`), signed (`WebhookSignature`), sent through
/// `OutboundHTTP` (the same rules as for MCP servers, checked again at every send), and recorded
/// with its status, latency and error. A delivery without a 2xx is tried again after 1 s, 2 s,
/// 4 s … (±10 %), for up to 24 hours. Receivers deduplicate on the delivery id (the body's `id`
/// and `agentd-delivery-id`): a process that dies after sending and before recording sends again.
public struct WebhookDeliverer: Service {
    let store: WebhookStore
    let http: OutboundHTTP
    let logger: Logger
    let scheduler: RoundScheduler
    let attemptTimeout: Duration
    let sending = Sending()

    /// The attempts under way, so that a slow receiver holds one slot, not the whole deliverer.
    final class Sending: Sendable {
        private let tasks = Mutex<[UUID: Task<Void, Never>]>([:])
        var count: Int { tasks.withLock { $0.count } }
        func start(_ work: @escaping @Sendable () async -> Void, then done: @escaping @Sendable () -> Void) {
            let id = UUID()
            tasks.withLock { tasks in
                tasks[id] = Task {
                    await work()
                    _ = self.tasks.withLock { $0.removeValue(forKey: id) }
                    done()
                }
            }
        }
        /// Cancels what is under way (each records its attempt as it stops) and waits for it.
        func stop() async {
            let running = tasks.withLock { Array($0.values) }
            for task in running { task.cancel() }
            for task in running { await task.value }
        }
    }

    /// Attempts under way at once in one process.
    static let concurrency = 16
    /// How long a claimed delivery is this process's before another may try it.
    static let claimSeconds = 60.0

    public init(store: WebhookStore, http: OutboundHTTP, logger: Logger, attemptTimeout: Duration = .seconds(10)) {
        self.store = store
        self.http = http
        self.logger = logger
        self.attemptTimeout = attemptTimeout
        // Rounds come when notified, when a retry falls due, and every ten seconds.
        scheduler = RoundScheduler(safetyInterval: .seconds(10))
    }

    /// Deliveries were written (the `agentd_webhooks` notification, or a reconnect).
    public func poke() { scheduler.due() }

    /// Seconds before attempt `attempt + 1`: 1, 2, 4 … with ±10 % jitter, so that deliveries
    /// that failed together do not all come back together.
    public static func retryDelay(afterAttempt attempt: Int) -> Double {
        Double(1 << min(max(attempt - 1, 0), 20)) * Double.random(in: 0.9...1.1)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await scheduler.run {
                // Claims as slots free up: each attempt that ends asks for a round.
                let free = Self.concurrency - sending.count
                guard free > 0 else { return nil }
                do {
                    let (due, nextIn) = try await store.claim(limit: free, claimSeconds: Self.claimSeconds)
                    let scheduler = self.scheduler
                    for delivery in due { sending.start({ await send(delivery) }, then: { scheduler.due() }) }
                    return due.count == free ? 0 : nextIn
                } catch {
                    logger.warning("claiming webhook deliveries failed", metadata: ["error": "\(String(reflecting: error))"])
                    return 1
                }
            }
        }
        await sending.stop()
    }

    /// The body every attempt of a delivery sends.
    public static func body(_ delivery: DueDelivery) -> [UInt8] {
        let body: JSONValue = [
            "id": .string(delivery.deliveryID), "type": .string(delivery.event), "created_at": .number(delivery.createdAt),
            "tenant_id": .string(delivery.tenantID), "webhook_id": .string(delivery.webhookID), "data": delivery.payload,
        ]
        return Array(body.jsonText.utf8)
    }

    /// What one attempt got: an HTTP status, or why there was none.
    enum Outcome: Sendable {
        case answered(Int)
        case failed(String)
    }

    func send(_ delivery: DueDelivery) async {
        let clock = ContinuousClock()
        let started = clock.now
        let outcome: Outcome
        if let secret = delivery.secret {
            outcome = await Self.withDeadline(attemptTimeout, timedOut: .failed("no answer within \(attemptTimeout.seconds) s")) {
                await attempt(delivery, secret: secret)
            }
        } else {
            outcome = .failed(delivery.secretProblem ?? "the webhook's secret cannot be opened")
        }
        var status: Int?
        var failure: String?
        switch outcome {
        case .answered(let code):
            status = code
            if !(200..<300).contains(code) { failure = "HTTP \(code)" }
        case .failed(let reason): failure = reason
        }
        let latency = (clock.now - started).seconds * 1000
        let delivered = failure == nil
        do {
            try await store.record(
                delivery, statusCode: status, latencyMilliseconds: latency, error: failure, delivered: delivered,
                retryAfter: Self.retryDelay(afterAttempt: delivery.attempt))
        } catch {
            logger.warning("recording a webhook attempt failed", metadata: ["delivery": "\(delivery.deliveryID)", "error": "\(String(reflecting: error))"])
        }
        if !delivered {
            logger.info(
                "webhook delivery failed", metadata: ["delivery": "\(delivery.deliveryID)", "attempt": "\(delivery.attempt)", "reason": "\(failure ?? "")"])
        }
    }

    /// The request and its answer, body included, with no time limit of its own (`withDeadline` sets it).
    func attempt(_ delivery: DueDelivery, secret: String) async -> Outcome {
        let body = Self.body(delivery)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "User-Agent", value: "agentd-webhooks/1")
        headers.add(name: "agentd-delivery-id", value: delivery.deliveryID)
        headers.add(name: "agentd-event", value: delivery.event)
        headers.add(
            name: WebhookSignature.header, value: WebhookSignature.value(body: body, secret: secret, timestamp: Int(Date().timeIntervalSince1970)))
        do {
            let response = try await http.execute(
                url: delivery.url, method: .POST, headers: headers, body: ByteBuffer(bytes: body),
                deadline: .now() + .nanoseconds(Int64(attemptTimeout.seconds * 1e9)))
            // Read (and dropped) so that the connection goes back to its pool.
            _ = try? await response.body.collect(upTo: 64 << 10)
            return .answered(Int(response.status.code))
        } catch let refused as OutboundHTTP.Refused {
            // The reason may name internal addresses the host resolves to: logged, not shown to the tenant.
            logger.info("webhook delivery refused", metadata: ["delivery": "\(delivery.deliveryID)", "reason": "\(refused.reason)"])
            return .failed("refused: the URL's host is not allowed for webhooks (OUTBOUND_ALLOWED_HOSTS, or it resolves to an internal address)")
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            return .failed("no answer within \(attemptTimeout.seconds) s")
        } catch {
            return .failed("\(error)")
        }
    }

    /// `operation`'s result, or `timedOut` once `limit` has passed. The operation runs as a task of
    /// its own, cancelled at the deadline and not waited for: a name lookup or a body that never
    /// ends cannot hold the deliverer past its attempt's time.
    static func withDeadline<T: Sendable>(
        _ limit: Duration, timedOut: T, _ operation: @escaping @Sendable () async -> T
    ) async -> T {
        let (results, continuation) = AsyncStream.makeStream(of: T.self)
        let work = Task {
            continuation.yield(await operation())
            continuation.finish()
        }
        let timer = Task {
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            continuation.yield(timedOut)
            continuation.finish()
        }
        var first = results.makeAsyncIterator()
        let result = await first.next() ?? timedOut
        work.cancel()
        timer.cancel()
        return result
    }
}
