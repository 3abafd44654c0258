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
    /// The agent the task runs, and its version (0: the environment's configuration).
    public var agentID: String
    public var agentVersion: Int
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

    // The hot values by the hand-written writer (JSONText.swift), which prints what `encoder`
    // does: JSONEncoder was a measurable share of every completion (its result and tool calls).
    // They throw as the generic form does, so that call sites read alike.

    static func json(_ value: JSONValue) throws -> PostgresJSON {
        PostgresJSON(rawBytes: value.serialized)
    }

    static func json(_ value: [String: JSONValue]) throws -> PostgresJSON {
        PostgresJSON(rawBytes: JSONValue.object(value).serialized)
    }

    /// As ToolCall's Codable form: `{"args": …, "id": …, "name": …}`.
    static func json(_ calls: [ToolCall]) throws -> PostgresJSON {
        PostgresJSON(
            rawBytes: JSONValue.array(calls.map { .object(["id": .string($0.id), "name": .string($0.name), "args": .object($0.args)]) }).serialized)
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

/// A database failure as the rest of the service sees it: what kind of failure, so that callers
/// can answer (503, 409) or recover (hand a task back) without knowing the driver.
/// `String(reflecting:)` gives the driver's details, for logs only.
public struct StoreError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No connection, or the connection or server went away: try again shortly.
        case unavailable
        /// A statement ran past `statement_timeout` or was cancelled.
        case timedOut
        /// A concurrent transaction changed the same rows (serialization failure, deadlock,
        /// a unique key taken meanwhile): the request may be retried.
        case conflict
        case other
    }

    public let kind: Kind
    let underlying: PostgresError

    init(_ error: PostgresError) {
        underlying = error
        if error.isConnectionFailure {
            kind = .unavailable
        } else if error.sqlState == PostgresError.SQLState.queryCanceled {
            kind = .timedOut
        } else if error.isTransient || error.isUniqueViolation {
            kind = .conflict
        } else {
            kind = .other
        }
    }

    public var description: String { "database error (\(kind))" }
    public var debugDescription: String { String(reflecting: underlying) }

    /// Runs `body`, turning the driver's errors into `StoreError`s; others pass through.
    static func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PostgresError {
            throw StoreError(error)
        }
    }
}
