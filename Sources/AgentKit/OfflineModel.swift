import Foundation

/// A deterministic stand-in model for running without any model server (`LLM_BASE_URL` unset).
/// It recognises the original's two demo requests in Chinese and English — booking a hotel and
/// multiplying two numbers — questions about what it remembers, and `call <tool> <JSON arguments>`
/// for any offered tool; calls the matching tool, and turns the tool's result into an answer;
/// anything else gets a plain reply saying it is the offline model.
public struct OfflineModel: ChatModel {
    public let name = "agentd-offline"

    public init() {}

    public func complete(_ request: ModelRequest) async throws -> ModelReply {
        ModelReply(message: reply(to: request.messages, tools: Set(request.tools.map(\.name))), usage: nil, model: name)
    }

    func reply(to messages: [ChatMessage], tools: Set<String>) -> ChatMessage {
        guard let queryIndex = messages.lastIndex(where: { $0.type == .human }) else {
            return .ai(Self.introduction)
        }
        let turn = messages[(queryIndex + 1)...]
        if let result = turn.last(where: { $0.type == .tool }) {
            return .ai(answer(for: result))
        }
        let query = messages[queryIndex].content
        let callID = "call_offline_\(queryIndex)_\(turn.count)"
        if let (name, args) = Self.explicitCall(in: query) {
            guard tools.contains(name) else {
                return .ai("没有这个工具 (no such tool): \(name). Tools offered: \(tools.sorted().joined(separator: ", ")).")
            }
            return .ai("", toolCalls: [ToolCall(id: callID, name: name, args: args)])
        }
        if tools.contains("book_hotel"), let hotel = Self.hotel(in: query) {
            return .ai("", toolCalls: [ToolCall(id: callID, name: "book_hotel", args: ["hotel_name": .string(hotel)])])
        }
        if tools.contains("recall_memory"), Self.asksAboutMemory(query) {
            return .ai("", toolCalls: [ToolCall(id: callID, name: "recall_memory", args: ["query": .string(query)])])
        }
        if tools.contains("multiply"), let (a, b) = Self.factors(in: query) {
            return .ai("", toolCalls: [ToolCall(id: callID, name: "multiply", args: ["a": .number(a), "b": .number(b)])])
        }
        return .ai(Self.introduction)
    }

    static let introduction =
        "我是 agentd 的离线模型 (offline model)：没有配置 LLM_BASE_URL，我只会演示预订酒店、两个数相乘和查找你的长期记忆。"
        + "I am agentd's offline model: with no LLM_BASE_URL configured I can only book a hotel, multiply two numbers "
        + "or look up what you asked me to remember. "
        + "Set LLM_BASE_URL to use a real model."

    private func answer(for result: ChatMessage) -> String {
        if result.content == HumanDecision.rejectionMessage {
            return "工具 \(result.name ?? "") 的使用被拒绝，我没有执行这个操作。The tool call was rejected, so I did not do it."
        }
        if result.content.hasPrefix("Error:") {
            return "工具 \(result.name ?? "") 出错了 (the tool failed): \(result.content)"
        }
        switch result.name {
        case "multiply": return "计算结果是 \(result.content)。The result is \(result.content)."
        case "book_hotel": return "\(result.content) The booking is done."
        case "recall_memory": return "我记得这些 (what I remember):\n\(result.content)"
        default: return result.content
        }
    }

    /// "call maps__lookup {"city": "Paris"}": any offered tool, by name, with a JSON object of
    /// arguments (none: `{}`), so that `make run` can show an MCP server's tools with no model.
    static func explicitCall(in query: String) -> (String, [String: JSONValue])? {
        let trimmed = query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.lowercased().hasPrefix("call ") else { return nil }
        let rest = trimmed.dropFirst(5).drop(while: { $0 == " " })
        let name = String(rest.prefix { !$0.isWhitespace && $0 != "{" })
        guard !name.isEmpty else { return nil }
        let argumentText = rest.dropFirst(name.count).trimmingCharacters(in: .whitespacesAndNewlines)
        if argumentText.isEmpty { return (name, [:]) }
        guard case .object(let args)? = try? JSONValue(parsing: Array(argumentText.utf8)) else { return nil }
        return (name, args)
    }

    /// "你还记得我喜欢什么座位吗", "what do you remember about my diet".
    static func asksAboutMemory(_ query: String) -> Bool {
        let lower = query.lowercased()
        return ["记得", "记忆", "remember", "recall"].contains { lower.contains($0) }
    }

    /// "帮我预定如家酒店" → "如家酒店"; "book a room at the Hilton" → "the Hilton".
    static func hotel(in query: String) -> String? {
        if let range = query.range(of: #"(?:预定|预订|订)(?:一[个间家])?(?:在)?([^，。,.!！?？\s]{1,30}?(?:酒店|宾馆|旅馆|饭店))"#, options: .regularExpression) {
            let match = String(query[range])
            for prefix in ["预定", "预订", "订"] where match.hasPrefix(prefix) {
                var name = String(match.dropFirst(prefix.count))
                for article in ["一个", "一间", "一家", "在"] where name.hasPrefix(article) { name = String(name.dropFirst(article.count)) }
                return name
            }
        }
        let lower = query.lowercased()
        guard lower.contains("book"), lower.contains("hotel") || lower.contains(" at ") || lower.contains("room") else { return nil }
        let pattern = #"(?i)\b(?:at|in)\s+(?:the\s+)?([A-Za-z0-9][A-Za-z0-9 '&-]{0,60}?)\s*(?:[.,!?]|$|\s+(?:for|on|from|tonight|tomorrow)\b)"#
        if let range = query.range(of: pattern, options: .regularExpression) {
            let captured = String(query[range])
                .replacingOccurrences(of: #"(?i)^(?:at|in)\s+(?:the\s+)?"#, with: "", options: .regularExpression)
                .replacingOccurrences(of: #"(?i)\s*(?:[.,!?]|\s+(?:for|on|from|tonight|tomorrow))\s*$"#, with: "", options: .regularExpression)
                .trimmingCharacters(in: .whitespaces)
            if !captured.isEmpty { return captured }
        }
        if let range = query.range(of: #"(?i)\bbook\s+(?:a\s+room\s+at\s+|me\s+|the\s+)?([A-Za-z0-9][A-Za-z0-9 '&-]{0,60}hotel)"#, options: .regularExpression) {
            return String(query[range]).replacingOccurrences(of: #"(?i)^book\s+(?:a\s+room\s+at\s+|me\s+|the\s+)?"#, with: "", options: .regularExpression)
        }
        return "hotel"
    }

    /// Two numbers and a word for multiplying: "3 乘以 4", "what is 3 times 4", "multiply 2.5 and 4", "6*7".
    static func factors(in query: String) -> (Double, Double)? {
        let lower = query.lowercased()
        let markers = ["乘", "×", "*", "times", "multiply", "product", " x "]
        guard markers.contains(where: { lower.contains($0) }) else { return nil }
        var numbers: [Double] = []
        var rest = Substring(query)
        while let range = rest.range(of: #"-?\d+(?:\.\d+)?"#, options: .regularExpression) {
            if let value = Double(rest[range]) { numbers.append(value) }
            rest = rest[range.upperBound...]
        }
        guard numbers.count >= 2 else { return nil }
        return (numbers[0], numbers[1])
    }
}
