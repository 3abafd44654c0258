/// Who a tool call runs for: the task and the call.
public struct ToolContext: Sendable {
    public var key: TaskKey
    public var toolCallID: String

    public init(key: TaskKey, toolCallID: String) {
        self.key = key
        self.toolCallID = toolCallID
    }

    public var tenantID: String { key.tenantID }
    public var userID: String { key.userID }
}

/// A tool failed; the message goes back to the model as the tool's result, so it can correct itself.
public struct ToolError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// How it failed, for `tool_calls.outcome` (`unreachable`, `timeout`, …); nil for a plain failure.
    public var outcome: String?
    public init(_ message: String, outcome: String? = nil) {
        self.message = message
        self.outcome = outcome
    }
    public var description: String { message }
}

/// What a tool answered, and how the call went when that says more than "ok" (`truncated`).
public struct ToolOutput: Sendable, Equatable {
    public var text: String
    public var outcome: String?
    public init(_ text: String, outcome: String? = nil) {
        self.text = text
        self.outcome = outcome
    }
}

/// Something the agent can call: built-in tools and the tools of remote MCP servers.
public protocol Tool: Sendable {
    var spec: ToolSpec { get }
    func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String
    /// The call with its outcome; by default `run`'s text.
    func call(arguments: [String: JSONValue], context: ToolContext) async throws -> ToolOutput
    /// The remote server the tool belongs to (its label), for `tool_calls`; nil for built-in tools.
    var serverLabel: String? { get }
    /// Where the tool runs, for the approval prompt ("MCP server maps at …"); nil for built-in tools.
    var origin: String? { get }
    /// The call must never run twice, even across a crash: its start is committed before it runs,
    /// and a call found started but never finished is not run again (remote side effects).
    var runsAtMostOnce: Bool { get }
}

extension Tool {
    public func call(arguments: [String: JSONValue], context: ToolContext) async throws -> ToolOutput {
        ToolOutput(try await run(arguments: arguments, context: context))
    }
    public var serverLabel: String? { nil }
    public var origin: String? { nil }
    public var runsAtMostOnce: Bool { false }
}

/// The tools of a task's agent and which of them wait for a human before they run.
public struct ToolRegistry: Sendable {
    public let tools: [String: any Tool]
    public let approvalRequired: Set<String>
    /// In a stable order, as sent to the model.
    public let specs: [ToolSpec]
    /// Remote servers whose tools could not be listed, by label, with why: a call of one of
    /// their tools is answered with that reason.
    public let unavailable: [String: String]

    public init(tools: [any Tool], approvalRequired: Set<String>, unavailable: [String: String] = [:]) {
        var byName: [String: any Tool] = [:]
        for tool in tools { byName[tool.spec.name] = tool }
        self.tools = byName
        self.approvalRequired = approvalRequired
        self.specs = tools.map(\.spec)
        self.unavailable = unavailable
    }

    /// The tools of `names` only, in their order, with the same approval rules.
    public func restricted(to names: [String]) -> ToolRegistry {
        ToolRegistry(tools: names.compactMap { tools[$0] }, approvalRequired: approvalRequired, unavailable: unavailable)
    }

    /// These tools and `more`, whose names are added to those that need approval when in `approving`.
    public func adding(_ more: [any Tool], approving: Set<String>, unavailable: [String: String]) -> ToolRegistry {
        ToolRegistry(
            tools: specs.compactMap { tools[$0.name] } + more, approvalRequired: approvalRequired.union(approving),
            unavailable: self.unavailable.merging(unavailable) { first, _ in first })
    }

    public func needsApproval(_ name: String) -> Bool {
        approvalRequired.contains(name) && tools[name] != nil
    }
}
