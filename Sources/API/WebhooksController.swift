import AgentKit
import Foundation
import Hummingbird
import Store

/// A tenant's webhooks: `PUT /webhooks/{webhook_id}` registers or replaces one, `GET` lists or
/// reads them (never the secret), `DELETE` removes one with its deliveries, and
/// `GET /webhooks/{id}/deliveries` shows the latest deliveries with every attempt. Tenant and
/// operator keys only: webhooks see every user's tasks.
public struct WebhooksController: Sendable {
    let webhooks: WebhookStore
    /// `OUTBOUND_ALLOWED_HOSTS`: a URL it refuses outright is refused here, at registration.
    let outbound: OutboundPolicy

    public init(webhooks: WebhookStore, outbound: OutboundPolicy) {
        self.webhooks = webhooks
        self.outbound = outbound
    }

    static let minSecretBytes = 16
    static let maxSecretBytes = 512
    static let maxURLBytes = 2048

    public var endpoints: RouteCollection<TenantRequestContext> {
        let routes = RouteCollection(context: TenantRequestContext.self)
        routes.put("/webhooks/:webhook_id", use: put)
        routes.get("/webhooks", use: list)
        routes.get("/webhooks/:webhook_id", use: get)
        routes.delete("/webhooks/:webhook_id", use: delete)
        routes.get("/webhooks/:webhook_id/deliveries", use: deliveries)
        return routes
    }

    @Sendable func put(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "webhooks are managed")
        let webhookID = try Validate.pathID(context, "webhook_id", creating: true)
        let body = try await JSONBody.decode(JSONValue.self, from: request, context: context)
        guard case .object(let object) = body else { throw APIError.unprocessable("body must be a JSON object") }
        let known: Set<String> = ["url", "secret", "events", "agent_id"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw APIError.unprocessable("\(unknown): is not a field of a webhook (fields: \(known.sorted().joined(separator: ", ")))")
        }
        guard case .string(let url)? = object["url"] else { throw APIError.unprocessable("url: is required, an http(s) URL") }
        guard url.utf8.count <= Self.maxURLBytes else { throw APIError.unprocessable("url: must be at most \(Self.maxURLBytes) bytes") }
        if let problem = OutboundURL.problem(with: url) { throw APIError.unprocessable("url: \(problem)") }
        if let host = OutboundURL.host(of: url), let refused = outbound.refusal(host: host) {
            throw APIError.unprocessable("url: \(refused)")
        }
        guard case .string(let secret)? = object["secret"], (Self.minSecretBytes...Self.maxSecretBytes).contains(secret.utf8.count),
            !secret.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else {
            throw APIError.unprocessable("secret: is required, \(Self.minSecretBytes) to \(Self.maxSecretBytes) bytes without control characters")
        }
        guard case .array(let names)? = object["events"], !names.isEmpty else {
            throw APIError.unprocessable("events: is required, a non-empty array of \(Self.eventNames)")
        }
        var events: [WebhookEvent] = []
        for (index, name) in names.enumerated() {
            guard let event = name.stringValue.flatMap(WebhookEvent.init(rawValue:)) else {
                throw APIError.unprocessable("events[\(index)]: must be one of \(Self.eventNames)")
            }
            if !events.contains(event) { events.append(event) }
        }
        var agentID: String?
        switch object["agent_id"] {
        case nil, .null?: break
        case .string(let agent)?: agentID = try Validate.id(agent, field: "agent_id")
        case .some: throw APIError.unprocessable("agent_id: must be a string")
        }
        guard webhooks.canStoreSecrets else {
            throw APIError.unprocessable("secret: webhook secrets are stored only encrypted, and this server has no AGENTD_SECRETS_KEY")
        }
        guard
            let stored = try await webhooks.put(
                tenantID: context.tenantID, webhookID: webhookID, url: url, secret: secret, events: events, agentID: agentID)
        else {
            throw APIError(.conflict, "this tenant already has \(WebhookStore.maxPerTenant) webhooks; delete one first")
        }
        return JSONBody.response(Self.json(stored))
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "webhooks are managed")
        let all = try await webhooks.list(tenantID: context.tenantID)
        return JSONBody.response(["webhooks": .array(all.map(Self.json))])
    }

    @Sendable func get(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "webhooks are managed")
        let webhookID = try Validate.pathID(context, "webhook_id")
        guard let stored = try await webhooks.get(tenantID: context.tenantID, webhookID: webhookID) else {
            throw APIError.notFound("webhook \(webhookID) not found")
        }
        return JSONBody.response(Self.json(stored))
    }

    @Sendable func delete(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "webhooks are managed")
        let webhookID = try Validate.pathID(context, "webhook_id")
        guard try await webhooks.delete(tenantID: context.tenantID, webhookID: webhookID) else {
            throw APIError.notFound("webhook \(webhookID) not found")
        }
        return JSONBody.response(["status": "success", "message": .string("webhook \(webhookID) deleted")])
    }

    /// `GET /webhooks/{id}/deliveries?limit=`: newest first, each with its attempts.
    @Sendable func deliveries(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "webhooks are managed")
        let webhookID = try Validate.pathID(context, "webhook_id")
        let limit = try Validate.limit(request, default: 50, max: 200)
        guard let records = try await webhooks.deliveries(tenantID: context.tenantID, webhookID: webhookID, limit: limit) else {
            throw APIError.notFound("webhook \(webhookID) not found")
        }
        return JSONBody.response([
            "deliveries": .array(
                records.map { record in
                    [
                        "delivery_id": .string(record.deliveryID), "event": .string(record.event), "state": .string(record.state),
                        "created_at": .number(record.createdAt), "finished_at": record.finishedAt.map(JSONValue.number) ?? .null,
                        "next_attempt_at": record.nextAttemptAt.map(JSONValue.number) ?? .null,
                        "task_id": record.taskID.map(JSONValue.string) ?? .null, "attempts": record.attempts,
                    ]
                })
        ])
    }

    static var eventNames: String { WebhookEvent.allCases.map(\.rawValue).joined(separator: ", ") }

    static func json(_ stored: StoredWebhook) -> JSONValue {
        [
            "webhook_id": .string(stored.webhookID), "url": .string(stored.url), "events": .array(stored.events.map { .string($0.rawValue) }),
            "agent_id": stored.agentID.map(JSONValue.string) ?? .null, "created_at": .number(stored.createdAt),
            "updated_at": .number(stored.updatedAt),
        ]
    }
}
