import AgentKit
import Foundation
import Postgres

/// The events a webhook may ask for.
public enum WebhookEvent: String, Sendable, CaseIterable {
    /// The task waits for a human (`interrupted`).
    case interrupt, completed, error, cancelled
}

/// A webhook as clients see it: never its secret.
public struct StoredWebhook: Sendable {
    public var webhookID: String
    public var url: String
    public var events: [WebhookEvent]
    public var agentID: String?
    /// Unix seconds.
    public var createdAt: Double
    public var updatedAt: Double
}

/// A delivery claimed for one attempt: where it goes, the secret that signs it, and what it says.
public struct DueDelivery: Sendable {
    public var tenantID: String
    public var deliveryID: String
    public var webhookID: String
    public var event: String
    public var url: String
    /// Nil when it cannot be opened (`secretProblem` says why): the attempt fails without sending.
    public var secret: String?
    public var secretProblem: String?
    public var payload: JSONValue
    /// Unix seconds: when the event happened.
    public var createdAt: Double
    /// This attempt's number, from 1.
    public var attempt: Int
}

/// One delivery as `GET /webhooks/{id}/deliveries` lists it, with its attempts.
public struct DeliveryRecord: Sendable {
    public var deliveryID: String
    public var event: String
    public var state: String
    public var createdAt: Double
    public var finishedAt: Double?
    public var nextAttemptAt: Double?
    public var taskID: String?
    /// Each: attempt, attempted_at, status_code, latency_ms, error.
    public var attempts: JSONValue
}

/// Tenants' webhooks and their deliveries (`webhooks`, `webhook_deliveries`, `webhook_attempts`;
/// deliveries are written by the trigger of sql/011 with the task change they announce).
public struct WebhookStore: Sendable {
    let pool: PostgresPool
    let secrets: SecretBox?

    public init(pool: PostgresPool, secrets: SecretBox?) {
        self.pool = pool
        self.secrets = secrets
    }

    public static let maxPerTenant = 50
    /// Deliveries are tried for this long after their event, then given up.
    public static let deliveryWindowSeconds = 86_400.0

    /// Whether a secret can be stored (`AGENTD_SECRETS_KEY` is set).
    public var canStoreSecrets: Bool { secrets != nil }

    /// Creates or replaces the webhook; nil when the tenant already has `maxPerTenant` others.
    public func put(
        tenantID: String, webhookID: String, url: String, secret: String, events: [WebhookEvent], agentID: String?
    ) async throws -> StoredWebhook? {
        guard let secrets else { throw SecretBox.Invalid(description: "webhook secrets are stored only encrypted, and AGENTD_SECRETS_KEY is not set") }
        let sealed = try secrets.seal(secret, context: Self.context(tenantID, webhookID))
        return try await pool.tenant(tenantID) { connection in
            try connection.query("""
                INSERT INTO webhooks AS w (tenant_id, webhook_id, url, secret, events, agent_id)
                SELECT \(tenantID), \(webhookID), \(url), \(sealed), \(events.map(\.rawValue))::text[], \(agentID)
                WHERE (SELECT count(*) FROM webhooks o WHERE o.tenant_id = \(tenantID) AND o.webhook_id <> \(webhookID)) < \(Self.maxPerTenant)
                ON CONFLICT (tenant_id, webhook_id) DO UPDATE
                    SET url = excluded.url, secret = excluded.secret, events = excluded.events, agent_id = excluded.agent_id, updated_at = now()
                RETURNING \(unsafeSQL: Self.columns)
                """).first.map(Self.webhook(from:))
        }
    }

    public func get(tenantID: String, webhookID: String) async throws -> StoredWebhook? {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                SELECT \(unsafeSQL: Self.columns) FROM webhooks w
                WHERE w.tenant_id = \(tenantID) AND w.webhook_id = \(webhookID)
                """).first.map(Self.webhook(from:))
        }
    }

    /// Every webhook of the tenant (at most `maxPerTenant`), by id.
    public func list(tenantID: String) async throws -> [StoredWebhook] {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                SELECT \(unsafeSQL: Self.columns) FROM webhooks w
                WHERE w.tenant_id = \(tenantID)
                ORDER BY w.webhook_id COLLATE "C"
                """).rows.map(Self.webhook(from:))
        }
    }

    /// Deletes the webhook and its deliveries, sent or not. False when there was none.
    public func delete(tenantID: String, webhookID: String) async throws -> Bool {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                DELETE FROM webhooks WHERE tenant_id = \(tenantID) AND webhook_id = \(webhookID)
                RETURNING 1 AS deleted
                """).count == 1
        }
    }

    /// The webhook's latest deliveries, newest first, each with its attempts; nil when the webhook does not exist.
    public func deliveries(tenantID: String, webhookID: String, limit: Int) async throws -> [DeliveryRecord]? {
        try await pool.tenant(tenantID) { connection in
            let rows = try connection.query("""
                SELECT d.delivery_id::text AS delivery_id, d.event, d.state, extract(epoch FROM d.created_at)::float8 AS created,
                       extract(epoch FROM d.finished_at)::float8 AS finished,
                       CASE WHEN d.state = 'pending' THEN extract(epoch FROM d.next_attempt_at)::float8 END AS next_attempt,
                       d.payload ->> 'task_id' AS task_id,
                       coalesce((SELECT jsonb_agg(jsonb_build_object(
                                    'attempt', a.attempt, 'attempted_at', extract(epoch FROM a.attempted_at)::float8,
                                    'status_code', a.status_code, 'latency_ms', a.latency_ms, 'error', a.error) ORDER BY a.attempt)
                                 FROM webhook_attempts a WHERE a.tenant_id = d.tenant_id AND a.delivery_id = d.delivery_id), '[]') AS attempts
                FROM webhooks w
                LEFT JOIN LATERAL (
                    SELECT * FROM webhook_deliveries d
                    WHERE d.tenant_id = w.tenant_id AND d.webhook_id = w.webhook_id
                    ORDER BY d.created_at DESC, d.delivery_id DESC
                    LIMIT \(limit)
                ) d ON TRUE
                WHERE w.tenant_id = \(tenantID) AND w.webhook_id = \(webhookID)
                ORDER BY d.created_at DESC, d.delivery_id DESC
                """).rows
            guard !rows.isEmpty else { return nil }
            return try rows.compactMap { row -> DeliveryRecord? in
                guard let id = try row.decode("delivery_id", as: String?.self) else { return nil }
                return DeliveryRecord(
                    deliveryID: id, event: try row.decode("event"), state: try row.decode("state"), createdAt: try row.decode("created"),
                    finishedAt: try row.decode("finished", as: Double?.self), nextAttemptAt: try row.decode("next_attempt", as: Double?.self),
                    taskID: try row.decode("task_id", as: String?.self),
                    attempts: try JSONValue(parsing: try row.decode("attempts", as: PostgresJSON.self).bytes))
            }
        }
    }

    /// Claims up to `limit` deliveries that are due, across tenants, for one attempt each: each is
    /// counted as attempted and not due again for `claimSeconds` (another process tries it then if
    /// this one never records the attempt). `FOR UPDATE SKIP LOCKED`: concurrent claims take
    /// different deliveries.
    /// - Returns: the claimed deliveries, and the seconds until the next one that is pending falls due.
    public func claim(limit: Int, claimSeconds: Double) async throws -> (due: [DueDelivery], nextDueIn: Double?) {
        let rows = try await pool.system { connection in
            try connection.query("""
                WITH due AS (
                    SELECT tenant_id, delivery_id FROM webhook_deliveries
                    WHERE state = 'pending' AND next_attempt_at <= now()
                    ORDER BY next_attempt_at
                    LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED
                ), claimed AS (
                    UPDATE webhook_deliveries d
                    SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => \(claimSeconds))
                    FROM due
                    WHERE d.tenant_id = due.tenant_id AND d.delivery_id = due.delivery_id
                    RETURNING d.tenant_id, d.delivery_id, d.webhook_id, d.event, d.payload, d.attempts, d.created_at
                )
                SELECT c.tenant_id, c.delivery_id::text AS delivery_id, c.webhook_id, c.event, c.payload, c.attempts,
                       extract(epoch FROM c.created_at)::float8 AS created, w.url, w.secret,
                       (SELECT extract(epoch FROM min(n.next_attempt_at) - now())::float8 FROM webhook_deliveries n
                        WHERE n.state = 'pending' AND n.next_attempt_at > now()) AS next_in
                FROM (SELECT 1) AS one
                LEFT JOIN claimed c ON TRUE
                LEFT JOIN webhooks w ON w.tenant_id = c.tenant_id AND w.webhook_id = c.webhook_id
                """).rows
        }
        var due: [DueDelivery] = []
        for row in rows {
            guard let tenantID = try row.decode("tenant_id", as: String?.self), let sealed = try row.decode("secret", as: String?.self) else { continue }
            let webhookID: String = try row.decode("webhook_id")
            // Each row on its own: a secret that does not open fails its delivery's attempt, not the batch.
            var secret: String?
            var problem: String?
            do {
                guard let secrets else { throw SecretBox.Invalid(description: "AGENTD_SECRETS_KEY is not set") }
                secret = try secrets.open(sealed, context: Self.context(tenantID, webhookID))
            } catch {
                problem = "the webhook's secret cannot be opened: \(error)"
            }
            due.append(
                DueDelivery(
                    tenantID: tenantID, deliveryID: try row.decode("delivery_id"), webhookID: webhookID, event: try row.decode("event"),
                    url: try row.decode("url"), secret: secret, secretProblem: problem,
                    payload: try JSONValue(parsing: try row.decode("payload", as: PostgresJSON.self).bytes),
                    createdAt: try row.decode("created"), attempt: try row.decode("attempts")))
        }
        return (due, try rows.first?.decode("next_in", as: Double?.self))
    }

    /// Records an attempt and what follows: delivered, tried again after `retryAfter` seconds, or
    /// given up once the delivery window has passed (the last attempt falls at its end). A failure
    /// is written only while the attempt is still the delivery's latest (a slow attempt whose claim
    /// ran out and was taken over records its attempt row only); a 2xx always delivers.
    public func record(
        _ delivery: DueDelivery, statusCode: Int?, latencyMilliseconds: Double, error: String?, delivered: Bool, retryAfter: Double
    ) async throws {
        try await pool.tenant(delivery.tenantID) { connection in
            try connection.query("""
                WITH attempt AS (
                    -- Runs whatever the UPDATE finds: a data-modifying CTE always runs to completion.
                    INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, status_code, latency_ms, error)
                    SELECT \(delivery.tenantID), \(delivery.deliveryID)::uuid, \(delivery.attempt), \(statusCode), \(latencyMilliseconds), \(error)
                    WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE tenant_id = \(delivery.tenantID) AND delivery_id = \(delivery.deliveryID)::uuid)
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                UPDATE webhook_deliveries d SET
                    state = CASE WHEN \(delivered) THEN 'delivered'
                                 WHEN now() >= d.created_at + make_interval(secs => \(Self.deliveryWindowSeconds)) THEN 'failed'
                                 ELSE 'pending' END,
                    finished_at = CASE WHEN \(delivered) OR now() >= d.created_at + make_interval(secs => \(Self.deliveryWindowSeconds))
                                       THEN now() END,
                    next_attempt_at = least(now() + make_interval(secs => \(retryAfter)),
                                            d.created_at + make_interval(secs => \(Self.deliveryWindowSeconds)))
                WHERE d.tenant_id = \(delivery.tenantID) AND d.delivery_id = \(delivery.deliveryID)::uuid
                  AND (\(delivered) OR d.attempts = \(delivery.attempt)) AND d.state = 'pending'
                """)
        }
    }

    private static let columns = """
        w.webhook_id, w.url, to_jsonb(w.events) AS events, w.agent_id, extract(epoch FROM w.created_at)::float8 AS created, extract(epoch FROM w.updated_at)::float8 AS updated
        """

    private static func webhook(from row: PostgresRow) throws -> StoredWebhook {
        StoredWebhook(
            webhookID: try row.decode("webhook_id"), url: try row.decode("url"),
            events: Self.events(try JSONValue(parsing: try row.decode("events", as: PostgresJSON.self).bytes)),
            agentID: try row.decode("agent_id", as: String?.self), createdAt: try row.decode("created"), updatedAt: try row.decode("updated"))
    }

    private static func events(_ json: JSONValue) -> [WebhookEvent] {
        guard case .array(let items) = json else { return [] }
        return items.compactMap { $0.stringValue.flatMap(WebhookEvent.init(rawValue:)) }
    }

    /// Where a secret belongs, bound into its ciphertext.
    private static func context(_ tenantID: String, _ webhookID: String) -> String {
        JSONValue.array([.string(tenantID), .string("webhook"), .string(webhookID)]).jsonText
    }
}
