import AgentKit
import Foundation
import Postgres

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
