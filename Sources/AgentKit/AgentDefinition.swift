/// A tenant's named agent (`PUT /agents/{agent_id}`): what the tasks that name it run. Every
/// field is optional; what is left out comes from the environment, as for the agent `default`.
public struct AgentDefinition: Sendable, Equatable {
    /// The model name sent to the model server; nil: `LLM_MODEL`.
    public var model: String?
    /// Used when a task's request brings none; nil: the original's default.
    public var systemMessage: String?
    /// Built-in tools offered to the model, by name; nil: every built-in tool.
    public var tools: [String]?
    public var mcpServers: [MCPServerConfig]
    public var maxSteps: Int?
    public var historyMessages: Int?
    public var memoryRecallLimit: Int?
    /// Seconds an approval waits before the service decides it; 0: until a human does; nil:
    /// `APPROVAL_TIMEOUT_S`.
    public var approvalTimeoutSeconds: Int?
    /// What the service decides; nil: `APPROVAL_TIMEOUT_ACTION`.
    public var approvalTimeoutAction: ApprovalTimeout.Action?

    public init(
        model: String? = nil, systemMessage: String? = nil, tools: [String]? = nil, mcpServers: [MCPServerConfig] = [],
        maxSteps: Int? = nil, historyMessages: Int? = nil, memoryRecallLimit: Int? = nil, approvalTimeoutSeconds: Int? = nil,
        approvalTimeoutAction: ApprovalTimeout.Action? = nil
    ) {
        self.model = model
        self.systemMessage = systemMessage
        self.tools = tools
        self.mcpServers = mcpServers
        self.maxSteps = maxSteps
        self.historyMessages = historyMessages
        self.memoryRecallLimit = memoryRecallLimit
        self.approvalTimeoutSeconds = approvalTimeoutSeconds
        self.approvalTimeoutAction = approvalTimeoutAction
    }

    /// The approval timeout of this agent over the environment's (`base`).
    public func approvalTimeout(over base: ApprovalTimeout?, defaultAction: ApprovalTimeout.Action) -> ApprovalTimeout? {
        let action = approvalTimeoutAction ?? base?.action ?? defaultAction
        switch approvalTimeoutSeconds {
        case 0?: return nil
        case let seconds?: return ApprovalTimeout(seconds: Double(seconds), action: action)
        case nil: return base.map { ApprovalTimeout(seconds: $0.seconds, action: action) }
        }
    }

    /// A definition that cannot be stored; `field` names where, as `mcp_servers[1].url`.
    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public var field: String
        public var reason: String
        public init(_ field: String, _ reason: String) {
            self.field = field
            self.reason = reason
        }
        public var description: String { "\(field): \(reason)" }
    }

    public static let maxMCPServers = 16
    public static let maxSystemMessageBytes = 64 << 10

    /// Reads and checks a definition as clients write it.
    /// - Parameter builtinTools: the names `tools` may list; nil to take them as stored (a
    ///   definition read back from the database).
    public static func parse(_ json: JSONValue, builtinTools: [String]?) throws(Invalid) -> AgentDefinition {
        guard case .object(let object) = json else { throw Invalid("body", "must be a JSON object") }
        let known: Set<String> = [
            "model", "system_message", "tools", "mcp_servers", "max_steps", "history_messages", "memory_recall_limit",
            "approval_timeout_s", "approval_timeout_action",
        ]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw Invalid(unknown, "is not a field of an agent (fields: \(known.sorted().joined(separator: ", ")))")
        }
        var definition = AgentDefinition()
        definition.model = try Field.text(object["model"], "model", maxBytes: 256)
        definition.systemMessage = try Field.text(object["system_message"], "system_message", maxBytes: maxSystemMessageBytes, allowEmpty: true)
        if let tools = try Field.names(object["tools"], "tools") {
            if let builtinTools {
                for (index, name) in tools.enumerated() where !builtinTools.contains(name) {
                    throw Invalid("tools[\(index)]", "\(name) is not a built-in tool (one of \(builtinTools.joined(separator: ", ")))")
                }
            }
            definition.tools = tools
        }
        definition.maxSteps = try Field.integer(object["max_steps"], "max_steps", 1...1000)
        definition.historyMessages = try Field.integer(object["history_messages"], "history_messages", 0...10_000)
        definition.memoryRecallLimit = try Field.integer(object["memory_recall_limit"], "memory_recall_limit", 0...100)
        definition.approvalTimeoutSeconds = try Field.integer(object["approval_timeout_s"], "approval_timeout_s", 0...ApprovalTimeout.maxSeconds)
        if let action = try Field.text(object["approval_timeout_action"], "approval_timeout_action", maxBytes: 16) {
            guard let parsed = ApprovalTimeout.Action(rawValue: action) else {
                throw Invalid("approval_timeout_action", "must be reject or accept")
            }
            definition.approvalTimeoutAction = parsed
        }
        switch object["mcp_servers"] {
        case nil, .null?: break
        case .array(let servers)?:
            guard servers.count <= maxMCPServers else { throw Invalid("mcp_servers", "at most \(maxMCPServers) servers") }
            var labels: [String] = []
            for (index, server) in servers.enumerated() {
                let config = try MCPServerConfig.parse(server, field: "mcp_servers[\(index)]", stored: builtinTools == nil)
                if labels.contains(where: { $0.lowercased() == config.label.lowercased() }) {
                    throw Invalid("mcp_servers[\(index)].label", "\(config.label) is used by another server of this agent")
                }
                if (builtinTools ?? []).contains(where: { $0.lowercased().hasPrefix(config.label.lowercased() + MCPServerConfig.separator) }) {
                    throw Invalid("mcp_servers[\(index)].label", "\(config.label) would make tool names that clash with a built-in tool")
                }
                labels.append(config.label)
                definition.mcpServers.append(config)
            }
        case .some: throw Invalid("mcp_servers", "must be an array")
        }
        return definition
    }

    /// As the API shows it and as it is stored: header values as `headerValue` makes them
    /// (`"***"` for answers, ciphertext for storage).
    public func json(headerValue: (MCPServerConfig, MCPServerConfig.Header) throws -> String) rethrows -> JSONValue {
        var object: [String: JSONValue] = [
            "model": model.map(JSONValue.string) ?? .null,
            "system_message": systemMessage.map(JSONValue.string) ?? .null,
            "tools": tools.map { .array($0.map(JSONValue.string)) } ?? .null,
            "max_steps": maxSteps.map { .number(Double($0)) } ?? .null,
            "history_messages": historyMessages.map { .number(Double($0)) } ?? .null,
            "memory_recall_limit": memoryRecallLimit.map { .number(Double($0)) } ?? .null,
            "approval_timeout_s": approvalTimeoutSeconds.map { .number(Double($0)) } ?? .null,
            "approval_timeout_action": approvalTimeoutAction.map { .string($0.rawValue) } ?? .null,
        ]
        object["mcp_servers"] = .array(try mcpServers.map { server in try server.json(headerValue: { try headerValue(server, $0) }) })
        return .object(object)
    }

    /// The answer's form: every header value hidden.
    public var redacted: JSONValue { json(headerValue: { _, _ in MCPServerConfig.redactedValue }) }
}

/// One remote MCP server of an agent, in the shape of OpenAI's `{"type": "mcp"}` tool.
public struct MCPServerConfig: Sendable, Equatable {
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Names the server; its tools reach the model as `{label}__{tool}`.
    public var label: String
    public var url: String
    /// Sent with every request to the server (an Authorization header, an API key). Secrets:
    /// never shown, never logged, stored encrypted.
    public var headers: [Header]
    /// Only these of the server's tools are offered; nil: all of them.
    public var allowedTools: [String]?
    public var requireApproval: ApprovalPolicy
    /// One request to the server, a tool call included.
    public var timeoutSeconds: Double

    public static let separator = "__"
    public static let redactedValue = "***"
    public static let defaultTimeoutSeconds = 30.0

    public init(
        label: String, url: String, headers: [Header] = [], allowedTools: [String]? = nil, requireApproval: ApprovalPolicy = .always,
        timeoutSeconds: Double = defaultTimeoutSeconds
    ) {
        self.label = label
        self.url = url
        self.headers = headers
        self.allowedTools = allowedTools
        self.requireApproval = requireApproval
        self.timeoutSeconds = timeoutSeconds
    }

    /// Headers the transport sets itself, which a configuration may not replace.
    static let reservedHeaders: Set<String> = [
        "host", "content-length", "content-type", "accept", "connection", "transfer-encoding", "mcp-session-id",
        "mcp-protocol-version", "last-event-id", "upgrade", "te", "trailer", "keep-alive", "proxy-connection",
    ]

    /// - Parameter stored: read back from the database, where header values are sealed.
    static func parse(_ json: JSONValue, field: String, stored: Bool) throws(AgentDefinition.Invalid) -> MCPServerConfig {
        typealias Invalid = AgentDefinition.Invalid
        guard case .object(let object) = json else { throw Invalid(field, "must be an object") }
        let known: Set<String> = ["label", "url", "headers", "allowed_tools", "require_approval", "timeout_s", "type"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw Invalid("\(field).\(unknown)", "is not a field of an MCP server (fields: \(known.sorted().joined(separator: ", ")))")
        }
        // OpenAI's shape carries "type": "mcp"; accepted so that a tool list can be pasted as is.
        if let type = object["type"], type != .string("mcp") { throw Invalid("\(field).type", "must be \"mcp\" when given") }
        guard let label = try Field.text(object["label"], "\(field).label", maxBytes: 32) else { throw Invalid("\(field).label", "is required") }
        guard label.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-") }),
            !label.contains(separator), !label.hasSuffix("_")
        else {
            throw Invalid("\(field).label", "must be 1 to 32 of A-Z a-z 0-9 _ - without \"__\" and not ending in _ (tools are named {label}__{tool})")
        }
        guard let url = try Field.text(object["url"], "\(field).url", maxBytes: 2048) else { throw Invalid("\(field).url", "is required") }
        if let problem = OutboundURL.problem(with: url) { throw Invalid("\(field).url", problem) }
        var headers: [Header] = []
        switch object["headers"] {
        case nil, .null?: break
        case .object(let members)?:
            guard members.count <= 32 else { throw Invalid("\(field).headers", "at most 32 headers") }
            for name in members.keys.sorted() {
                let where_ = "\(field).headers.\(name)"
                guard !name.isEmpty, name.utf8.count <= 128,
                    name.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 32 && $0.value < 127 && !"()<>@,;:\\\"/[]?={}".unicodeScalars.contains($0) })
                else { throw Invalid(where_, "is not a valid HTTP header name") }
                if reservedHeaders.contains(name.lowercased()) { throw Invalid(where_, "is set by agentd itself") }
                guard case .string(let value)? = members[name] else { throw Invalid(where_, "must be a string") }
                // 4 KiB of value seals to under 8 KiB (`SecretBox`), which is what a stored definition may hold.
                guard value.utf8.count <= (stored ? 8192 : 4096),
                    !value.unicodeScalars.contains(where: { $0.value < 32 && $0 != "\t" || $0.value == 127 })
                else {
                    throw Invalid(where_, "must be at most 4 KiB without control characters")
                }
                if value == redactedValue {
                    throw Invalid(where_, "is \"***\", the redacted form: send the real value again (stored values are never shown)")
                }
                headers.append(Header(name: name, value: value))
            }
        case .some: throw Invalid("\(field).headers", "must be an object of header names to values")
        }
        let allowed = try Field.names(object["allowed_tools"], "\(field).allowed_tools")
        let policy = try ApprovalPolicy.parse(object["require_approval"], field: "\(field).require_approval")
        var timeout = defaultTimeoutSeconds
        switch object["timeout_s"] {
        case nil, .null?: break
        case .number(let seconds)? where seconds.isFinite && seconds >= 0.1 && seconds <= 600: timeout = seconds
        case .some: throw Invalid("\(field).timeout_s", "must be a number of seconds from 0.1 to 600")
        }
        return MCPServerConfig(label: label, url: url, headers: headers, allowedTools: allowed, requireApproval: policy, timeoutSeconds: timeout)
    }

    func json(headerValue: (Header) throws -> String) rethrows -> JSONValue {
        var headerObject: [String: JSONValue] = [:]
        for header in headers { headerObject[header.name] = .string(try headerValue(header)) }
        return [
            "label": .string(label), "url": .string(url), "headers": .object(headerObject),
            "allowed_tools": allowedTools.map { .array($0.map(JSONValue.string)) } ?? .null,
            "require_approval": requireApproval.json, "timeout_s": .number(timeoutSeconds),
        ]
    }

    /// Whether the server's tool `name` is offered at all.
    public func allows(_ name: String) -> Bool {
        allowedTools.map { $0.contains { Identifier.same($0, name) } } ?? true
    }
}

/// Which tools of an MCP server wait for a human: OpenAI's `require_approval`.
public enum ApprovalPolicy: Sendable, Equatable {
    case always
    case never
    /// Named tools; a tool in neither list waits (the safe default). `neverReadOnly`: tools the
    /// server marks `readOnlyHint` need no approval.
    case rules(always: [String], never: [String], neverReadOnly: Bool)

    public func needsApproval(tool: String, readOnly: Bool) -> Bool {
        switch self {
        case .always: return true
        case .never: return false
        case .rules(let always, let never, let neverReadOnly):
            if always.contains(where: { Identifier.same($0, tool) }) { return true }
            if never.contains(where: { Identifier.same($0, tool) }) { return false }
            return !(neverReadOnly && readOnly)
        }
    }

    /// `"always"`, `"never"`, or `{"always": …, "never": …}` where each side is a list of tool
    /// names or OpenAI's `{"tool_names": [...]}`, and `never` may say `{"read_only": true}`.
    static func parse(_ json: JSONValue?, field: String) throws(AgentDefinition.Invalid) -> ApprovalPolicy {
        typealias Invalid = AgentDefinition.Invalid
        switch json {
        case nil, .null?, .string("always")?: return .always
        case .string("never")?: return .never
        case .object(let object)?:
            if let unknown = object.keys.sorted().first(where: { $0 != "always" && $0 != "never" }) {
                throw Invalid("\(field).\(unknown)", "must be always or never")
            }
            func side(_ name: String) throws(Invalid) -> (names: [String], readOnly: Bool) {
                switch object[name] {
                case nil, .null?: return ([], false)
                case .array?: return (try Field.names(object[name], "\(field).\(name)") ?? [], false)
                case .object(let rule)?:
                    if let unknown = rule.keys.sorted().first(where: { $0 != "tool_names" && $0 != "read_only" }) {
                        throw Invalid("\(field).\(name).\(unknown)", "must be tool_names or read_only")
                    }
                    var readOnly = false
                    switch rule["read_only"] {
                    case nil, .null?: break
                    case .bool(let flag)?:
                        guard name == "never" || !flag else { throw Invalid("\(field).always.read_only", "is only meaningful under never") }
                        readOnly = flag
                    case .some: throw Invalid("\(field).\(name).read_only", "must be true or false")
                    }
                    return (try Field.names(rule["tool_names"], "\(field).\(name).tool_names") ?? [], readOnly)
                case .some: throw Invalid("\(field).\(name)", "must be a list of tool names or {\"tool_names\": [...]}")
                }
            }
            let always = try side("always")
            let never = try side("never")
            if let both = always.names.first(where: { name in never.names.contains { Identifier.same($0, name) } }) {
                throw Invalid(field, "\(both) is listed under both always and never")
            }
            return .rules(always: always.names, never: never.names, neverReadOnly: never.readOnly)
        case .some: throw Invalid(field, "must be \"always\", \"never\" or {\"always\": [...], \"never\": [...]}")
        }
    }

    var json: JSONValue {
        switch self {
        case .always: return "always"
        case .never: return "never"
        case .rules(let always, let never, let readOnly):
            var neverSide: [String: JSONValue] = ["tool_names": .array(never.map(JSONValue.string))]
            if readOnly { neverSide["read_only"] = true }
            return ["always": ["tool_names": .array(always.map(JSONValue.string))], "never": .object(neverSide)]
        }
    }
}

/// Readers of optional fields that name the field in what they refuse.
enum Field {
    static func text(_ value: JSONValue?, _ field: String, maxBytes: Int, allowEmpty: Bool = false) throws(AgentDefinition.Invalid) -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)?:
            if !allowEmpty, text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw AgentDefinition.Invalid(field, "must not be empty")
            }
            guard text.utf8.count <= maxBytes else { throw AgentDefinition.Invalid(field, "must be at most \(maxBytes) bytes") }
            guard !text.unicodeScalars.contains("\u{0}") else { throw AgentDefinition.Invalid(field, "must not contain NUL characters") }
            return text
        case .some: throw AgentDefinition.Invalid(field, "must be a string")
        }
    }

    static func integer(_ value: JSONValue?, _ field: String, _ range: ClosedRange<Int>) throws(AgentDefinition.Invalid) -> Int? {
        switch value {
        case nil, .null?: return nil
        case .number(let number)? where number.rounded() == number && number >= Double(range.lowerBound) && number <= Double(range.upperBound):
            return Int(number)
        case .some: throw AgentDefinition.Invalid(field, "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
    }

    /// A list of distinct tool names (1 to 128 bytes each, at most 1,000).
    static func names(_ value: JSONValue?, _ field: String) throws(AgentDefinition.Invalid) -> [String]? {
        switch value {
        case nil, .null?: return nil
        case .array(let items)?:
            guard items.count <= 1000 else { throw AgentDefinition.Invalid(field, "at most 1000 names") }
            var names: [String] = []
            for (index, item) in items.enumerated() {
                guard case .string(let name) = item, !name.isEmpty, name.utf8.count <= 128,
                    !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
                else { throw AgentDefinition.Invalid("\(field)[\(index)]", "must be a tool name of 1 to 128 bytes") }
                if !names.contains(where: { Identifier.same($0, name) }) { names.append(name) }
            }
            return names
        case .some: throw AgentDefinition.Invalid(field, "must be an array of tool names")
        }
    }
}

