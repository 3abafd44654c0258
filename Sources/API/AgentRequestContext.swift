import AgentKit
import Hummingbird
import Logging

/// The request context of every route: who is asking and what they may touch.
public struct AgentRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The tenant whose rows this request may see; set by `AuthMiddleware` from the API key,
    /// `default` in open mode.
    public var tenantID: String = "default"
    /// Set for a user-scoped key: the only user this request may name.
    public var userScope: String?
    /// The key the request came with (nil in open mode).
    public var keyID: String?
    /// An operator key: `/system/info` covers every tenant.
    public var isAdmin = false
    /// The key's limit on queued and running tasks, if any.
    public var maxTasksInFlight: Int?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { APILimits.maxBodyBytes }

    /// Every user id a request names, in its path or body, passes through here.
    func authorize(user: String) throws {
        if let userScope, !Identifier.same(userScope, user) {
            throw APIError(.forbidden, "this API key acts for user \(userScope) only")
        }
    }
}
