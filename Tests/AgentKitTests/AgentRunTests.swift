import AgentKit
import Synchronization
import Testing

/// A task's journal in memory: what PostgreSQL holds for a task in the service.
private actor MemoryJournal: AgentJournal {
    var turn: [ChatMessage]
    var history: [ChatMessage]
    var decisions: [String: HumanDecision] = [:]
    var state = TaskState.running
    var result: JSONValue?
    var message: String?
    var interruptData: JSONValue?
    var modelCalls: [ModelCallRecord] = []
    var toolRecords: [ToolCallRecord] = []
    /// Each journal call is one commit in the service.
    var commits = 0

    struct OutOfOrder: Error {}

    init(query: String, history: [ChatMessage] = []) {
        turn = [.human(query)]
        self.history = history
    }

    func context(historyLimit: Int) -> RunContext {
        RunContext(turn: turn, history: Array(history.suffix(historyLimit)), decisions: decisions)
    }

    func appendModelReply(position: Int, message: ChatMessage, call: ModelCallRecord) throws {
        guard position == turn.count else { throw OutOfOrder() }
        turn.append(message)
        modelCalls.append(call)
        commits += 1
    }

    func completeWithModelReply(position: Int, message: ChatMessage, call: ModelCallRecord, result: JSONValue) throws {
        try appendModelReply(position: position, message: message, call: call)
        commits -= 1
        finish(state: .completed, result: result, message: nil)
    }

    func recordFailedModelCall(_ call: ModelCallRecord) {
        modelCalls.append(call)
        commits += 1
    }

    func appendToolResult(position: Int, record: ToolCallRecord) throws {
        guard position == turn.count else { throw OutOfOrder() }
        turn.append(.tool(record.output, name: record.call.name, callID: record.call.id))
        toolRecords.append(record)
        commits += 1
    }

    /// Calls of tools that run at most once, committed as started.
    var started: [String] = []

    func beginToolCall(_ call: ToolCall, arguments: [String: JSONValue], serverLabel: String?) -> Bool {
        commits += 1
        guard !started.contains(call.id) else { return false }
        started.append(call.id)
        return true
    }

    /// Tool results recorded after a cancel: audit only, never in the turn.
    var auditedAfterCancel: [ToolCallRecord] = []

    func recordToolCallOfCancelledTask(_ record: ToolCallRecord) {
        auditedAfterCancel.append(record)
    }

    func interrupt(call: ToolCall, data: JSONValue, expiry: ApprovalTimeout?) {
        state = .interrupted
        interruptData = data
        commits += 1
    }

    func finish(state: TaskState, result: JSONValue?, message: String?) {
        self.state = state
        self.result = result
        self.message = message
        commits += 1
    }

    /// What `/agent/resume` does: the decision, and the task queued again.
    func decide(_ callID: String, _ decision: HumanDecision) {
        decisions[callID] = decision
        state = .queued
    }
}

/// A chat model that answers from a script, and records what it was asked.
private final class ScriptedChat: ChatModel {
    let name = "scripted"
    private let script: Mutex<[Result<ChatMessage, ModelError>]>
    private let asked = Mutex<[ModelRequest]>([])

    init(_ replies: [Result<ChatMessage, ModelError>]) { script = Mutex(replies) }

    var requests: [ModelRequest] { asked.withLock { $0 } }

    func complete(_ request: ModelRequest) async throws -> ModelReply {
        asked.withLock { $0.append(request) }
        let next = script.withLock { $0.isEmpty ? .success(.ai("(script ended)")) : $0.removeFirst() }
        return ModelReply(message: try next.get(), usage: TokenUsage(promptTokens: 10, completionTokens: 2), model: "scripted-1")
    }
}

private struct FixedMemories: MemoryRecall {
    var texts: [String] = []
    func recalledMemories(tenantID: String, userID: String, query: String, limit: Int) async throws -> [String] { Array(texts.prefix(limit)) }
}

private let key = TaskKey(tenantID: "t", userID: "u", sessionID: "s", taskID: "k")
private let tools = ToolRegistry(tools: [BookHotelTool(), MultiplyTool()], approvalRequired: ["book_hotel"])
private let hotel = ToolCall(id: "c1", name: "book_hotel", args: ["hotel_name": "如家"])
private let multiply = ToolCall(id: "c2", name: "multiply", args: ["a": 3, "b": 4])

@Suite("the agent run, without PostgreSQL or HTTP")
struct AgentRunTests {
    private func run(
        _ journal: MemoryJournal, _ model: ScriptedChat, memories: [String] = [], settings: AgentSettings = AgentSettings(),
        stopping: @escaping @Sendable () -> Bool = { false }
    ) async throws -> AgentRun.Outcome {
        try await AgentRun(
            key: key, query: "q", systemMessage: nil, journal: journal, memory: FixedMemories(texts: memories), model: model, tools: tools,
            settings: settings
        ).run(stopping: stopping)
    }

    @Test("a final answer completes the task in one commit, with the turn as its result")
    func finalAnswer() async throws {
        let journal = MemoryJournal(query: "你好")
        let model = ScriptedChat([.success(.ai("你好！"))])
        #expect(try await run(journal, model, memories: ["我喜欢靠窗的座位"]) == .completed)
        #expect(await journal.state == .completed)
        #expect(await journal.commits == 1)
        #expect(await journal.result?["messages"] == [["type": "human", "content": "你好"], ["type": "ai", "content": "你好！", "tool_calls": []]])
        #expect(await journal.modelCalls.first?.model == "scripted-1")
        // The recalled memories are in the system message.
        #expect(model.requests.first?.messages.first?.content.contains("- 我喜欢靠窗的座位") == true)
    }

    @Test("a tool without approval runs, its result is committed, and the model answers")
    func toolRuns() async throws {
        let journal = MemoryJournal(query: "3 乘以 4")
        let model = ScriptedChat([.success(.ai("", toolCalls: [multiply])), .success(.ai("12"))])
        #expect(try await run(journal, model) == .completed)
        #expect(await journal.toolRecords.map(\.output) == ["12"])
        #expect(await journal.toolRecords.first?.status == .ok)
        #expect(await journal.turn.map(\.type) == [.human, .ai, .tool, .ai])
        #expect(model.requests.count == 2)
        #expect(model.requests.last?.messages.last?.content == "12")
    }

    @Test("a tool that needs approval pauses the run; accept, edit, reject and response each go on from there")
    func approvals() async throws {
        let cases: [(HumanDecision, String, ToolCallRecord.Status)] = [
            (HumanDecision(kind: .accept, args: nil), "成功预定了在如家的住宿。", .ok),
            (HumanDecision(kind: .edit, args: ["args": ["hotel_name": "汉庭"]]), "成功预定了在汉庭的住宿。", .ok),
            (HumanDecision(kind: .reject, args: nil), HumanDecision.rejectionMessage, .rejected),
            (HumanDecision(kind: .response, args: ["args": "明天再订"]), "明天再订", .responded),
        ]
        for (decision, output, status) in cases {
            let journal = MemoryJournal(query: "订如家")
            let model = ScriptedChat([.success(.ai("", toolCalls: [hotel])), .success(.ai("done"))])
            #expect(try await run(journal, model) == .interrupted(hotel))
            #expect(await journal.state == .interrupted)
            #expect(await journal.interruptData?["action_request"]?["action"] == "book_hotel")
            #expect(await journal.toolRecords.isEmpty)

            await journal.decide("c1", decision)
            #expect(try await run(journal, model) == .completed)
            #expect(await journal.toolRecords.map(\.output) == [output], "\(decision.kind)")
            #expect(await journal.toolRecords.first?.status == status)
            #expect(await journal.toolRecords.first?.decision == decision.kind)
            #expect(model.requests.count == 2)
        }
    }

    @Test("several calls in one reply: each is answered in order, the one that needs approval pauses")
    func severalCalls() async throws {
        let journal = MemoryJournal(query: "算一下再订酒店")
        let model = ScriptedChat([.success(.ai("", toolCalls: [multiply, hotel])), .success(.ai("both done"))])
        #expect(try await run(journal, model) == .interrupted(hotel))
        #expect(await journal.toolRecords.map(\.call.id) == ["c2"])
        await journal.decide("c1", HumanDecision(kind: .accept, args: nil))
        #expect(try await run(journal, model) == .completed)
        #expect(await journal.toolRecords.map(\.call.id) == ["c2", "c1"])
        #expect(await journal.turn.last?.content == "both done")
    }

    @Test("a model that never stops calling tools ends the task at MAX_STEPS")
    func stepLimit() async throws {
        let journal = MemoryJournal(query: "loop")
        let model = ScriptedChat(Array(repeating: .success(.ai("", toolCalls: [multiply])), count: 10))
        let outcome = try await run(journal, model, settings: AgentSettings(maxSteps: 3))
        guard case .failed(let reason) = outcome else { Issue.record("\(outcome)"); return }
        #expect(reason.contains("MAX_STEPS"))
        #expect(model.requests.count == 3)
        #expect(await journal.state == .error)
        // Repeated ids are made unique, so every call is answered once.
        #expect(Set(await journal.toolRecords.map(\.call.id)).count == 3)
    }

    @Test("a failed model call ends the task in error and is recorded")
    func modelFailure() async throws {
        let journal = MemoryJournal(query: "hi")
        let model = ScriptedChat([.failure(ModelError(message: "model server answered 503"))])
        #expect(try await run(journal, model) == .failed("model call failed: model server answered 503"))
        #expect(await journal.state == .error)
        #expect(await journal.message == "model call failed: model server answered 503")
        #expect(await journal.modelCalls.first?.error == "model server answered 503")
    }

    @Test("the model sees the history window, cut to start at a human message")
    func historyWindow() async throws {
        let history: [ChatMessage] = [.human("old"), .ai("", toolCalls: [multiply]), .tool("12", name: "multiply", callID: "c2"), .ai("12"),
                                      .human("recent"), .ai("ok")]
        let journal = MemoryJournal(query: "now", history: history)
        let model = ScriptedChat([.success(.ai("fine"))])
        _ = try await run(journal, model, settings: AgentSettings(historyMessages: 4))
        // The last four start with a tool result; the window drops it and the call-less ai before it.
        #expect(model.requests.first?.messages.map(\.content) == [AgentPlanner.defaultSystemMessage, "recent", "ok", "now"])
    }

    @Test("asked to stop, the run hands the task back before its next step")
    func handsBack() async throws {
        let journal = MemoryJournal(query: "hi")
        let model = ScriptedChat([.success(.ai("never"))])
        await #expect(throws: AgentRun.HandedBack.self) { try await run(journal, model, stopping: { true }) }
        #expect(await journal.commits == 0)
        #expect(model.requests.isEmpty)
    }
}

/// A tool that says when it starts, takes its time, and then reports that it finished.
private struct SlowTool: Tool {
    let started: AsyncStream<Void>.Continuation
    var spec: ToolSpec { ToolSpec(name: "slow", description: "takes a while", parameters: ["type": "object"]) }
    func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String {
        started.yield()
        try await Task.sleep(for: .milliseconds(300))
        return "slow work done"
    }
}

/// A model whose answer never comes (until it is cancelled).
private final class HangingChat: ChatModel {
    let name = "hanging"
    let abandoned = Atomic<Bool>(false)
    func complete(_ request: ModelRequest) async throws -> ModelReply {
        do {
            try await Task.sleep(for: .seconds(60))
        } catch {
            abandoned.store(true, ordering: .relaxed)
            throw error
        }
        return ModelReply(message: .ai("too late"), usage: nil, model: name)
    }
}

@Suite("cancelling a run, without PostgreSQL or HTTP")
struct AgentRunCancelTests {
    @Test("a cancel during the model call abandons the call at once and commits nothing")
    func cancelDuringModelCall() async throws {
        let journal = MemoryJournal(query: "q")
        let model = HangingChat()
        let cancel = CancelSignal()
        let run = AgentRun(
            key: key, query: "q", systemMessage: nil, journal: journal, memory: FixedMemories(), model: model, tools: tools,
            settings: AgentSettings())
        let outcome = Task { try await run.run(cancel: cancel) }
        try await Task.sleep(for: .milliseconds(100))
        cancel.fire()
        await #expect(throws: AgentRun.Cancelled.self) { try await outcome.value }
        let abandoned = model.abandoned.load(ordering: .relaxed)
        #expect(abandoned)
        #expect(await journal.commits == 0)
        #expect(await journal.turn.count == 1)
    }

    @Test("a tool already running finishes; its result is recorded for the audit only, and the model is not called again")
    func cancelDuringTool() async throws {
        let journal = MemoryJournal(query: "q")
        let slow = ToolCall(id: "c9", name: "slow", args: [:])
        let model = ScriptedChat([.success(.ai("", toolCalls: [slow])), .success(.ai("should not be asked"))])
        let cancel = CancelSignal()
        let (started, tool) = AsyncStream<Void>.makeStream()
        let run = AgentRun(
            key: key, query: "q", systemMessage: nil, journal: journal, memory: FixedMemories(), model: model,
            tools: ToolRegistry(tools: [SlowTool(started: tool)], approvalRequired: []), settings: AgentSettings())
        let outcome = Task { try await run.run(cancel: cancel) }
        // Cancelled once the tool has started; it takes 300 ms.
        for await _ in started { break }
        cancel.fire()
        await #expect(throws: AgentRun.Cancelled.self) { try await outcome.value }
        #expect(await journal.auditedAfterCancel.map(\.output) == ["slow work done"])
        #expect(await journal.toolRecords.isEmpty)
        #expect(await journal.turn.map(\.type) == [.human, .ai])
        #expect(model.requests.count == 1)
    }

    @Test("a cancel fired before the run starts takes no step at all")
    func cancelBeforeStart() async throws {
        let journal = MemoryJournal(query: "q")
        let model = ScriptedChat([.success(.ai("answer"))])
        let cancel = CancelSignal()
        cancel.fire()
        let run = AgentRun(
            key: key, query: "q", systemMessage: nil, journal: journal, memory: FixedMemories(), model: model, tools: tools,
            settings: AgentSettings())
        await #expect(throws: AgentRun.Cancelled.self) { try await run.run(cancel: cancel) }
        #expect(model.requests.isEmpty)
        #expect(await journal.commits == 0)
    }
    @Test("a tool that must run at most once commits its start first, and is never run again by a later run")
    func atMostOnce() async throws {
        let counter = Counter()
        let tools = ToolRegistry(tools: [OnceTool(counter: counter)], approvalRequired: [])
        let call = ToolCall(id: "c7", name: "once", args: [:])
        func run(_ journal: MemoryJournal, _ model: ScriptedChat) async throws -> AgentRun.Outcome {
            try await AgentRun(
                key: key, query: "q", systemMessage: nil, journal: journal, memory: FixedMemories(), model: model, tools: tools,
                settings: AgentSettings(model: "agent-model")
            ).run()
        }
        let journal = MemoryJournal(query: "q")
        let model = ScriptedChat([.success(.ai("", toolCalls: [call])), .success(.ai("done"))])
        #expect(try await run(journal, model) == .completed)
        #expect(counter.value == 1)
        #expect(await journal.started == ["c7"])
        #expect(await journal.toolRecords.first?.outcome == nil)
        #expect(model.requests.first?.model == "agent-model")

        // A run that crashed after the start and before the result: the next run does not call it.
        let crashed = MemoryJournal(query: "q")
        _ = await crashed.beginToolCall(call, arguments: [:], serverLabel: nil)
        try await crashed.appendModelReply(position: 1, message: .ai("", toolCalls: [call]), call: ModelCallRecord(model: "m", usage: nil, latencyMilliseconds: 0, error: nil))
        #expect(try await run(crashed, ScriptedChat([.success(.ai("done"))])) == .completed)
        #expect(counter.value == 1)
        #expect(await crashed.toolRecords.first?.status == .failed)
        #expect(await crashed.toolRecords.first?.outcome == "unknown")
        #expect(await crashed.toolRecords.first?.output.contains("not run again") == true)
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

private struct OnceTool: Tool {
    let counter: Counter
    let spec = ToolSpec(name: "once", description: "does something once", parameters: ["type": "object"])
    var runsAtMostOnce: Bool { true }
    func run(arguments: [String: JSONValue], context: ToolContext) async throws -> String {
        counter.increment()
        return "did it"
    }
}
