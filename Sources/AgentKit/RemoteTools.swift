/// Which agent a remote server's tools are for: its tenant, name and version. Compared and
/// hashed by the identifier rule (exact bytes).
public struct AgentScope: Sendable, Hashable, CustomStringConvertible {
    public var tenantID: String
    public var agentID: String
    public var version: Int

    public init(tenantID: String, agentID: String, version: Int) {
        self.tenantID = tenantID
        self.agentID = agentID
        self.version = version
    }

    public static func == (a: AgentScope, b: AgentScope) -> Bool {
        a.version == b.version && Identifier.same(a.tenantID, b.tenantID) && Identifier.same(a.agentID, b.agentID)
    }

    public func hash(into hasher: inout Hasher) {
        Identifier.hash(tenantID, into: &hasher)
        Identifier.hash(agentID, into: &hasher)
        hasher.combine(version)
    }

    public var description: String { "\(tenantID)/\(agentID)@\(version)" }
}

/// The tools of one remote server as the model will see them, and which of them wait for a human.
public struct RemoteToolList: Sendable {
    public var tools: [any Tool]
    /// Model-facing names of the tools that need approval.
    public var approving: Set<String>

    public init(tools: [any Tool], approving: Set<String>) {
        self.tools = tools
        self.approving = approving
    }
}

/// Where the tools of an agent's MCP servers come from (the MCP client in the service; a fake in tests).
public protocol RemoteToolSource: Sendable {
    /// The server's tools for the agent, or why they cannot be listed now.
    func tools(of server: MCPServerConfig, for agent: AgentScope) async -> Result<RemoteToolList, ToolError>
}
