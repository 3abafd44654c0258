import AgentKit
import Testing

private let tools = ToolRegistry(tools: [BookHotelTool(), MultiplyTool()], approvalRequired: ["book_hotel"])
private let hotelCall = ToolCall(id: "c1", name: "book_hotel", args: ["hotel_name": "如家"])
private let multiplyCall = ToolCall(id: "c2", name: "multiply", args: ["a": 3, "b": 4])

@Suite("agent step planner")
struct PlannerTests {
    func next(_ turn: [ChatMessage], decisions: [String: HumanDecision] = [:], calls: Int = 0, max: Int = 10) -> AgentStep {
        AgentPlanner.nextStep(turn: turn, decisions: decisions, tools: tools, modelCalls: calls, maxSteps: max)
    }

    @Test func newQueryCallsTheModel() {
        #expect(next([.human("hi")]) == .callModel)
        #expect(next([.human("hi")], calls: 10) == .stepLimitReached)
    }

    @Test func finalAnswerFinishes() {
        #expect(next([.human("hi"), .ai("hello")], calls: 1) == .finish)
    }

    @Test func toolsWithoutApprovalRun() {
        let turn: [ChatMessage] = [.human("3*4"), .ai("", toolCalls: [multiplyCall])]
        #expect(next(turn, calls: 1) == .runTool(multiplyCall, arguments: multiplyCall.args, decision: nil))
        #expect(next(turn + [.tool("12", name: "multiply", callID: "c2")], calls: 1) == .callModel)
    }

    @Test func approvalInterruptsUntilDecided() {
        let turn: [ChatMessage] = [.human("book"), .ai("", toolCalls: [hotelCall])]
        #expect(next(turn, calls: 1) == .interrupt(hotelCall))
        #expect(
            next(turn, decisions: ["c1": HumanDecision(kind: .accept, args: nil)], calls: 1)
                == .runTool(hotelCall, arguments: hotelCall.args, decision: .accept))
        #expect(
            next(turn, decisions: ["c1": HumanDecision(kind: .edit, args: ["args": ["hotel_name": "汉庭"]])], calls: 1)
                == .runTool(hotelCall, arguments: ["hotel_name": "汉庭"], decision: .edit))
        #expect(
            next(turn, decisions: ["c1": HumanDecision(kind: .reject, args: nil)], calls: 1)
                == .answerTool(hotelCall, content: HumanDecision.rejectionMessage, decision: .reject))
        #expect(
            next(turn, decisions: ["c1": HumanDecision(kind: .response, args: ["args": "不用了"])], calls: 1)
                == .answerTool(hotelCall, content: "不用了", decision: .response))
    }

    @Test func callsOfOneReplyGoInOrder() {
        let second = ToolCall(id: "c3", name: "book_hotel", args: ["hotel_name": "B"])
        let turn: [ChatMessage] = [.human("book two"), .ai("", toolCalls: [hotelCall, second])]
        let decided = ["c1": HumanDecision(kind: .accept, args: nil)]
        #expect(next(turn + [.tool("ok", name: "book_hotel", callID: "c1")], decisions: decided, calls: 1) == .interrupt(second))
    }

    @Test func unknownToolsRunAndFail() {
        let call = ToolCall(id: "x", name: "no_such_tool", args: [:])
        #expect(next([.human("?"), .ai("", toolCalls: [call])], calls: 1) == .runTool(call, arguments: [:], decision: nil))
    }

    @Test func historyWindowStartsAtAHumanMessage() {
        let history: [ChatMessage] = [
            .human("q1"), .ai("", toolCalls: [multiplyCall]), .tool("12", name: "multiply", callID: "c2"), .ai("12"),
            .human("q2"), .ai("a2"),
        ]
        #expect(AgentPlanner.historyWindow(history, limit: 3).map(\.content) == ["q2", "a2"])
        #expect(AgentPlanner.historyWindow(history, limit: 6).count == 6)
        #expect(AgentPlanner.historyWindow(history, limit: 0).isEmpty)
    }

    @Test func systemMessageCarriesMemories() {
        #expect(AgentPlanner.systemMessage(nil, memories: []) == AgentPlanner.defaultSystemMessage)
        let composed = AgentPlanner.systemMessage("Be brief.", memories: ["I am vegetarian", "我喜欢靠窗"])
        #expect(composed == "Be brief.\n我的附加信息有:\n- I am vegetarian\n- 我喜欢靠窗")
    }
}

@Suite("human decisions")
struct DecisionTests {
    @Test func editArguments() {
        #expect(HumanDecision(kind: .edit, args: ["args": ["hotel_name": "A"]]).editedArguments == ["hotel_name": "A"])
        #expect(HumanDecision(kind: .edit, args: ["hotel_name": "A"]).editedArguments == ["hotel_name": "A"])
        #expect(HumanDecision(kind: .edit, args: nil).problem != nil)
        #expect(HumanDecision(kind: .edit, args: ["args": "text"]).problem != nil)
    }

    @Test func responseText() {
        #expect(HumanDecision(kind: .response, args: ["args": "no"]).responseText == "no")
        #expect(HumanDecision(kind: .response, args: .string("plain")).responseText == "plain")
        #expect(HumanDecision(kind: .response, args: nil).problem != nil)
        #expect(HumanDecision(kind: .response, args: ["args": ""]).problem != nil)
        #expect(HumanDecision(kind: .accept, args: nil).problem == nil)
    }
}

@Suite("offline model")
struct OfflineModelTests {
    let model = OfflineModel()
    let specs = [BookHotelTool().spec, MultiplyTool().spec]

    func reply(_ messages: [ChatMessage]) async throws -> ChatMessage {
        try await model.complete(ModelRequest(messages: [.system("s")] + messages, tools: specs)).message
    }

    @Test("recognises hotel bookings", arguments: [
        ("帮我预定如家酒店", "如家酒店"), ("请预订一间汉庭酒店。", "汉庭酒店"), ("book a room at the Hilton", "Hilton"),
        ("Please book the Grand Hotel for tonight", "Grand Hotel"),
    ])
    func hotels(query: String, hotel: String) async throws {
        let message = try await reply([.human(query)])
        #expect(message.toolCalls.first?.name == "book_hotel")
        #expect(message.toolCalls.first?.args["hotel_name"] == .string(hotel))
    }

    @Test("recognises multiplication", arguments: [("3 乘以 4", 3.0, 4.0), ("what is 6 times 7?", 6, 7), ("multiply 2.5 and 4", 2.5, 4), ("6*7", 6, 7)])
    func multiplication(query: String, a: Double, b: Double) async throws {
        let message = try await reply([.human(query)])
        #expect(message.toolCalls.first?.name == "multiply")
        #expect(message.toolCalls.first?.args == ["a": .number(a), "b": .number(b)])
    }

    @Test func answersFromToolResults() async throws {
        let call = ToolCall(id: "c", name: "multiply", args: ["a": 6, "b": 7])
        let answer = try await reply([.human("6*7"), .ai("", toolCalls: [call]), .tool("42", name: "multiply", callID: "c")])
        #expect(answer.toolCalls.isEmpty)
        #expect(answer.content.contains("42"))
        let rejected = try await reply([
            .human("book"), .ai("", toolCalls: [hotelCall]), .tool(HumanDecision.rejectionMessage, name: "book_hotel", callID: "c1"),
        ])
        #expect(rejected.content.contains("拒绝"))
    }

    @Test func asksMemoryWhenItCan() async throws {
        let recall = ToolSpec(name: "recall_memory", description: "", parameters: ["type": "object"])
        let request = ModelRequest(messages: [.human("你还记得我喜欢什么座位吗")], tools: specs + [recall])
        let message = try await model.complete(request).message
        #expect(message.toolCalls.first?.name == "recall_memory")
        #expect(message.toolCalls.first?.args["query"] == "你还记得我喜欢什么座位吗")
    }

    @Test func otherwiseSaysWhatItIs() async throws {
        let message = try await reply([.human("What's the weather?")])
        #expect(message.toolCalls.isEmpty)
        #expect(message.content.contains("offline model"))
    }

    @Test func toolsRunAndValidate() async throws {
        let context = ToolContext(key: TaskKey(tenantID: "t", userID: "u", sessionID: "s", taskID: "k"), toolCallID: "c")
        #expect(try await MultiplyTool().run(arguments: ["a": 6, "b": 7], context: context) == "42")
        #expect(try await MultiplyTool().run(arguments: ["a": 1.5, "b": 3], context: context) == "4.5")
        #expect(try await BookHotelTool().run(arguments: ["hotel_name": "如家"], context: context) == "成功预定了在如家的住宿。")
        await #expect(throws: ToolError.self) { try await BookHotelTool().run(arguments: [:], context: context) }
        await #expect(throws: ToolError.self) { try await MultiplyTool().run(arguments: ["a": "x"], context: context) }
    }
}
