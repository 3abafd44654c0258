/// One task driven from its last committed step to its next pause or end: the ReAct loop.
///
/// The run asks `AgentPlanner` what to do next from the committed messages alone, does it
/// (a model call, a tool, an answer on a human's behalf, a pause for approval), and commits
/// each step through its `AgentJournal` before the next begins. A run that stops anywhere,
/// a crash included, is continued by a later run from what was committed. The journal is
/// PostgreSQL in the service (`Store.TaskJournal`) and memory in the tests.
public struct AgentRun: Sendable {
    public let key: TaskKey
    /// The task's query, for memory recall.
    public let query: String
    /// The client's system message; nil for the default.
    public let systemMessage: String?
    let journal: any AgentJournal
    let memory: any MemoryRecall
    let model: any ChatModel
    let tools: ToolRegistry
    let settings: AgentSettings

    public init(
        key: TaskKey, query: String, systemMessage: String?, journal: any AgentJournal, memory: any MemoryRecall,
        model: any ChatModel, tools: ToolRegistry, settings: AgentSettings
    ) {
        self.key = key
        self.query = query
        self.systemMessage = systemMessage
        self.journal = journal
        self.memory = memory
        self.model = model
        self.tools = tools
        self.settings = settings
    }

    /// Where the run left the task.
    public enum Outcome: Sendable, Equatable {
        case completed
        /// Waiting for a human's decision on this call.
        case interrupted(ToolCall)
        /// Ended in `error`, with the reason recorded as the task's message.
        case failed(String)
    }

    /// Thrown between steps when `stopping` says so: the task goes back to the queue as committed.
    public struct HandedBack: Error, Sendable {}

    /// Thrown when `cancel` fired: a client cancelled the task (which is already `cancelled` in
    /// the journal); the run took no step after it.
    public struct Cancelled: Error, Sendable {}

    /// Runs to the next pause or end. Errors of the journal (a lost lease, the database) and
    /// cancellation are thrown as they are, with nothing half-committed.
    /// - Parameters:
    ///   - stopping: asked between steps; true hands the task back (`HandedBack`).
    ///   - cancel: fired when a client cancels the task: the model call in flight is abandoned, a
    ///     tool already started finishes (its result goes to the journal's audit record only),
    ///     and the run ends with `Cancelled`.
    ///   - deltas: the model's text as it is written, for live event streams (a model that streams).
    public func run(
        stopping: @Sendable () -> Bool = { false }, cancel: CancelSignal = CancelSignal(),
        deltas: @escaping @Sendable (MessageDelta) -> Void = { _ in }
    ) async throws -> Outcome {
        let (context, recalled) = try await journal.context(
            historyLimit: settings.historyMessages, recalling: query, limit: settings.memoryRecallLimit, from: memory, of: key)
        var turn = context.turn
        guard !turn.isEmpty else { return try await fail("the task has no query message") }
        let history = AgentPlanner.historyWindow(context.history, limit: settings.historyMessages)
        let system = AgentPlanner.systemMessage(systemMessage, memories: recalled)
        var modelCalls = turn.filter { $0.type == .ai }.count
        let clock = ContinuousClock()

        while true {
            try Task.checkCancellation()
            if cancel.isFired { throw Cancelled() }
            if stopping() { throw HandedBack() }
            let step = AgentPlanner.nextStep(
                turn: turn, decisions: context.decisions, tools: tools, modelCalls: modelCalls, maxSteps: settings.maxSteps)
            switch step {
            case .callModel:
                let request = ModelRequest(
                    messages: AgentPlanner.prompt(system: system, history: history, turn: turn), tools: tools.specs, model: settings.model)
                let started = clock.now
                let reply: ModelReply
                do {
                    let model = self.model
                    let position = turn.count
                    reply = try await cancel.abortable {
                        try await model.complete(request, deltas: { deltas(MessageDelta(position: position, delta: $0)) })
                    }
                    deltas(MessageDelta(position: position, delta: .done))
                } catch is CancelSignal.Fired {
                    throw Cancelled()
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    // Server text is stored (llm_calls, the task's message): it must be storable too.
                    let reason = ((error as? ModelError)?.message ?? "\(error)").withoutNUL
                    try? await journal.recordFailedModelCall(
                        ModelCallRecord(model: settings.model ?? model.name, usage: nil, latencyMilliseconds: (clock.now - started).milliseconds, error: reason))
                    return try await fail("model call failed: \(reason)")
                }
                let message = Self.withUniqueCallIDs(reply.message.storable, turn: turn)
                let record = ModelCallRecord(
                    model: reply.model.withoutNUL, usage: reply.usage, latencyMilliseconds: (clock.now - started).milliseconds, error: nil)
                let position = turn.count
                turn.append(message)
                modelCalls += 1
                // A reply without tool calls is the final answer: written together with the
                // task's end, one commit rather than two.
                if message.toolCalls.isEmpty {
                    try await journal.completeWithModelReply(position: position, message: message, call: record, result: Self.result(turn))
                    return .completed
                }
                try await journal.appendModelReply(position: position, message: message, call: record)

            case .runTool(let call, let arguments, let decision):
                let started = clock.now
                let (output, status, outcome) = try await runTool(call, arguments: arguments)
                let record = ToolCallRecord(
                    call: call, arguments: arguments, output: output.withoutNUL, status: status, decision: decision,
                    durationMilliseconds: (clock.now - started).milliseconds, serverLabel: tools.tools[call.name]?.serverLabel,
                    outcome: outcome)
                if cancel.isFired {
                    // The task was cancelled while the tool ran: what it did is recorded, and nothing follows.
                    try? await journal.recordToolCallOfCancelledTask(record)
                    throw Cancelled()
                }
                do {
                    try await commit(record, to: &turn)
                } catch {
                    // A cancel that committed while the tool ran, heard too late: the audit record
                    // still gets written (the journal writes it only for a task cancelled under this run).
                    try? await journal.recordToolCallOfCancelledTask(record)
                    throw error
                }

            case .answerTool(let call, let content, let decision):
                try await commit(
                    ToolCallRecord(
                        call: call, arguments: call.args, output: content, status: decision == .reject ? .rejected : .responded,
                        decision: decision, durationMilliseconds: 0, serverLabel: tools.tools[call.name]?.serverLabel),
                    to: &turn)

            case .interrupt(let call):
                try await journal.interrupt(
                    call: call, data: ApprovalRequest.interruptData(for: call, origin: tools.tools[call.name]?.origin),
                    expiry: settings.approvalTimeout)
                return .interrupted(call)

            case .finish:
                try await journal.finish(state: .completed, result: Self.result(turn), message: nil)
                return .completed

            case .stepLimitReached:
                return try await fail("the agent made \(settings.maxSteps) model calls (MAX_STEPS) without reaching a final answer")
            }
        }
    }

    /// The tool's output, or the error the model should see: as LangGraph's ToolNode does, a
    /// failing tool answers with its error, so the model may correct itself.
    /// A tool that throws `CancellationError` stops the run as cancellation does: nothing is committed.
    /// A tool that runs at most once has its start committed first; one found started by an
    /// earlier run (which crashed before its result) is not run again.
    private func runTool(_ call: ToolCall, arguments: [String: JSONValue]) async throws -> (String, ToolCallRecord.Status, String?) {
        guard let tool = tools.tools[call.name] else {
            if let label = call.name.components(separatedBy: MCPServerConfig.separator).first, call.name.contains(MCPServerConfig.separator),
                let reason = tools.unavailable[label]
            {
                return ("Error: the MCP server \(label) is unavailable: \(reason)", .failed, "unreachable")
            }
            return ("Error: \(call.name) is not a valid tool, try one of [\(tools.specs.map(\.name).joined(separator: ", "))].", .failed, nil)
        }
        if tool.runsAtMostOnce, try await !journal.beginToolCall(call, arguments: arguments, serverLabel: tool.serverLabel) {
            return (
                "Error: this call was started before the service restarted and its outcome is unknown; it is not run again.",
                .failed, "unknown"
            )
        }
        do {
            let output = try await tool.call(arguments: arguments, context: ToolContext(key: key, toolCallID: call.id))
            return (output.text, .ok, output.outcome)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let failure = error as? ToolError
            return ("Error: \(failure?.message ?? "\(error)")\n Please fix your mistakes.", .failed, failure?.outcome)
        }
    }

    private func commit(_ record: ToolCallRecord, to turn: inout [ChatMessage]) async throws {
        try Task.checkCancellation()
        try await journal.appendToolResult(position: turn.count, record: record)
        turn.append(.tool(record.output, name: record.call.name, callID: record.call.id))
    }

    private func fail(_ reason: String) async throws -> Outcome {
        try await journal.finish(state: .error, result: nil, message: reason)
        return .failed(reason)
    }

    /// The completed task's `result`: the turn as LangChain message dicts.
    static func result(_ turn: [ChatMessage]) -> JSONValue { ["messages": .array(turn.map(\.jsonValue))] }

    /// Tool call ids key the approvals and tool results of a task, so they must be unique in
    /// it; some servers repeat ids like "call_0" across replies or send none.
    static func withUniqueCallIDs(_ message: ChatMessage, turn: [ChatMessage]) -> ChatMessage {
        var used = Set(turn.flatMap { $0.toolCalls.map(\.id) })
        var message = message
        for index in message.toolCalls.indices {
            var id = message.toolCalls[index].id
            if id.isEmpty || used.contains(id) { id = "call_\(turn.count)_\(index)_\(id)" }
            used.insert(id)
            message.toolCalls[index].id = id
        }
        return message
    }
}

/// Where a run commits its steps, for one task. Each call is one commit; a call that finds
/// the run no longer owns the task (its lease taken over, the task deleted) throws.
public protocol AgentJournal: Sendable {
    /// The task's committed turn, the session's earlier messages (up to `historyLimit`, oldest
    /// first) and the human decisions.
    func context(historyLimit: Int) async throws -> RunContext
    /// `context(historyLimit:)` and what `memory` recalls for `query` (up to `limit`), read
    /// together where the journal can (the database's journal: one round trip); by default one
    /// after the other.
    func context(
        historyLimit: Int, recalling query: String, limit: Int, from memory: any MemoryRecall, of key: TaskKey
    ) async throws -> (RunContext, [String])
    func appendModelReply(position: Int, message: ChatMessage, call: ModelCallRecord) async throws
    /// The final answer and the task's completion with `result`, in one commit.
    func completeWithModelReply(position: Int, message: ChatMessage, call: ModelCallRecord, result: JSONValue) async throws
    func recordFailedModelCall(_ call: ModelCallRecord) async throws
    /// Commits that a call of a tool that runs at most once is about to run. False when an
    /// earlier run of the task already started it (and never recorded its result).
    func beginToolCall(_ call: ToolCall, arguments: [String: JSONValue], serverLabel: String?) async throws -> Bool
    func appendToolResult(position: Int, record: ToolCallRecord) async throws
    /// The result of a tool that was running when the task was cancelled: recorded for the audit
    /// (tool calls), not as a step.
    func recordToolCallOfCancelledTask(_ record: ToolCallRecord) async throws
    /// The task waits for a human about `call`; `data` is what the status shows. With `expiry`,
    /// the service decides the approval once it has waited that long.
    func interrupt(call: ToolCall, data: JSONValue, expiry: ApprovalTimeout?) async throws
    func finish(state: TaskState, result: JSONValue?, message: String?) async throws
}

extension AgentJournal {
    public func context(
        historyLimit: Int, recalling query: String, limit: Int, from memory: any MemoryRecall, of key: TaskKey
    ) async throws -> (RunContext, [String]) {
        let context = try await context(historyLimit: historyLimit)
        return (context, try await memory.recalledMemories(tenantID: key.tenantID, userID: key.userID, query: query, limit: limit))
    }
}

/// The user's long-term memories most relevant to a query, best first.
public protocol MemoryRecall: Sendable {
    func recalledMemories(tenantID: String, userID: String, query: String, limit: Int) async throws -> [String]
}

/// Limits of the agent loop, and the model it asks.
public struct AgentSettings: Sendable {
    /// The model name to ask for; nil: the model client's own.
    public var model: String?
    /// Model calls a task may make before it ends in `error`.
    public var maxSteps: Int
    /// Messages of earlier turns the model sees.
    public var historyMessages: Int
    /// Long-term memories recalled into the system message.
    public var memoryRecallLimit: Int
    /// How long an approval waits before the service decides it; nil: until a human does.
    public var approvalTimeout: ApprovalTimeout?

    public init(
        maxSteps: Int = 10, historyMessages: Int = 20, memoryRecallLimit: Int = 5, model: String? = nil, approvalTimeout: ApprovalTimeout? = nil
    ) {
        self.model = model
        self.maxSteps = maxSteps
        self.historyMessages = historyMessages
        self.memoryRecallLimit = memoryRecallLimit
        self.approvalTimeout = approvalTimeout
    }
}

/// Everything a run needs to take the next step of a task.
public struct RunContext: Sendable {
    /// This task's messages so far, the human query first.
    public var turn: [ChatMessage]
    /// Earlier completed turns of the session, oldest first (the run cuts its window).
    public var history: [ChatMessage]
    /// Human decisions by tool call id.
    public var decisions: [String: HumanDecision]

    public init(turn: [ChatMessage], history: [ChatMessage], decisions: [String: HumanDecision]) {
        self.turn = turn
        self.history = history
        self.decisions = decisions
    }
}

/// One model call, for the `llm_calls` table.
public struct ModelCallRecord: Sendable, Equatable {
    public var model: String
    public var usage: TokenUsage?
    public var latencyMilliseconds: Double
    public var error: String?

    public init(model: String, usage: TokenUsage?, latencyMilliseconds: Double, error: String?) {
        self.model = model
        self.usage = usage
        self.latencyMilliseconds = latencyMilliseconds
        self.error = error
    }
}

/// One tool call, for the `tool_calls` table.
public struct ToolCallRecord: Sendable {
    public enum Status: String, Sendable { case ok, failed, rejected, responded }
    public var call: ToolCall
    public var arguments: [String: JSONValue]
    public var output: String
    public var status: Status
    public var decision: HumanDecision.Kind?
    public var durationMilliseconds: Double
    /// The MCP server's label, for a remote tool.
    public var serverLabel: String?
    /// How the call went beyond `status`: `unreachable`, `timeout`, `truncated`, … (nil: nothing more to say).
    public var outcome: String?

    public init(
        call: ToolCall, arguments: [String: JSONValue], output: String, status: Status, decision: HumanDecision.Kind?,
        durationMilliseconds: Double, serverLabel: String? = nil, outcome: String? = nil
    ) {
        self.serverLabel = serverLabel
        self.outcome = outcome
        self.call = call
        self.arguments = arguments
        self.output = output
        self.status = status
        self.decision = decision
        self.durationMilliseconds = durationMilliseconds
    }
}

extension Duration {
    /// Fractional seconds (`make_interval(secs => …)`, client options).
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Fractional milliseconds, as the `latency_ms` and `duration_ms` columns hold them.
    public var milliseconds: Double { seconds * 1000 }
}
