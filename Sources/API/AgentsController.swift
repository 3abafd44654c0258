import AgentKit
import Foundation
import Hummingbird
import Store

/// A tenant's named agents: `PUT /agents/{agent_id}` creates or replaces one (a new version each
/// time), `GET` lists or reads them, `DELETE` removes one. Tenant and operator keys write; user
/// keys read. Header values of MCP servers are never shown (`"***"`).
public struct AgentsController: Sendable {
    let agents: AgentStore
    /// The built-in tools an agent may name.
    let builtinTools: [String]
    /// `OUTBOUND_ALLOWED_HOSTS`: a URL it refuses outright is refused here, at configuration time.
    let outbound: OutboundPolicy

    public init(agents: AgentStore, builtinTools: [String], outbound: OutboundPolicy) {
        self.agents = agents
        self.builtinTools = builtinTools
        self.outbound = outbound
    }

    public static let defaultLimit = 50
    public static let maxLimit = 200

    public var endpoints: RouteCollection<TenantRequestContext> {
        let routes = RouteCollection(context: TenantRequestContext.self)
        routes.put("/agents/:agent_id", use: put)
        routes.get("/agents", use: list)
        routes.get("/agents/:agent_id", use: get)
        routes.delete("/agents/:agent_id", use: delete)
        return routes
    }

    @Sendable func put(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "agents are written")
        let agentID = try Validate.pathID(context, "agent_id", creating: true)
        let body = try await JSONBody.decode(JSONValue.self, from: request, context: context)
        let definition: AgentDefinition
        do {
            definition = try AgentDefinition.parse(body, builtinTools: builtinTools)
        } catch {
            throw APIError.unprocessable(error.description)
        }
        for (index, server) in definition.mcpServers.enumerated() {
            if let host = OutboundURL.host(of: server.url), let refused = outbound.refusal(host: host) {
                throw APIError.unprocessable("mcp_servers[\(index)].url: \(refused)")
            }
            if !server.headers.isEmpty, !agents.canStoreSecrets {
                throw APIError.unprocessable(
                    "mcp_servers[\(index)].headers: header values are stored only encrypted, and this server has no AGENTD_SECRETS_KEY")
            }
        }
        let stored = try await agents.put(tenantID: context.tenantID, agentID: agentID, definition: definition)
        return JSONBody.response(Self.json(stored))
    }

    /// `GET /agents?limit=&cursor=`: by id, a page at a time; `next_cursor` is null on the last page.
    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let limit = try Validate.limit(request, default: Self.defaultLimit, max: Self.maxLimit)
        var after: String?
        if let cursor = request.uri.queryParameters.get("cursor"), !cursor.isEmpty {
            guard let decoded = Cursor.decode(cursor), Identifier.problem(with: decoded, field: "cursor", creating: false) == nil else {
                throw APIError.unprocessable("cursor is not one this service gave")
            }
            after = decoded
        }
        let page = try await agents.list(tenantID: context.tenantID, after: after, limit: limit + 1)
        let shown = page.prefix(limit)
        let next = page.count > limit ? shown.last.map { JSONValue.string(Cursor.encode($0.agentID)) } ?? .null : .null
        return JSONBody.response(["agents": .array(shown.map(Self.json)), "next_cursor": next])
    }

    @Sendable func get(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let agentID = try Validate.pathID(context, "agent_id")
        guard let stored = try await agents.get(tenantID: context.tenantID, agentID: agentID) else {
            throw APIError.notFound("agent \(agentID) not found")
        }
        return JSONBody.response(Self.json(stored))
    }

    @Sendable func delete(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "agents are written")
        let agentID = try Validate.pathID(context, "agent_id")
        guard try await agents.delete(tenantID: context.tenantID, agentID: agentID) else {
            throw APIError.notFound("agent \(agentID) not found")
        }
        return JSONBody.response(["status": "success", "message": .string("agent \(agentID) deleted")])
    }

    /// The agent as the API shows it: the fields of its PUT body, header values hidden, with
    /// its id, version and times.
    static func json(_ stored: StoredAgent) -> JSONValue {
        guard case .object(var object) = stored.definition.redacted else { return .null }
        object["agent_id"] = .string(stored.agentID)
        object["version"] = .number(Double(stored.version))
        object["created_at"] = .number(stored.createdAt)
        object["updated_at"] = .number(stored.updatedAt)
        return .object(object)
    }
}
