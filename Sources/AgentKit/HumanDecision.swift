/// The human's answer to an approval request, as `/agent/resume` carries it.
public struct HumanDecision: Sendable, Hashable {
    public enum Kind: String, Sendable, CaseIterable {
        case accept, edit, reject, response
    }

    public var kind: Kind
    /// The resume request's `args`, as sent.
    public var args: JSONValue?

    public init(kind: Kind, args: JSONValue?) {
        self.kind = kind
        self.args = args
    }

    /// The tool result a rejected call gives the model: "tool use was rejected, try another way or decline".
    public static let rejectionMessage = "该工具被拒绝使用，请尝试其他方法或拒绝回答问题。"

    /// The new tool arguments of an `edit`: `args["args"]` as the original client sends them,
    /// or the object itself when the new arguments are given directly.
    public var editedArguments: [String: JSONValue]? {
        guard let object = args?.objectValue else { return nil }
        if let nested = object["args"]?.objectValue { return nested }
        if object["args"] != nil { return nil }
        return object.isEmpty ? nil : object
    }

    /// The human's text of a `response`: `args["args"]`, or a plain string.
    public var responseText: String? {
        switch args {
        case .string(let text)?: return text
        case .object(let object)?:
            switch object["args"] {
            case .string(let text)?: return text
            case nil, .null?: return nil
            case let other?: return other.jsonText
            }
        default: return nil
        }
    }

    /// Why a decision cannot be applied, or nil when it can.
    public var problem: String? {
        switch kind {
        case .accept, .reject: return nil
        case .edit:
            return editedArguments == nil ? "edit needs the new tool arguments as an object in args.args" : nil
        case .response:
            guard let text = responseText else { return "response needs the reply text in args.args" }
            return text.isEmpty ? "response needs a non-empty reply text in args.args" : nil
        }
    }
}

/// LangGraph's HumanInterrupt for a tool call that waits for approval.
public enum ApprovalRequest {
    /// - Parameter origin: where the tool runs (an MCP server), named in the description.
    public static func interruptData(for call: ToolCall, origin: String? = nil) -> JSONValue {
        let args = JSONValue.object(call.args)
        let source = origin.map { " (\($0))" } ?? ""
        return [
            "action_request": ["action": .string(call.name), "args": args],
            "config": ["allow_accept": true, "allow_edit": true, "allow_respond": true, "allow_ignore": true],
            "description": .string(
                "工具 \(call.name)\(source) 需要人工审批 (tool call needs approval)。参数 (args): \(args.jsonText)。"
                    + "请选择: accept 同意执行, edit 修改参数后执行, reject 拒绝, response 直接回复。"),
            "interrupt_type": "tool_approval",
            "tool_call_id": .string(call.id),
        ]
    }
}
