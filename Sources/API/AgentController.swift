import AgentKit
import Foundation
import Hummingbird
import Store
import Telemetry

/// The REST contract of the original service (see ../shared/API.md): same paths, fields,
/// shapes and status values.
public struct AgentController: Sendable {
    let tasks: TaskStore
    let sessions: SessionStore
    let memories: MemoryStore
    let watch: TaskWatch
    let metrics: ServiceMetrics

    public init(tasks: TaskStore, sessions: SessionStore, memories: MemoryStore, watch: TaskWatch, metrics: ServiceMetrics = .disabled()) {
        self.tasks = tasks
        self.sessions = sessions
        self.memories = memories
        self.watch = watch
        self.metrics = metrics
    }

    /// Longest `?wait=` on a status read, in seconds: well inside any proxy's idle timeout.
    public static let maxStatusWait = 30.0

    public var endpoints: RouteCollection<TenantRequestContext> {
        let routes = RouteCollection(context: TenantRequestContext.self)
        routes.post("/agent/invoke", use: invoke)
        routes.post("/agent/resume", use: resume)
        routes.post("/agent/resume/batch", use: resumeBatch)
        routes.post("/agent/cancel", use: cancel)
        routes.get("/system/info", use: systemInfo)
        routes.get("/system/whoami", use: whoami)
        routes.get("/agent/active/sessionid/:user_id", use: activeSession)
        routes.get("/agent/sessionids/:user_id", use: sessionIDs)
        routes.get("/agent/tasks/:user_id/:session_id", use: taskIDs)
        routes.get("/agent/status/:user_id/:session_id/:task_id", use: status)
        routes.post("/agent/write/longterm", use: writeMemory)
        routes.delete("/agent/session/:user_id/:session_id", use: deleteSession)
        routes.delete("/agent/session/:user_id/:session_id/:task_id", use: deleteTask)
        // The path later forks of the original use for the same thing.
        routes.delete("/agent/task/:user_id/:session_id/:task_id", use: deleteTask)
        return routes
    }

    // MARK: Requests

    struct AgentRequest: Decodable {
        var user_id: String
        var session_id: String
        var task_id: String
        var query: String
        var system_message: String?
        /// An extension: what to do when the session has unfinished tasks (`TaskStore.BusyPolicy`).
        var if_busy: String?
        /// An extension: the tenant's agent to run (`PUT /agents/{agent_id}`); absent: `default`.
        var agent_id: String?
    }

    struct CancelRequest: Decodable {
        var user_id: String
        var session_id: String
        /// Absent: every unfinished task of the session.
        var task_id: String?
    }

    struct InterruptResponse: Decodable {
        var user_id: String
        var session_id: String
        var task_id: String
        var response_type: String
        var args: JSONValue?
        /// An extension: the tool call the decider saw (`interrupt_data.tool_call_id`); another is 409.
        var tool_call_id: String?
    }

    struct LongMemRequest: Decodable {
        var user_id: String
        var memory_info: String
        /// An extension: the memory of the user this one replaces (recall no longer sees it).
        var replaces: String?
    }

    // MARK: Handlers

    @Sendable func invoke(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(AgentRequest.self, from: request, context: context)
        let key = try context.taskKey(body.user_id, body.session_id, body.task_id, creating: true)
        let query = try Validate.text(body.query, field: "query")
        let system = try body.system_message.map { try Validate.text($0, field: "system_message", allowEmpty: true) }
        let policy = try body.if_busy.map { value in
            guard let policy = TaskStore.BusyPolicy(rawValue: value) else {
                throw APIError.unprocessable("if_busy must be one of \(TaskStore.BusyPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return policy
        }
        let agent = try body.agent_id.map { try Validate.id($0, field: "agent_id") }
        let outcome = try await tasks.submit(
            key, query: query, systemMessage: system, agentID: agent, apiKeyID: context.keyID, maxInFlight: context.maxTasksInFlight,
            ifBusy: policy ?? .enqueue, cancelledBy: "task \(key.taskID) (if_busy=interrupt, \(Self.caller(context)))",
            requestID: context.requestID.isEmpty ? nil : context.requestID)
        switch outcome {
        case .queued:
            metrics.tasksSubmitted.increment()
            return ids(key)
        case .duplicate: return ids(key)
        case .limited: throw Self.inFlightLimit(context)
        case .unknownAgent: throw APIError.unprocessable("agent_id: this tenant has no agent \(agent ?? TaskStore.defaultAgent)")
        case .busy(let unfinished):
            throw APIError.conflict("session \(key.sessionID) has an unfinished task, \(unfinished) (if_busy=reject)")
        }
    }

    /// `POST /agent/cancel`: one task, or with no task_id every unfinished task of the session.
    @Sendable func cancel(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(CancelRequest.self, from: request, context: context)
        let who = Self.caller(context)
        guard let taskID = body.task_id else {
            let user = try Validate.id(body.user_id, field: "user_id")
            try context.authorize(user: user)
            let session = try Validate.id(body.session_id, field: "session_id")
            guard let cancelled = try await tasks.cancelSession(tenantID: context.tenantID, userID: user, sessionID: session, by: who) else {
                throw APIError.notFound("session \(user):\(session) not found")
            }
            return JSONBody.response([
                "user_id": .string(user), "session_id": .string(session), "task_ids": .array(cancelled.map(JSONValue.string)),
                "status": "cancelled",
            ])
        }
        let key = try context.taskKey(body.user_id, body.session_id, taskID)
        switch try await tasks.cancel(key, by: who) {
        case .cancelled(let message):
            return JSONBody.response([
                "user_id": .string(key.userID), "session_id": .string(key.sessionID), "task_id": .string(key.taskID),
                "status": "cancelled", "message": .string(message),
            ])
        case .notFound:
            throw APIError.notFound("task \(key.userID):\(key.sessionID):\(key.taskID) not found")
        case .ended(let state):
            throw APIError.conflict("task \(key.taskID) already ended: it is \(Self.statusValue(state))")
        }
    }

    /// Who a cancel names as its author: the API key, never its secret.
    static func caller(_ context: TenantRequestContext) -> String {
        context.keyID.map { "API key \($0)" } ?? "an open-mode client"
    }

    static func inFlightLimit(_ context: TenantRequestContext) -> APIError {
        APIError(
            .tooManyRequests, "this API key already has \(context.maxTasksInFlight ?? 0) tasks queued or running",
            headers: [.retryAfter: "1"])
    }

    @Sendable func resume(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(InterruptResponse.self, from: request, context: context)
        return ids(try await apply(body, context: context))
    }

    /// Most decisions of one `POST /agent/resume/batch`.
    public static let maxBatchDecisions = 100
    /// Longest `tool_call_id` a decision may name (models' ids are short; this only bounds input).
    public static let maxToolCallIDBytes = 512

    /// `POST /agent/resume/batch`: each decision applied as `/agent/resume` would, in order; each
    /// gets its own result (the status and detail a single resume would answer), so one bad item
    /// never blocks the others.
    @Sendable func resumeBatch(_ request: Request, context: TenantRequestContext) async throws -> Response {
        struct Batch: Decodable { var decisions: [JSONValue] }
        let batch = try await JSONBody.decode(Batch.self, from: request, context: context)
        guard !batch.decisions.isEmpty, batch.decisions.count <= Self.maxBatchDecisions else {
            throw APIError.unprocessable("decisions must hold 1 to \(Self.maxBatchDecisions) decisions")
        }
        var results: [JSONValue] = []
        for item in batch.decisions {
            var result: [String: JSONValue] = [:]
            for field in ["user_id", "session_id", "task_id"] { result[field] = item[field]?.stringValue.map(JSONValue.string) ?? .null }
            do {
                let body = try JSONBody.decode(InterruptResponse.self, from: item)
                _ = try await apply(body, context: context)
                result["status_code"] = 200
                result["status"] = "queued"
            } catch {
                let answer = ErrorAnswer(error, logger: nil, path: request.uri.path)
                result["status_code"] = .number(Double(answer.status.code))
                result["detail"] = .string(answer.detail)
            }
            results.append(.object(result))
        }
        return JSONBody.response(["results": .array(results)])
    }

    /// Records one human decision and queues the task again; every refusal is an `APIError`.
    private func apply(_ body: InterruptResponse, context: TenantRequestContext) async throws -> TaskKey {
        let key = try context.taskKey(body.user_id, body.session_id, body.task_id)
        guard let kind = HumanDecision.Kind(rawValue: body.response_type) else {
            throw APIError.unprocessable(
                "response_type must be one of \(HumanDecision.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        switch body.args {
        case nil, .null?, .object?, .string?: break
        default: throw APIError.unprocessable("args must be an object")
        }
        let decision = HumanDecision(kind: kind, args: body.args == .null ? nil : body.args)
        // PostgreSQL's jsonb cannot hold NUL, in a key or in a value.
        if decision.args?.containsNUL == true { throw APIError.unprocessable("args must not contain NUL characters") }
        if let problem = decision.problem { throw APIError.unprocessable(problem) }
        if let call = body.tool_call_id, call.isEmpty || call.utf8.count > Self.maxToolCallIDBytes || call.contains("\u{0}") {
            throw APIError.unprocessable("tool_call_id must be 1 to \(Self.maxToolCallIDBytes) bytes without NUL")
        }
        let outcome = try await tasks.resume(
            key, decision: decision, toolCallID: body.tool_call_id, apiKeyID: context.keyID, maxInFlight: context.maxTasksInFlight,
            requestID: context.requestID.isEmpty ? nil : context.requestID)
        switch outcome {
        case .queued:
            return key
        case .limited:
            throw Self.inFlightLimit(context)
        case .notFound:
            throw APIError.notFound("task \(key.userID):\(key.sessionID):\(key.taskID) not found")
        case .notInterrupted(let state):
            throw APIError.conflict("task \(key.taskID) is not waiting for a human decision (it is \(Self.statusValue(state)))")
        case .waitsOnAnotherCall(let waiting):
            throw APIError.conflict("task \(key.taskID) now waits on tool call \(waiting), not \(body.tool_call_id ?? "")")
        }
    }

    @Sendable func systemInfo(_ request: Request, context: TenantRequestContext) async throws -> Response {
        // A user key sees its own user; an admin key every tenant; others their tenant.
        let summary = try await sessions.summary(tenantID: context.isAdmin ? nil : context.tenantID, userID: context.userScope)
        return JSONBody.response(["sessions_count": .number(Double(summary.sessions)), "active_users": .array(summary.users.map(JSONValue.string))])
    }

    /// Who the request acts as: what the console shows and narrows its pages to.
    @Sendable func whoami(_ request: Request, context: TenantRequestContext) async throws -> Response {
        JSONBody.response([
            "tenant_id": .string(context.tenantID), "user_id": context.userScope.map(JSONValue.string) ?? .null,
            "key_id": context.keyID.map(JSONValue.string) ?? .null, "operator": .bool(context.isAdmin), "open_mode": .bool(context.keyID == nil),
        ])
    }

    @Sendable func activeSession(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let user = try userID(context)
        // An empty id, not an error: the original client starts a new session when it is empty.
        let active = try await sessions.activeSessionID(tenantID: context.tenantID, userID: user) ?? ""
        return JSONBody.response(["active_session_id": .string(active)])
    }

    @Sendable func sessionIDs(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let user = try userID(context)
        let ids = try await sessions.sessionIDs(tenantID: context.tenantID, userID: user)
        return JSONBody.response(["session_ids": .array(ids.map(JSONValue.string))])
    }

    @Sendable func taskIDs(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let user = try userID(context)
        let session = try Validate.pathID(context, "session_id")
        let ids = try await tasks.taskIDs(tenantID: context.tenantID, userID: user, sessionID: session)
        return JSONBody.response(["task_ids": .array(ids.map(JSONValue.string))])
    }

    @Sendable func status(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let key = try context.pathTaskKey()
        let wait = try Self.statusWait(request)
        let lookup =
            wait > 0
            ? try await watch.read(key, waitingUpTo: .seconds(wait), pending: \.isPending) { try await tasks.snapshot(key) }
            : try await tasks.snapshot(key)
        var status: [String: JSONValue] = [
            "user_id": .string(key.userID), "session_id": .string(key.sessionID), "task_id": .string(key.taskID),
            "status": "not_found", "message": nil, "last_query": nil, "last_updated": nil, "last_response": nil,
        ]
        switch lookup {
        case .notFound:
            status["message"] = .string("task \(key.userID):\(key.sessionID):\(key.taskID) not found")
        case .idleSession:
            status["status"] = "idle"
        case .task(let task):
            let value = Self.statusValue(task.state)
            status["status"] = .string(value)
            status["message"] = task.message.map(JSONValue.string) ?? .null
            status["last_query"] = .string(task.query)
            status["last_updated"] = .number(task.updatedAt)
            // Extensions: which agent, and which version of it, the task runs (0: the environment's).
            status["agent_id"] = .string(task.agentID)
            status["agent_version"] = .number(Double(task.agentVersion))
            if [.interrupted, .completed, .error, .cancelled].contains(task.state) {
                status["last_response"] = [
                    "session_id": .string(key.sessionID), "task_id": .string(key.taskID), "status": .string(value),
                    "timestamp": .number(task.updatedAt),
                    "message": task.message.map(JSONValue.string) ?? .null,
                    "result": task.state == .completed ? (task.result ?? .null) : .null,
                    "interrupt_data": task.state == .interrupted ? (task.interruptData ?? .null) : .null,
                ]
            }
        }
        return JSONBody.response(.object(status))
    }

    /// `?wait=S`: an extension for clients that would rather not poll. A task that is still
    /// queued or running is answered when it pauses or ends, or after S seconds, whichever is first.
    static func statusWait(_ request: Request) throws -> Double {
        guard let text = request.uri.queryParameters.get("wait") else { return 0 }
        guard let seconds = Double(text), seconds.isFinite, (0...maxStatusWait).contains(seconds) else {
            throw APIError.unprocessable("wait must be a number of seconds from 0 to \(Int(maxStatusWait))")
        }
        return seconds
    }

    @Sendable func writeMemory(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(LongMemRequest.self, from: request, context: context)
        let user = try Validate.id(body.user_id, field: "user_id", creating: true)
        try context.authorize(user: user)
        let text = try Validate.text(body.memory_info, field: "memory_info")
        guard text.utf8.count <= APILimits.maxMemoryBytes else {
            throw APIError(.contentTooLarge, "memory_info is longer than \(APILimits.maxMemoryBytes) bytes")
        }
        let replaces = try body.replaces.map { raw -> UUID in
            guard let id = UUID(uuidString: raw) else { throw APIError.unprocessable("replaces must be a memory_id (a UUID)") }
            return id
        }
        let written = try await memories.write(tenantID: context.tenantID, userID: user, text: text, replaces: replaces)
        var reply: [String: JSONValue] = ["status": "success", "memory_id": .string(written.id.uuidString.lowercased()), "message": "记忆存储成功"]
        // An extension: the memory this one replaced, named by `replaces` or recognised as restated.
        if let replaced = written.replaced { reply["replaced"] = .string(replaced.uuidString.lowercased()) }
        return JSONBody.response(.object(reply))
    }

    @Sendable func deleteSession(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let user = try userID(context)
        let session = try Validate.pathID(context, "session_id")
        guard try await sessions.delete(tenantID: context.tenantID, userID: user, sessionID: session) else {
            throw APIError.notFound("session \(user):\(session) not found")
        }
        return JSONBody.response(["status": "success", "message": .string("用户 \(user):\(session) 的会话已删除")])
    }

    @Sendable func deleteTask(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let key = try context.pathTaskKey()
        guard try await tasks.delete(key) else {
            throw APIError.notFound("task \(key.userID):\(key.sessionID):\(key.taskID) not found")
        }
        return JSONBody.response(["status": "success", "message": .string("用户 \(key.userID):\(key.sessionID):\(key.taskID) 的任务已删除")])
    }

    // MARK: Helpers

    /// The path's user, checked against the key's scope.
    private func userID(_ context: TenantRequestContext) throws -> String {
        let user = try Validate.pathID(context, "user_id")
        try context.authorize(user: user)
        return user
    }

    private func ids(_ key: TaskKey) -> Response {
        JSONBody.response(["user_id": .string(key.userID), "session_id": .string(key.sessionID), "task_id": .string(key.taskID)])
    }

    /// The contract's status values: a queued task is "running" (submitted, not finished).
    static func statusValue(_ state: TaskState) -> String {
        switch state {
        case .queued, .running: return "running"
        case .interrupted: return "interrupted"
        case .completed: return "completed"
        case .error: return "error"
        case .cancelled: return "cancelled"
        }
    }
}
