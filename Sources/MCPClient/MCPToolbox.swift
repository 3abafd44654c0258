import AgentKit
import Logging
import Outbound
import ServiceLifecycle
import Synchronization

/// The MCP servers of every agent this process runs tasks of: one session per (agent version,
/// server label), kept while it is used (the least recently used beyond `maxSessions` are
/// closed), each with its tool list cached for `ttl` or until the server says it changed.
/// A service: at shutdown it closes every session.
public final class MCPToolbox: RemoteToolSource, Service {
    struct Key: Hashable {
        var agent: AgentScope
        var label: String

        static func == (a: Key, b: Key) -> Bool { a.agent == b.agent && Identifier.same(a.label, b.label) }
        func hash(into hasher: inout Hasher) {
            agent.hash(into: &hasher)
            Identifier.hash(label, into: &hasher)
        }
    }

    private struct Entry {
        var session: MCPSession
        var lastUsed: UInt64
    }

    let http: OutboundHTTP
    let ttl: Duration
    let logger: Logger
    let maxSessions: Int
    private let sessions = Mutex<(entries: [Key: Entry], clock: UInt64)>(([:], 0))

    public init(policy: OutboundPolicy, ttl: Duration, logger: Logger, maxSessions: Int = 512) {
        self.http = OutboundHTTP(policy: policy)
        self.ttl = ttl
        self.logger = logger
        self.maxSessions = max(1, maxSessions)
    }

    public func tools(of server: MCPServerConfig, for agent: AgentScope) async -> Result<RemoteToolList, ToolError> {
        let session = self.session(Key(agent: agent, label: server.label), server: server)
        let listed: [MCPToolInfo]
        do {
            listed = try await session.listTools()
        } catch let failure as MCPFailure {
            return .failure(ToolError(failure.message, outcome: failure.outcome.rawValue))
        } catch {
            return .failure(ToolError("\(error)"))
        }
        var tools: [any Tool] = []
        var approving = Set<String>()
        var taken = Set<String>()
        let host = MCPSession.hostAndPort(server.url)
        for info in listed where server.allows(info.name) {
            let name = MCPToolNaming.modelName(label: server.label, tool: info.name, taken: taken)
            taken.insert(name)
            let description = info.description.isEmpty ? "\(info.name) (MCP server \(server.label))" : info.description
            tools.append(
                MCPTool(
                    spec: ToolSpec(name: name, description: description, parameters: info.inputSchema), remoteName: info.name,
                    readOnly: info.readOnly, session: session, label: server.label, host: host))
            if server.requireApproval.needsApproval(tool: info.name, readOnly: info.readOnly) { approving.insert(name) }
        }
        return .success(RemoteToolList(tools: tools, approving: approving))
    }

    private func session(_ key: Key, server: MCPServerConfig) -> MCPSession {
        let (session, evicted) = sessions.withLock { state -> (MCPSession, [MCPSession]) in
            state.clock += 1
            if var entry = state.entries[key] {
                entry.lastUsed = state.clock
                state.entries[key] = entry
                return (entry.session, [])
            }
            var evicted: [MCPSession] = []
            while state.entries.count >= maxSessions, let oldest = state.entries.min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key {
                if let entry = state.entries.removeValue(forKey: oldest) { evicted.append(entry.session) }
            }
            let session = MCPSession(server: server, http: http, ttl: ttl, logger: logger)
            state.entries[key] = Entry(session: session, lastUsed: state.clock)
            return (session, evicted)
        }
        for old in evicted { Task { await old.close() } }
        return session
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    /// Closes every session (each told to the server) and the HTTP clients.
    public func close() async {
        let open = sessions.withLock { state in
            defer { state.entries.removeAll() }
            return state.entries.values.map(\.session)
        }
        await withTaskGroup(of: Void.self) { group in
            for session in open { group.addTask { await session.close() } }
        }
        await http.shutdown()
    }
}
