import AgentKit
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Outbound
import ServiceLifecycle
import Store

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

    /// Deliveries sent at once by one process.
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
                do {
                    let (due, nextIn) = try await store.claim(limit: Self.concurrency, claimSeconds: Self.claimSeconds)
                    await withTaskGroup(of: Void.self) { group in
                        for delivery in due { group.addTask { await send(delivery) } }
                    }
                    return due.count == Self.concurrency ? 0 : nextIn
                } catch {
                    logger.warning("claiming webhook deliveries failed", metadata: ["error": "\(String(reflecting: error))"])
                    return 1
                }
            }
        }
    }

    /// The body every attempt of a delivery sends.
    public static func body(_ delivery: DueDelivery) -> [UInt8] {
        let body: JSONValue = [
            "id": .string(delivery.deliveryID), "type": .string(delivery.event), "created_at": .number(delivery.createdAt),
            "tenant_id": .string(delivery.tenantID), "webhook_id": .string(delivery.webhookID), "data": delivery.payload,
        ]
        return Array(body.jsonText.utf8)
    }

    func send(_ delivery: DueDelivery) async {
        let body = Self.body(delivery)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "User-Agent", value: "agentd-webhooks/1")
        headers.add(name: "agentd-delivery-id", value: delivery.deliveryID)
        headers.add(name: "agentd-event", value: delivery.event)
        headers.add(
            name: WebhookSignature.header,
            value: WebhookSignature.value(body: body, secret: delivery.secret, timestamp: Int(Date().timeIntervalSince1970)))
        let clock = ContinuousClock()
        let started = clock.now
        var status: Int?
        var failure: String?
        do {
            let response = try await http.execute(
                url: delivery.url, method: .POST, headers: headers, body: ByteBuffer(bytes: body),
                deadline: .now() + .nanoseconds(Int64(attemptTimeout.seconds * 1e9)))
            status = Int(response.status.code)
            // Read (and dropped) so that the connection goes back to its pool.
            _ = try? await response.body.collect(upTo: 64 << 10)
            if !(200..<300).contains(Int(response.status.code)) { failure = "HTTP \(response.status.code)" }
        } catch let refused as OutboundHTTP.Refused {
            failure = "refused: \(refused.reason)"
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            failure = "no answer within \(attemptTimeout.seconds) s"
        } catch {
            failure = "\(error)"
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
}
