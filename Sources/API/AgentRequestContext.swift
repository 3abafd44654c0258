import AgentKit
import Hummingbird
import Logging

/// Who a request acts as: set by `AuthMiddleware` from the API key, or as open mode's caller.
public struct Caller: Sendable {
    /// The tenant whose rows this request may see.
    public var tenantID: String
    /// Set for a user-scoped key: the only user this request may name.
    public var userScope: String?
    /// The key the request came with (nil in open mode).
    public var keyID: String?
    /// An operator key: `/system/info` covers every tenant.
    public var isAdmin = false
    /// The key's limit on queued and running tasks, if any.
    public var maxTasksInFlight: Int?

    /// Open mode (no key exists, loopback only): the original's single tenant.
    static let openMode = Caller(tenantID: "default")
}

/// The router's context: what every request starts with. `caller` is set by `AuthMiddleware`;
/// the routes that need none (health, the API description) come before it.
public struct AgentRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var caller: Caller?
    /// `x-request-id`: the client's when it sent a usable one, else made here (`RequestIDMiddleware`).
    public var requestID = ""

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { APILimits.maxBodyBytes }
}

/// The context of every route that touches data: it exists only with a caller, so no handler
/// can run for an unknown tenant or fall back to a default one by mistake.
public struct TenantRequestContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let caller: Caller
    public let requestID: String

    public init(context: AgentRequestContext) throws {
        // Unreachable behind AuthMiddleware, which sets a caller or refuses the request.
        guard let caller = context.caller else { throw AuthMiddleware.unauthorized("an API key is required: send Authorization: Bearer <key>") }
        coreContext = context.coreContext
        self.caller = caller
        requestID = context.requestID
    }

    public var maxUploadSize: Int { APILimits.maxBodyBytes }

    var tenantID: String { caller.tenantID }
    var userScope: String? { caller.userScope }
    var keyID: String? { caller.keyID }
    var isAdmin: Bool { caller.isAdmin }
    var maxTasksInFlight: Int? { caller.maxTasksInFlight }

    /// The task a request names, its user checked against the key's scope.
    func taskKey(_ user: String, _ session: String, _ task: String, creating: Bool = false) throws -> TaskKey {
        let user = try Validate.id(user, field: "user_id", creating: creating)
        try authorize(user: user)
        return TaskKey(
            tenantID: tenantID, userID: user, sessionID: try Validate.id(session, field: "session_id", creating: creating),
            taskID: try Validate.id(task, field: "task_id", creating: creating))
    }

    /// The task of a `/{user_id}/{session_id}/{task_id}` path.
    func pathTaskKey() throws -> TaskKey {
        try taskKey(Validate.pathID(self, "user_id"), Validate.pathID(self, "session_id"), Validate.pathID(self, "task_id"))
    }

    /// Every user id a request names, in its path or body, passes through here.
    func authorize(user: String) throws {
        if let userScope, !Identifier.same(userScope, user) {
            throw APIError(.forbidden, "this API key acts for user \(userScope) only")
        }
    }
}
