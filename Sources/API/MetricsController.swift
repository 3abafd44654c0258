import Hummingbird
import NIOCore
import Telemetry

/// Counts and times every request by its route template (`agentd_http_requests_total`,
/// `agentd_http_request_seconds`). Added first, so it sees the status that `ErrorMiddleware`
/// made of an error; the time runs until the handler answered, and for a streamed body until it
/// is written (an event stream counts its whole length; a `?wait=` read its wait).
public struct HTTPMetricsMiddleware: RouterMiddleware {
    public typealias Context = AgentRequestContext
    let metrics: ServiceMetrics

    public init(metrics: ServiceMetrics) { self.metrics = metrics }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let method = request.method.rawValue
        do {
            var response = try await next(request, context)
            let status = Int(response.status.code)
            let metrics = self.metrics
            // The router's template, set when a route matched ("NotFound" when none did).
            let route = context.endpointPath ?? "NotFound"
            let body = response.body
            // A body of known length is written at once: counted now. Wrapping every body in a
            // closure cost the server its single write of head and body (4 % of throughput).
            guard body.contentLength == nil else {
                metrics.httpRequest(route: route, method: method, status: status, nanoseconds: (ContinuousClock.now - start).nanoseconds)
                return response
            }
            response.body = ResponseBody { writer in
                defer { metrics.httpRequest(route: route, method: method, status: status, nanoseconds: (ContinuousClock.now - start).nanoseconds) }
                try await body.write(writer)
            }
            return response
        } catch {
            let status = (error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500
            metrics.httpRequest(
                route: context.endpointPath ?? "NotFound", method: method, status: status, nanoseconds: (ContinuousClock.now - start).nanoseconds)
            throw error
        }
    }
}

/// `GET /metrics`, Prometheus's text format: in open mode (loopback only) to anyone who can
/// reach the port, else to operator keys only (the figures span every tenant).
public struct MetricsController: Sendable {
    /// The exposition text, with the gauges read at scrape time already set.
    let scrape: @Sendable () async -> [UInt8]

    public init(scrape: @escaping @Sendable () async -> [UInt8]) { self.scrape = scrape }

    public var endpoints: RouteCollection<AgentRequestContext> {
        let routes = RouteCollection(context: AgentRequestContext.self)
        routes.get("/metrics", use: metrics)
        return routes
    }

    @Sendable func metrics(_ request: Request, context: AgentRequestContext) async throws -> Response {
        guard let caller = context.caller, caller.keyID == nil || (caller.isAdmin && caller.userScope == nil) else {
            throw APIError(.forbidden, "metrics span every tenant: read them with an operator key")
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: await scrape())))
    }
}
