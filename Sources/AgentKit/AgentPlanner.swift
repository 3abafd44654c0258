/// What the agent does next, decided from the task's committed messages alone, so that a task
/// re-run after a crash continues from its last committed step.
public enum AgentStep: Sendable, Equatable {
    /// Ask the model for the next message.
    case callModel
    /// Run a tool; `decision` is the human decision that allowed it (accept or edit), if any.
    case runTool(ToolCall, arguments: [String: JSONValue], decision: HumanDecision.Kind?)
    /// Answer a tool call without running it (rejected, or answered by the human).
    case answerTool(ToolCall, content: String, decision: HumanDecision.Kind)
    /// Stop and ask a human about this call.
    case interrupt(ToolCall)
    /// The last message is the model's final answer.
    case finish
    /// The model wants another step but the task has used all it may.
    case stepLimitReached
}

public enum AgentPlanner {
    /// - Parameters:
    ///   - turn: this task's messages so far, its human query first.
    ///   - decisions: human decisions by tool call id.
    ///   - modelCalls: model replies already in the turn.
    public static func nextStep(
        turn: [ChatMessage], decisions: [String: HumanDecision], tools: ToolRegistry, modelCalls: Int, maxSteps: Int
    ) -> AgentStep {
        guard let lastAI = turn.lastIndex(where: { $0.type == .ai }) else {
            return modelCalls >= maxSteps ? .stepLimitReached : .callModel
        }
        let calls = turn[lastAI].toolCalls
        if calls.isEmpty, lastAI == turn.count - 1 { return .finish }
        let answered = Set(turn[(lastAI + 1)...].compactMap { $0.type == .tool ? $0.toolCallID : nil })
        if let call = calls.first(where: { !answered.contains($0.id) }) {
            guard tools.needsApproval(call.name) else { return .runTool(call, arguments: call.args, decision: nil) }
            guard let decision = decisions[call.id] else { return .interrupt(call) }
            switch decision.kind {
            case .accept:
                return .runTool(call, arguments: call.args, decision: .accept)
            case .edit:
                return .runTool(call, arguments: decision.editedArguments ?? call.args, decision: .edit)
            case .reject:
                return .answerTool(call, content: HumanDecision.rejectionMessage, decision: .reject)
            case .response:
                return .answerTool(call, content: decision.responseText ?? "", decision: .response)
            }
        }
        return modelCalls >= maxSteps ? .stepLimitReached : .callModel
    }

    /// The messages the model sees: the system message, the history, then this turn.
    public static func prompt(system: String, history: [ChatMessage], turn: [ChatMessage]) -> [ChatMessage] {
        [.system(system)] + history + turn
    }

    /// The original's default system message: "you use tools to help the user; if a tool is rejected, tell the user".
    public static let defaultSystemMessage = "你会使用工具来帮助用户。如果工具使用被拒绝, 请提示用户。"

    /// The system message with the user's recalled memories appended, as the original does.
    public static func systemMessage(_ base: String?, memories: [String]) -> String {
        let base = base ?? defaultSystemMessage
        guard !memories.isEmpty else { return base }
        return base + "\n我的附加信息有:\n" + memories.map { "- " + $0 }.joined(separator: "\n")
    }

    /// The last `limit` messages of earlier turns, cut so that the window starts at a human
    /// message: a tool result without the call it answers is rejected by model servers.
    public static func historyWindow(_ messages: [ChatMessage], limit: Int) -> [ChatMessage] {
        guard limit > 0 else { return [] }
        var window = Array(messages.suffix(limit))
        while let first = window.first, first.type != .human { window.removeFirst() }
        return window
    }
}
