import AgentKit
import Foundation

/// A tool of a remote MCP server, as the model sees it: `{label}__{tool}` with the server's
/// schema. Every failure (unreachable, timeout, refused, protocol error, `isError: true`) is
/// thrown as a `ToolError` with its outcome, which the run gives the model as the tool's result.
struct MCPTool: Tool {
    let spec: ToolSpec
    /// The name the server knows it by.
    let remoteName: String
    let readOnly: Bool
    let session: MCPSession
    let label: String
    let host: String

    /// Longest result given to the model; the rest is cut, with a note saying so.
    static let maxResultBytes = 32 << 10

    var serverLabel: String? { label }
    var origin: String? { "MCP server \(label) at \(host)" }
    /// A tool the server says is read-only may run again after a crash; any other may have
    /// done something, so its start is committed first.
    var runsAtMostOnce: Bool { !readOnly }

    func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String {
        try await call(arguments: arguments, context: context).text
    }

    func call(arguments: [String: JSONValue], context: ToolContext) async throws -> ToolOutput {
        let result: JSONValue
        do {
            result = try await session.callTool(remoteName, arguments: arguments)
        } catch let failure as MCPFailure {
            throw ToolError("MCP server \(label): \(failure.message)", outcome: failure.outcome.rawValue)
        }
        let text = Self.text(of: result)
        if result["isError"] == .bool(true) {
            throw ToolError(Self.truncated(text).text, outcome: "tool_error")
        }
        return Self.truncated(text)
    }

    /// The result's content as text: text items as they are, other items named, and the
    /// structured content when there is nothing else.
    static func text(of result: JSONValue) -> String {
        var parts: [String] = []
        if case .array(let items)? = result["content"] {
            for item in items {
                switch item["type"]?.stringValue {
                case "text": parts.append(item["text"]?.stringValue ?? "")
                case "image", "audio":
                    let size = item["data"]?.stringValue.map { " (\($0.utf8.count * 3 / 4) bytes)" } ?? ""
                    parts.append("[\(item["type"]?.stringValue ?? "") \(item["mimeType"]?.stringValue ?? "")\(size)]")
                case "resource":
                    let resource = item["resource"]
                    parts.append(resource?["text"]?.stringValue ?? "[resource \(resource?["uri"]?.stringValue ?? "")]")
                case "resource_link": parts.append("[resource link \(item["uri"]?.stringValue ?? "")]")
                default: parts.append(item.jsonText)
                }
            }
        }
        if parts.isEmpty, let structured = result["structuredContent"], structured != .null { return structured.jsonText }
        return parts.joined(separator: "\n")
    }

    /// At most `maxResultBytes` of UTF-8, cut at a character boundary, with a note.
    static func truncated(_ text: String) -> ToolOutput {
        let bytes = text.utf8.count
        guard bytes > maxResultBytes else { return ToolOutput(text) }
        let utf8 = Array(text.utf8)
        var end = maxResultBytes
        // Back to the first byte of a character (continuation bytes are 10xxxxxx).
        while end > 0, utf8[end] & 0xC0 == 0x80 { end -= 1 }
        let kept = String(decoding: utf8[..<end], as: UTF8.self)
        return ToolOutput(
            kept + "\n[agentd: the result was \(bytes) bytes; only the first \(kept.utf8.count) are shown]", outcome: "truncated")
    }
}

/// Model-facing tool names: `{label}__{tool}` within OpenAI's function-name rule (1 to 64 of
/// A-Z a-z 0-9 _ -). Other characters become `_`; a name too long, or taken, gets a stable hash.
enum MCPToolNaming {
    static let maxLength = 64

    static func modelName(label: String, tool: String, taken: Set<String>) -> String {
        let cleaned = String(
            tool.unicodeScalars.map { scalar -> Character in
                scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "-")
                    ? Character(scalar) : "_"
            })
        let name = label + MCPServerConfig.separator + cleaned
        guard name.count > maxLength || taken.contains(name) else { return name }
        let suffix = "_" + String(fnv1a(tool), radix: 16)
        return String(name.prefix(maxLength - suffix.count)) + suffix
    }

    /// FNV-1a: the same in every process (Swift's Hasher is seeded per process).
    static func fnv1a(_ text: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return hash
    }
}
