import AgentKit
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Store

/// An error with the status and `{"detail": …}` body a client sees (FastAPI's convention,
/// which the original's clients print).
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var detail: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, _ detail: String, headers: HTTPFields = [:]) {
        self.status = status
        self.detail = detail
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONBody.response(["detail": .string(detail)], status: status, headers: headers)
    }

    static func badRequest(_ detail: String) -> APIError { APIError(.badRequest, detail) }
    static func unprocessable(_ detail: String) -> APIError { APIError(.unprocessableContent, detail) }
    static func notFound(_ detail: String) -> APIError { APIError(.notFound, detail) }
    static func conflict(_ detail: String) -> APIError { APIError(.conflict, detail) }
}

/// Turns every error into a `{"detail": …}` response with the right status. This is the only
/// place where errors become status codes; server and SQL text never reach the client.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch {
            let answer = ErrorAnswer(error, logger: logger, path: request.uri.path)
            return JSONBody.response(["detail": .string(answer.detail)], status: answer.status, headers: answer.headers)
        }
    }
}

/// The status, detail and headers an error is answered with: one mapping for whole requests
/// (`ErrorMiddleware`) and for the items of a batch.
struct ErrorAnswer {
    var status: HTTPResponse.Status
    var detail: String
    var headers: HTTPFields = [:]

    init(_ error: any Error, logger: Logger?, path: String) {
        switch error {
        case let error as APIError:
            (status, detail, headers) = (error.status, error.detail, error.headers)
        case let error as HTTPError:
            (status, detail, headers) = (error.status, error.body ?? error.status.reasonPhrase, error.headers)
        case is NIOTooManyBytesError:
            (status, detail) = (.contentTooLarge, "request body is larger than \(APILimits.maxBodyBytes) bytes")
        case let error as HTTPParserError:
            // The client's fault (a body shorter than its Content-Length, then a close); any
            // answer may not reach it, and it is no server error.
            logger?.debug("malformed or truncated request", metadata: ["error": "\(error)", "path": "\(path)"])
            (status, detail) = (.badRequest, "malformed or truncated request: \(error)")
        case let error as StoreConflict:
            (status, detail) = (.conflict, error.message)
        case let refusal as MemoryStore.UpdateRefusal:
            switch refusal {
            case .notFound(let id): (status, detail) = (.notFound, "memory \(id.uuidString.lowercased()) not found")
            case .superseded(let id, let newer):
                (status, detail) = (.conflict, "memory \(id.uuidString.lowercased()) was replaced by \(newer.uuidString.lowercased())")
            case .duplicate(let other): (status, detail) = (.conflict, "memory \(other.uuidString.lowercased()) already holds that text")
            }
        case let error as StoreError where error.kind == .unavailable || error.kind == .timedOut:
            logger?.warning("database unavailable", metadata: ["error": "\(String(reflecting: error))", "path": "\(path)"])
            (status, detail, headers) = (.serviceUnavailable, "the database is unavailable; try again shortly", [.retryAfter: "1"])
        case let error as StoreError where error.kind == .conflict:
            (status, detail) = (.conflict, "a concurrent request changed the same data; try again")
        default:
            logger?.error("request failed", metadata: ["error": "\(String(reflecting: error))", "path": "\(path)"])
            (status, detail) = (.internalServerError, "internal server error")
        }
    }
}
