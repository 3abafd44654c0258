import AgentKit
import Foundation
import Logging
import Postgres
import Store

/// Limits of the agent loop.
public struct AgentSettings: Sendable {
    /// Model calls a task may make before it ends in `error`.
    public var maxSteps: Int
    /// Messages of earlier turns the model sees.
    public var historyMessages: Int
    /// Long-term memories recalled into the system message.
    public var memoryRecallLimit: Int

    public init(maxSteps: Int = 10, historyMessages: Int = 20, memoryRecallLimit: Int = 5) {
        self.maxSteps = maxSteps
        self.historyMessages = historyMessages
        self.memoryRecallLimit = memoryRecallLimit
    }
}

/// Runs one claimed task from its last committed step until it completes, fails, or waits for
/// a human. Every step is committed before the next begins.
public struct TaskRunner: Sendable {
    let work: WorkStore
    let memories: MemoryStore
    let model: any ChatModel
    let tools: ToolRegistry
    let settings: AgentSettings
    let logger: Logger

    public init(work: WorkStore, memories: MemoryStore, model: any ChatModel, tools: ToolRegistry, settings: AgentSettings, logger: Logger) {
        self.work = work
        self.memories = memories
        self.model = model
        self.tools = tools
        self.settings = settings
        self.logger = logger
    }

    /// Thrown between steps when the process is shutting down: the task goes back to the queue.
    struct HandedBack: Error {}

    /// - Parameter stopping: asked between steps; true hands the task back instead of starting another.
    /// - Returns: false when the task may still be `running` under this process's lease with
    ///   nobody working on it (the database failed mid-step): the caller must release it.
    @discardableResult
    public func run(_ task: ClaimedTask, stopping: @escaping @Sendable () -> Bool = { false }) async -> Bool {
        var logger = self.logger
        logger[metadataKey: "task"] = "\(task.key)"
        do {
            try await steps(task, stopping: stopping, logger: logger)
            return true
        } catch is HandedBack {
            logger.info("handed back at a step boundary for shutdown")
            return false
        } catch is LeaseLost {
            logger.info("stopped: the task's lease is gone (taken over or deleted)")
            return true
        } catch is CancellationError {
            logger.info("stopped by shutdown; the task goes back to the queue")
            return false
        } catch let error as PostgresError where error.isConnectionFailure {
            logger.warning("database unavailable while running the task; it goes back to the queue", metadata: ["error": "\(String(reflecting: error))"])
            return false
        } catch {
            logger.error("task failed", metadata: ["error": "\(String(reflecting: error))"])
            do {
                try await work.finish(task, state: .error, result: nil, message: "internal error while running the task")
                return true
            } catch {
                return false
            }
        }
    }

    private func steps(_ task: ClaimedTask, stopping: @Sendable () -> Bool, logger: Logger) async throws {
        let context = try await work.context(for: task, historyLimit: settings.historyMessages)
        var turn = context.turn
        guard !turn.isEmpty else {
            try await work.finish(task, state: .error, result: nil, message: "the task has no query message")
            return
        }
        let recalled = try await memories.recall(
            tenantID: task.key.tenantID, userID: task.key.userID, query: task.query, limit: settings.memoryRecallLimit)
        let system = AgentPlanner.systemMessage(task.systemMessage, memories: recalled.map(\.text))
        var modelCalls = turn.filter { $0.type == .ai }.count
        let clock = ContinuousClock()

        while true {
            try Task.checkCancellation()
            if stopping() { throw HandedBack() }
            let step = AgentPlanner.nextStep(
                turn: turn, decisions: context.decisions, tools: tools, modelCalls: modelCalls, maxSteps: settings.maxSteps)
            switch step {
            case .callModel:
                let request = ModelRequest(
                    messages: AgentPlanner.prompt(system: system, history: context.history, turn: turn), tools: tools.specs)
                let started = clock.now
                let reply: ModelReply
                do {
                    reply = try await model.complete(request)
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    // Server text is stored (llm_calls, the task's message): it must be storable too.
                    let reason = ((error as? ModelError)?.message ?? "\(error)").withoutNUL
                    let elapsed = (clock.now - started).milliseconds
                    try? await work.recordFailedModelCall(
                        task, call: ModelCallRecord(model: model.name, usage: nil, latencyMilliseconds: elapsed, error: reason))
                    try await work.finish(task, state: .error, result: nil, message: "model call failed: \(reason)")
                    return
                }
                let message = Self.withUniqueCallIDs(reply.message.storable, turn: turn)
                let record = ModelCallRecord(
                    model: reply.model.withoutNUL, usage: reply.usage, latencyMilliseconds: (clock.now - started).milliseconds, error: nil)
                let position = turn.count
                turn.append(message)
                modelCalls += 1
                // A final answer is written together with the task's end: one commit, not two.
                if case .finish = AgentPlanner.nextStep(
                    turn: turn, decisions: context.decisions, tools: tools, modelCalls: modelCalls, maxSteps: settings.maxSteps)
                {
                    try await work.completeWithModelReply(
                        task, position: position, message: message, call: record, result: ["messages": .array(turn.map(\.jsonValue))])
                    return
                }
                try await work.appendModelReply(task, position: position, message: message, call: record)

            case .runTool(let call, let arguments, let decision):
                let started = clock.now
                var output: String
                var status = ToolCallRecord.Status.ok
                if let tool = tools.tools[call.name] {
                    do {
                        output = try await tool.run(
                            arguments: arguments,
                            context: ToolContext(
                                tenantID: task.key.tenantID, userID: task.key.userID, sessionID: task.key.sessionID,
                                taskID: task.key.taskID, toolCallID: call.id))
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        // As LangGraph's ToolNode does: the model sees the error and may correct itself.
                        output = "Error: \((error as? ToolError)?.message ?? "\(error)")\n Please fix your mistakes."
                        status = .failed
                    }
                } else {
                    output = "Error: \(call.name) is not a valid tool, try one of [\(tools.specs.map(\.name).joined(separator: ", "))]."
                    status = .failed
                }
                try await commitToolMessage(
                    task, turn: &turn,
                    record: ToolCallRecord(
                        call: call, arguments: arguments, output: output.withoutNUL, status: status, decision: decision,
                        durationMilliseconds: (clock.now - started).milliseconds))

            case .answerTool(let call, let content, let decision):
                try await commitToolMessage(
                    task, turn: &turn,
                    record: ToolCallRecord(
                        call: call, arguments: call.args, output: content, status: decision == .reject ? .rejected : .responded,
                        decision: decision, durationMilliseconds: 0))

            case .interrupt(let call):
                try await work.interrupt(task, call: call, data: ApprovalRequest.interruptData(for: call))
                logger.debug("waiting for a human", metadata: ["tool": "\(call.name)"])
                return

            case .finish:
                try await work.finish(task, state: .completed, result: ["messages": .array(turn.map(\.jsonValue))], message: nil)
                return

            case .stepLimitReached:
                try await work.finish(
                    task, state: .error, result: nil,
                    message: "the agent made \(settings.maxSteps) model calls (MAX_STEPS) without reaching a final answer")
                return
            }
        }
    }

    private func commitToolMessage(_ task: ClaimedTask, turn: inout [ChatMessage], record: ToolCallRecord) async throws {
        try await work.appendToolResult(task, position: turn.count, record: record)
        turn.append(.tool(record.output, name: record.call.name, callID: record.call.id))
    }

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

extension Duration {
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
