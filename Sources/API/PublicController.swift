import Hummingbird
import NIOCore

/// The routes that need no key, added before `AuthMiddleware`: `/health`, which load balancers
/// probe and which says nothing about anyone's data, and the API's description, public as
/// FastAPI's `/openapi.json` is.
public struct PublicController: Sendable {
    /// Proves the database answers.
    let checkDatabase: @Sendable () async throws -> Void
    /// `openapi.yaml`, or nil when it was not found (404).
    let openAPI: ByteBuffer?

    public init(checkDatabase: @escaping @Sendable () async throws -> Void, openAPI: ByteBuffer?) {
        self.checkDatabase = checkDatabase
        self.openAPI = openAPI
    }

    public var endpoints: RouteCollection<AgentRequestContext> {
        let routes = RouteCollection(context: AgentRequestContext.self)
        routes.get("/health", use: health)
        routes.get("/openapi.yaml", use: description)
        return routes
    }

    @Sendable func health(_ request: Request, context: AgentRequestContext) async throws -> Response {
        do {
            try await checkDatabase()
        } catch {
            throw APIError(.serviceUnavailable, "the database is unavailable", headers: [.retryAfter: "1"])
        }
        return JSONBody.response(["status": "ok"])
    }

    @Sendable func description(_ request: Request, context: AgentRequestContext) async throws -> Response {
        guard let openAPI else { throw APIError.notFound("openapi.yaml was not found beside the sql/ folder") }
        return Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: openAPI))
    }
}
