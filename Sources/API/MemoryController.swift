import AgentKit
import Foundation
import Hummingbird
import Store

/// Managing a user's long-term memories, beside the contract's `/agent/write/longterm`:
/// list and search them, rewrite one, delete one.
public struct MemoryController: Sendable {
    let memories: MemoryStore

    public init(memories: MemoryStore) { self.memories = memories }

    public static let defaultLimit = 20
    public static let maxLimit = 100

    public var endpoints: RouteCollection<TenantRequestContext> {
        let routes = RouteCollection(context: TenantRequestContext.self)
        routes.get("/agent/memory/:user_id", use: list)
        routes.put("/agent/memory/:user_id/:memory_id", use: rewrite)
        routes.delete("/agent/memory/:user_id/:memory_id", use: delete)
        return routes
    }

    struct RewriteRequest: Decodable {
        var memory_info: String
    }

    /// `PUT /agent/memory/{user_id}/{memory_id}` with `{"memory_info": …}`: the memory's text
    /// replaced in place, its earlier text kept in `memory_history`.
    @Sendable func rewrite(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let user = try Validate.pathID(context, "user_id")
        try context.authorize(user: user)
        let raw = try Validate.pathID(context, "memory_id")
        guard let id = UUID(uuidString: raw) else { throw APIError.notFound("memory \(raw) of user \(user) not found") }
        let body = try await JSONBody.decode(RewriteRequest.self, from: request, context: context)
        let text = try Validate.text(body.memory_info, field: "memory_info")
        guard text.utf8.count <= APILimits.maxMemoryBytes else {
            throw APIError(.contentTooLarge, "memory_info is longer than \(APILimits.maxMemoryBytes) bytes")
        }
        let version = try await memories.rewrite(tenantID: context.tenantID, userID: user, memoryID: id, text: text)
        return JSONBody.response([
            "status": "success", "memory_id": .string(id.uuidString.lowercased()), "version": .number(Double(version)),
            "message": .string("用户 \(user) 的记忆 \(id.uuidString.lowercased()) 已更新"),
        ])
    }

    /// `GET /agent/memory/{user_id}?q=…&limit=…`: newest first without `q`; with it, the
    /// matching memories best first, each with its score.
    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let user = try Validate.pathID(context, "user_id")
        try context.authorize(user: user)
        let limit = try Validate.limit(request, default: Self.defaultLimit, max: Self.maxLimit)
        let query = try request.uri.queryParameters.get("q").map { try Validate.text($0, field: "q", allowEmpty: true) } ?? ""
        guard query.utf8.count <= APILimits.maxMemoryBytes else {
            throw APIError.unprocessable("q must be at most \(APILimits.maxMemoryBytes) bytes")
        }
        let hits =
            query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            ? try await memories.list(tenantID: context.tenantID, userID: user, limit: limit)
            : try await memories.search(tenantID: context.tenantID, userID: user, query: query, limit: limit)
        let items: [JSONValue] = hits.map { hit in
            var item: [String: JSONValue] = [
                "memory_id": .string(hit.id.uuidString.lowercased()), "memory_info": .string(hit.text), "created_at": .number(hit.createdAt),
            ]
            if let score = hit.score { item["score"] = .number(score) }
            return .object(item)
        }
        return JSONBody.response(["user_id": .string(user), "memories": .array(items)])
    }

    /// `DELETE /agent/memory/{user_id}/{memory_id}`.
    @Sendable func delete(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let user = try Validate.pathID(context, "user_id")
        try context.authorize(user: user)
        let raw = try Validate.pathID(context, "memory_id")
        guard let id = UUID(uuidString: raw),
            try await memories.delete(tenantID: context.tenantID, userID: user, memoryID: id)
        else { throw APIError.notFound("memory \(raw) of user \(user) not found") }
        return JSONBody.response(["status": "success", "message": .string("用户 \(user) 的记忆 \(raw.lowercased()) 已删除")])
    }
}
