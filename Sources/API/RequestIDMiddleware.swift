import Foundation
import HTTPTypes
import Hummingbird

/// Every response carries `x-request-id`: the request's own when it is usable (1 to 128 of
/// `[A-Za-z0-9._:-]`), else one made here. The id is in the request's log lines (`request_id`)
/// and, for an invoke or a resume, in the task's row, so the worker that runs it logs it too.
public struct RequestIDMiddleware: RouterMiddleware {
    public typealias Context = AgentRequestContext

    public init() {}

    /// nil only if HTTPTypes refused a valid token.
    public static let header = HTTPField.Name("x-request-id")

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let id = Self.header.flatMap { request.headers[$0] }.flatMap { Self.usable($0) ? $0 : nil } ?? Self.make()
        context.requestID = id
        context.logger[metadataKey: "request_id"] = "\(id)"
        var response = try await next(request, context)
        if let header = Self.header { response.headers[header] = id }
        return response
    }

    static func usable(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "-")
            }
    }

    /// 16 random bytes as hex.
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String { count >= length ? self : String(repeating: "0", count: length - count) + self }
}
