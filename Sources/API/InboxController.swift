import AgentKit
import Foundation
import Hummingbird
import Store

/// The approval inbox: `GET /agent/interrupts` lists the approvals that wait for a human across
/// sessions (a user key: its user's; a tenant key: its tenant's; an operator key: every
/// tenant's), a page per database statement. Decisions go through `/agent/resume` or
/// `/agent/resume/batch` (`AgentController`).
public struct InboxController: Sendable {
    let interrupts: InterruptStore

    public init(interrupts: InterruptStore) { self.interrupts = interrupts }

    public static let defaultLimit = 50
    public static let maxLimit = 200

    public var endpoints: RouteCollection<TenantRequestContext> {
        let routes = RouteCollection(context: TenantRequestContext.self)
        routes.get("/agent/interrupts", use: list)
        return routes
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        func id(_ name: String) throws -> String? {
            guard let raw = query.get(name) else { return nil }
            return try Validate.id(raw, field: name)
        }
        let limit = try Validate.limit(request, default: Self.defaultLimit, max: Self.maxLimit)
        var order = InterruptStore.Order.newest
        if let raw = query.get("order") {
            guard let value = InterruptStore.Order(rawValue: raw) else { throw APIError.unprocessable("order must be newest or oldest") }
            order = value
        }
        var olderThan: Double?
        if let raw = query.get("older_than_s") {
            guard let seconds = Double(raw), seconds.isFinite, seconds >= 0, seconds <= 100 * 365 * 86_400 else {
                throw APIError.unprocessable("older_than_s must be a number of seconds from 0 to 3153600000")
            }
            olderThan = seconds
        }
        var user = try id("user_id")
        if let user { try context.authorize(user: user) }
        // A user key sees its own user's approvals only, whether or not it names the user.
        if user == nil { user = context.userScope }
        let tool = try query.get("tool").map { try Validate.text($0, field: "tool") }
        let after = try query.get("cursor").flatMap { $0.isEmpty ? nil : try Self.position(from: $0) }
        let filter = InterruptStore.Filter(
            userID: user, sessionID: try id("session_id"), tool: tool, agentID: try id("agent_id"), olderThanSeconds: olderThan)
        let page = try await interrupts.pending(
            tenantID: context.isAdmin && context.userScope == nil ? nil : context.tenantID, filter: filter, order: order, after: after,
            limit: limit + 1)
        let shown = page.prefix(limit)
        let next: JSONValue = page.count > limit ? shown.last.map { .string(Self.cursor(for: InterruptStore.Position($0))) } ?? .null : .null
        return JSONBody.response(["interrupts": .array(shown.map(Self.json)), "next_cursor": next])
    }

    static func json(_ item: PendingInterrupt) -> JSONValue {
        [
            "tenant_id": .string(item.key.tenantID), "user_id": .string(item.key.userID), "session_id": .string(item.key.sessionID),
            "task_id": .string(item.key.taskID), "tool_call_id": .string(item.toolCallID), "tool": .string(item.toolName),
            "agent_id": .string(item.agentID), "interrupt_data": item.interruptData, "created_at": .number(item.createdAt),
            "expires_at": item.expiresAt.map(JSONValue.number) ?? .null, "last_query": .string(item.lastQuery),
        ]
    }

    /// The opaque cursor: where the page ended, as a JSON array, base64url.
    static func cursor(for position: InterruptStore.Position) -> String {
        let values: JSONValue = [
            .number(Double(position.createdMicroseconds)), .string(position.tenantID), .string(position.userID), .string(position.sessionID),
            .string(position.taskID), .string(position.toolCallID),
        ]
        return Cursor.encode(values.jsonText)
    }

    static func position(from cursor: String) throws -> InterruptStore.Position {
        let refused = APIError.unprocessable("cursor is not one this service gave")
        guard let text = Cursor.decode(cursor), case .array(let values)? = try? JSONValue(parsing: Array(text.utf8)), values.count == 6,
            let micros = values[0].numberValue, micros.isFinite, micros.rounded() == micros, abs(micros) < 9e15
        else { throw refused }
        let ids = values.dropFirst().compactMap(\.stringValue)
        guard ids.count == 5, ids.allSatisfy({ Identifier.problem(with: $0, field: "cursor", creating: false) == nil }) else { throw refused }
        return InterruptStore.Position(
            createdMicroseconds: Int64(micros), tenantID: ids[0], userID: ids[1], sessionID: ids[2], taskID: ids[3], toolCallID: ids[4])
    }
}
