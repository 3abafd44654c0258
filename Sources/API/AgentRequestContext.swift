import Hummingbird
import Logging

/// The request context of every route: who is asking (the tenant) and the body limit.
public struct AgentRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The tenant whose rows this request may see. Until API keys exist every request acts for
    /// the default tenant, as the original (which has no tenants) did.
    public var tenantID: String = "default"

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { APILimits.maxBodyBytes }
}
