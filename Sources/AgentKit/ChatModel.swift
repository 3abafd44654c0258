/// What a tool looks like to the model: OpenAI's function-calling declaration.
public struct ToolSpec: Sendable, Hashable {
    public var name: String
    public var description: String
    /// JSON Schema of the arguments object.
    public var parameters: JSONValue

    public init(name: String, description: String, parameters: JSONValue) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }
}

public struct ModelRequest: Sendable {
    /// The conversation, starting with the system message.
    public var messages: [ChatMessage]
    public var tools: [ToolSpec]
    /// The model to ask for (an agent's `model`); nil: the client's configured one.
    public var model: String?

    public init(messages: [ChatMessage], tools: [ToolSpec], model: String? = nil) {
        self.messages = messages
        self.tools = tools
        self.model = model
    }
}

public struct TokenUsage: Sendable, Hashable {
    public var promptTokens: Int
    public var completionTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

public struct ModelReply: Sendable {
    /// An `ai` message: an answer, tool calls, or both.
    public var message: ChatMessage
    public var usage: TokenUsage?
    /// The model that answered, as the server named it.
    public var model: String

    public init(message: ChatMessage, usage: TokenUsage?, model: String) {
        self.message = message
        self.usage = usage
        self.model = model
    }
}

/// A model call that failed for good (after any retries); `message` says why, for the task's error.
public struct ModelError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure, from a closed set (a metric's label).
    public enum Kind: String, Sendable, CaseIterable {
        /// A 4xx other than 429.
        case httpStatus = "http_status"
        case rateLimited = "rate_limited"
        case serverError = "server_error"
        case timeout
        /// Not a chat completion, or a stream that broke its format.
        case malformed
        /// The stream ended before the reply was whole.
        case truncated
        case tooLarge = "too_large"
        /// No answer at all: refused, reset, name not found.
        case unreachable
        case other
    }

    /// Why, with how many attempts were made.
    public var message: String
    public var kind: Kind

    public init(message: String, kind: Kind = .other) {
        self.message = message
        self.kind = kind
    }

    public var description: String { message }
}

/// Text of a reply as the model writes it, before the reply is whole.
public enum ModelDelta: Sendable, Equatable {
    case text(String)
    /// The call is being tried again after its stream broke: drop the text so far.
    case restart
    /// The reply is whole (the run says so before it commits the message): a stream relaying
    /// the text from another process may write the stored message once this has arrived.
    case done
}

/// Text of the model message that will be at `position` in the task's turn.
public struct MessageDelta: Sendable, Equatable {
    public var position: Int
    public var delta: ModelDelta

    public init(position: Int, delta: ModelDelta) {
        self.position = position
        self.delta = delta
    }
}

/// Any chat model the agent can talk to.
public protocol ChatModel: Sendable {
    /// The configured model name, recorded with every call.
    var name: String { get }
    func complete(_ request: ModelRequest) async throws -> ModelReply
    /// The same reply; a model that streams also hands each piece of text to `deltas` as it arrives.
    func complete(_ request: ModelRequest, deltas: @escaping @Sendable (ModelDelta) -> Void) async throws -> ModelReply
}

extension ChatModel {
    public func complete(_ request: ModelRequest, deltas: @escaping @Sendable (ModelDelta) -> Void) async throws -> ModelReply {
        try await complete(request)
    }
}
