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
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Something the agent can call. Built-in tools and, later, MCP tools implement it.
public protocol Tool: Sendable {
    var spec: ToolSpec { get }
    func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String
}

/// The tools of a deployment and which of them wait for a human before they run.
public struct ToolRegistry: Sendable {
    public let tools: [String: any Tool]
    public let approvalRequired: Set<String>
    /// In a stable order, as sent to the model.
    public let specs: [ToolSpec]

    public init(tools: [any Tool], approvalRequired: Set<String>) {
        var byName: [String: any Tool] = [:]
        for tool in tools { byName[tool.spec.name] = tool }
        self.tools = byName
        self.approvalRequired = approvalRequired
        self.specs = tools.map(\.spec)
    }

    public func needsApproval(_ name: String) -> Bool {
        approvalRequired.contains(name) && tools[name] != nil
    }
}
