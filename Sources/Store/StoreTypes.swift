import AgentKit
import Foundation
import Postgres

/// Identifies one task. Tenant first, as in every key of the schema.
public struct TaskKey: Sendable, Hashable, CustomStringConvertible {
    public var tenantID: String
    public var userID: String
    public var sessionID: String
    public var taskID: String

    public init(tenantID: String, userID: String, sessionID: String, taskID: String) {
        self.tenantID = tenantID
        self.userID = userID
        self.sessionID = sessionID
        self.taskID = taskID
    }

    public var description: String { "\(tenantID)/\(userID)/\(sessionID)/\(taskID)" }

    /// Exact, as every id is compared (see `Identifier`): look-alike keys are two tasks.
    public static func == (a: TaskKey, b: TaskKey) -> Bool {
        Identifier.same(a.tenantID, b.tenantID) && Identifier.same(a.userID, b.userID)
            && Identifier.same(a.sessionID, b.sessionID) && Identifier.same(a.taskID, b.taskID)
    }

    public func hash(into hasher: inout Hasher) {
        for id in [tenantID, userID, sessionID, taskID] { Identifier.hash(id, into: &hasher) }
    }
}

/// The states of the `tasks.state` column.
public enum TaskState: String, Sendable, CaseIterable {
    case queued, running, interrupted, completed, error, cancelled
}

/// A task as the status endpoint reports it.
public struct TaskSnapshot: Sendable {
    public var state: TaskState
    public var message: String?
    public var query: String
    public var result: JSONValue?
    public var interruptData: JSONValue?
    /// Unix seconds of the last change.
    public var updatedAt: Double
}

/// A client error the HTTP layer turns into 4xx; the Store raises it where only SQL can tell.
public struct StoreConflict: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

enum StoreCoding {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func json<T: Encodable>(_ value: T) throws -> PostgresJSON {
        try PostgresJSON(value, encoder: encoder)
    }

    /// `[ToolCall]` as `json(_:)` stored it, read with the hand-written parser (Codable's
    /// JSONDecoder was a hot spot of every step).
    static func toolCalls(from json: PostgresJSON) throws -> [ToolCall] {
        guard case .array(let items) = try JSONValue(parsing: json.bytes) else {
            throw PostgresError(code: .decoding, message: "tool_calls is not a JSON array")
        }
        return try items.map { item in
            guard let id = item["id"]?.stringValue, let name = item["name"]?.stringValue, let args = item["args"]?.objectValue else {
                throw PostgresError(code: .decoding, message: "a tool call lacks id, name or args")
            }
            return ToolCall(id: id, name: name, args: args)
        }
    }

    static func message(from row: PostgresRow) throws -> ChatMessage {
        let kind = try row.decode("type", as: String.self)
        guard let type = ChatMessage.Kind(rawValue: kind) else {
            throw PostgresError(code: .decoding, message: "unknown message type \(kind)")
        }
        let calls = try row.decode("tool_calls", as: PostgresJSON?.self).map { try toolCalls(from: $0) } ?? []
        return ChatMessage(
            type: type, content: try row.decode("content", as: String.self), toolCalls: calls,
            name: try row.decode("name", as: String?.self), toolCallID: try row.decode("tool_call_id", as: String?.self))
    }
}
