import AgentKit
import Store

/// `recall_memory(query)`: lets the agent search the user's long-term memories with its own
/// words in the middle of a task. Needs no approval: it only reads the user's own memories.
public struct RecallMemoryTool: Tool {
    let memories: MemoryStore
    let limit: Int

    public init(memories: MemoryStore, limit: Int = 5) {
        self.memories = memories
        self.limit = max(1, limit)
    }

    public let spec = ToolSpec(
        name: "recall_memory",
        description: "Search the user's long-term memories (长期记忆: preferences, facts, plans) for what is relevant to a query.",
        parameters: [
            "type": "object",
            "properties": ["query": ["type": "string", "description": "what to look for, in the user's language"]],
            "required": ["query"],
        ])

    public static let nothingFound = "没有找到相关的长期记忆。No matching memories."

    public func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String {
        guard let query = arguments["query"]?.stringValue, !query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ToolError("recall_memory needs a non-empty string argument query")
        }
        guard !query.unicodeScalars.contains("\u{0}") else { throw ToolError("query must not contain NUL characters") }
        let hits = try await memories.search(tenantID: context.tenantID, userID: context.userID, query: query, limit: limit)
        guard !hits.isEmpty else { return Self.nothingFound }
        return hits.map { "- " + $0.text }.joined(separator: "\n")
    }
}
