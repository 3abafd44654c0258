import AgentKit
import Store
import Synchronization

/// What a task runs: its tools (built-in and remote) with their approval rules, its limits and
/// model, and the system message used when the invoke brings none.
public struct ResolvedAgent: Sendable {
    public var tools: ToolRegistry
    public var settings: AgentSettings
    public var systemMessage: String?

    public init(tools: ToolRegistry, settings: AgentSettings, systemMessage: String? = nil) {
        self.tools = tools
        self.settings = settings
        self.systemMessage = systemMessage
    }
}

/// The agent version a task named cannot be run (it cannot be read or its secrets opened).
public struct AgentUnavailable: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Resolves the agent version a task runs. Version 0 is the environment's configuration;
/// stored versions never change, so each is read from the database once per process. Each
/// MCP server's tools come from the `RemoteToolSource`, which caches them.
public final class AgentCatalog: Sendable {
    let store: AgentStore
    /// Version 0: the environment's tools and limits.
    public let environment: ResolvedAgent
    let remote: any RemoteToolSource
    /// `APPROVAL_TIMEOUT_ACTION`: what expiry decides for an agent that sets a timeout but no action.
    let timeoutAction: ApprovalTimeout.Action
    private let versions = Mutex<[AgentScope: AgentDefinition]>([:])
    static let maxCachedVersions = 1024

    public init(store: AgentStore, environment: ResolvedAgent, remote: any RemoteToolSource, timeoutAction: ApprovalTimeout.Action = .reject) {
        self.store = store
        self.environment = environment
        self.remote = remote
        self.timeoutAction = timeoutAction
    }

    /// The built-in tools an agent may name in `tools`.
    public var builtinToolNames: [String] { environment.tools.specs.map(\.name) }

    public func resolve(tenantID: String, agentID: String, version: Int) async throws -> ResolvedAgent {
        guard version > 0 else { return environment }
        let scope = AgentScope(tenantID: tenantID, agentID: agentID, version: version)
        let definition: AgentDefinition
        if let cached = versions.withLock({ $0[scope] }) {
            definition = cached
        } else {
            let loaded: AgentDefinition?
            do {
                loaded = try await store.definition(tenantID: tenantID, agentID: agentID, version: version)
            } catch let error as SecretBox.Invalid {
                throw AgentUnavailable(description: "agent \(agentID) version \(version) cannot be run: \(error)")
            }
            guard let loaded else { throw AgentUnavailable(description: "agent \(agentID) version \(version) does not exist") }
            versions.withLock { cache in
                if cache.count >= Self.maxCachedVersions { cache.removeAll(keepingCapacity: true) }
                cache[scope] = loaded
            }
            definition = loaded
        }
        return await resolve(definition, scope: scope)
    }

    /// The definition over the environment: what it leaves out comes from there.
    func resolve(_ definition: AgentDefinition, scope: AgentScope) async -> ResolvedAgent {
        var tools = definition.tools.map { environment.tools.restricted(to: $0) } ?? environment.tools
        let remote = self.remote
        let listed = await withTaskGroup(of: (Int, Result<RemoteToolList, ToolError>).self) { group in
            for (index, server) in definition.mcpServers.enumerated() {
                group.addTask { (index, await remote.tools(of: server, for: scope)) }
            }
            var results: [Int: Result<RemoteToolList, ToolError>] = [:]
            for await (index, result) in group { results[index] = result }
            return results
        }
        var more: [any Tool] = []
        var approving = Set<String>()
        var unavailable: [String: String] = [:]
        for (index, server) in definition.mcpServers.enumerated() {
            switch listed[index] {
            case .success(let list)?:
                more += list.tools
                approving.formUnion(list.approving)
            case .failure(let error)?:
                unavailable[server.label] = error.message
            case nil:
                unavailable[server.label] = "not listed"
            }
        }
        tools = tools.adding(more, approving: approving, unavailable: unavailable)
        let base = environment.settings
        return ResolvedAgent(
            tools: tools,
            settings: AgentSettings(
                maxSteps: definition.maxSteps ?? base.maxSteps, historyMessages: definition.historyMessages ?? base.historyMessages,
                memoryRecallLimit: definition.memoryRecallLimit ?? base.memoryRecallLimit, model: definition.model ?? base.model,
                approvalTimeout: definition.approvalTimeout(over: base.approvalTimeout, defaultAction: timeoutAction)),
            systemMessage: definition.systemMessage ?? environment.systemMessage)
    }
}
