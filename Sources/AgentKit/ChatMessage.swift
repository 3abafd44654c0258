/// A tool call proposed by the model.
public struct ToolCall: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var args: [String: JSONValue]

    public init(id: String, name: String, args: [String: JSONValue]) {
        self.id = id
        self.name = name
        self.args = args
    }
}

/// One message of a conversation, in the shape LangChain's message dicts have, which is what
/// the original's clients read: `{"type": "human"|"ai"|"tool"|"system", "content": …}`.
public struct ChatMessage: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Codable {
        case system, human, ai, tool
    }

    public var type: Kind
    public var content: String
    /// For `ai` messages: the tools the model asked to call.
    public var toolCalls: [ToolCall]
    /// For `tool` messages: the tool's name.
    public var name: String?
    /// For `tool` messages: the call this answers.
    public var toolCallID: String?

    public init(type: Kind, content: String, toolCalls: [ToolCall] = [], name: String? = nil, toolCallID: String? = nil) {
        self.type = type
        self.content = content
        self.toolCalls = toolCalls
        self.name = name
        self.toolCallID = toolCallID
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(type: .system, content: content) }
    public static func human(_ content: String) -> ChatMessage { ChatMessage(type: .human, content: content) }
    public static func ai(_ content: String, toolCalls: [ToolCall] = []) -> ChatMessage {
        ChatMessage(type: .ai, content: content, toolCalls: toolCalls)
    }
    public static func tool(_ content: String, name: String, callID: String) -> ChatMessage {
        ChatMessage(type: .tool, content: content, name: name, toolCallID: callID)
    }

    enum CodingKeys: String, CodingKey {
        case type, content, name
        case toolCalls = "tool_calls"
        case toolCallID = "tool_call_id"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = try container.decode(Kind.self, forKey: .type)
        content = try container.decodeIfPresent(String.self, forKey: .content) ?? ""
        toolCalls = try container.decodeIfPresent([ToolCall].self, forKey: .toolCalls) ?? []
        name = try container.decodeIfPresent(String.self, forKey: .name)
        toolCallID = try container.decodeIfPresent(String.self, forKey: .toolCallID)
    }

    /// LangChain's dict: `ai` messages always carry `tool_calls`; `tool` messages carry
    /// `name` and `tool_call_id`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encode(content, forKey: .content)
        if type == .ai { try container.encode(toolCalls, forKey: .toolCalls) }
        if type == .tool {
            try container.encodeIfPresent(name, forKey: .name)
            try container.encodeIfPresent(toolCallID, forKey: .toolCallID)
        }
    }
}

extension ChatMessage {
    /// The same dict as the Codable form, as a JSON value (for results stored as jsonb).
    public var jsonValue: JSONValue {
        var object: [String: JSONValue] = ["type": .string(type.rawValue), "content": .string(content)]
        if type == .ai {
            object["tool_calls"] = .array(toolCalls.map { ["id": .string($0.id), "name": .string($0.name), "args": .object($0.args)] })
        }
        if type == .tool {
            object["name"] = name.map(JSONValue.string) ?? .null
            object["tool_call_id"] = toolCallID.map(JSONValue.string) ?? .null
        }
        return .object(object)
    }
}

/// What a model or a tool says, made storable. PostgreSQL's text and jsonb cannot hold U+0000,
/// and JSON has no infinity or NaN; a reply holding either used to fail its task with an
/// internal error. NUL characters are removed; a number beyond `Double` becomes null, which
/// the tool given it refuses as a missing argument, so the model sees an error and goes on.
extension ChatMessage {
    public var storable: ChatMessage {
        var message = self
        message.content = content.withoutNUL
        message.name = name?.withoutNUL
        message.toolCallID = toolCallID?.withoutNUL
        message.toolCalls = toolCalls.map { call in
            ToolCall(
                id: call.id.withoutNUL, name: call.name.withoutNUL,
                args: Dictionary(call.args.map { ($0.key.withoutNUL, $0.value.storable) }, uniquingKeysWith: { first, _ in first }))
        }
        return message
    }
}

extension JSONValue {
    public var storable: JSONValue {
        switch self {
        case .string(let text): .string(text.withoutNUL)
        case .number(let value): value.isFinite ? self : .null
        case .array(let items): .array(items.map(\.storable))
        case .object(let members): .object(Dictionary(members.map { ($0.key.withoutNUL, $0.value.storable) }, uniquingKeysWith: { first, _ in first }))
        case .null, .bool: self
        }
    }
}

extension String {
    /// The text without U+0000 (unchanged, and not copied, when it has none).
    public var withoutNUL: String {
        guard utf8.contains(0) else { return self }
        return String(String.UnicodeScalarView(unicodeScalars.filter { $0 != "\u{0}" }))
    }
}
