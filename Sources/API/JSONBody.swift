import AgentKit
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

public enum APILimits {
    /// Largest request body accepted (413 beyond).
    public static let maxBodyBytes = 1 << 20
    /// Longest memory text, in UTF-8 bytes.
    public static let maxMemoryBytes = 4096
}

/// Request bodies in and JSON responses out.
enum JSONBody {
    static func response(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: value.serialized)))
    }

    /// Reads and decodes a JSON body: 415 for another content type, 413 when too large,
    /// 400 when it is not JSON, 422 when fields are missing or of the wrong type.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        if let contentType = request.headers[.contentType] {
            let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            guard mediaType == "application/json" || mediaType.hasSuffix("+json") else {
                throw APIError(.unsupportedMediaType, "send the body as JSON with Content-Type: application/json")
            }
        }
        let buffer = try await request.body.collect(upTo: APILimits.maxBodyBytes)
        guard buffer.readableBytes > 0 else { throw APIError.unprocessable("the request body is empty; a JSON object is required") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: buffer))
        } catch let error as DecodingError {
            throw describe(error)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.badRequest("the request body is not valid JSON")
        }
    }

    /// A JSON value already read (an item of a batch) as `T`, refused as a body would be.
    static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        guard case .object = value else { throw APIError.unprocessable("each item must be a JSON object") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(value.serialized))
        } catch let error as DecodingError {
            throw describe(error)
        }
    }

    private static func describe(_ error: DecodingError) -> APIError {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return .unprocessable("field required: \(path(context.codingPath + [key]))")
        case .valueNotFound(_, let context):
            return .unprocessable("field required: \(path(context.codingPath)) must not be null")
        case .typeMismatch(let type, let context):
            if context.codingPath.isEmpty { return .unprocessable("the request body must be a JSON object") }
            return .unprocessable("field \(path(context.codingPath)) must be \(describe(type))")
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return .badRequest("the request body is not valid JSON") }
            return .unprocessable("field \(path(context.codingPath)) is invalid: \(context.debugDescription)")
        @unknown default:
            return .unprocessable("the request body does not match the expected fields")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Double.Type: return "a number"
        case is Bool.Type: return "a boolean"
        default: return "of another type (\(type))"
        }
    }
}

/// Checks of client-chosen values, before anything reaches the database.
enum Validate {
    /// The id rule (`Identifier.problem`), for body fields and path segments alike.
    /// - Parameter creating: true where the id may be new (invoke, memory writes).
    static func id(_ value: String, field: String, creating: Bool = false) throws -> String {
        if let problem = Identifier.problem(with: value, field: field, creating: creating) { throw APIError.unprocessable(problem) }
        return value
    }

    /// For what belongs to the whole tenant (agents written, webhooks): a user key acts for one
    /// user only, so it is refused (403).
    static func tenantWide(_ context: TenantRequestContext, _ what: String) throws {
        if let user = context.userScope {
            throw APIError(.forbidden, "this API key acts for user \(user) only; \(what) with a tenant or operator key")
        }
    }

    /// Path segments arrive percent-encoded.
    static func pathID(_ context: some RequestContext, _ name: String, creating: Bool = false) throws -> String {
        guard let raw = context.parameters.get(name) else { throw APIError.notFound("missing \(name) in the path") }
        guard let decoded = raw.removingPercentEncoding else { throw APIError.badRequest("\(name) is not valid percent-encoding") }
        return try id(decoded, field: name, creating: creating)
    }

    /// `?limit=`: a page size from 1 to `max`, `default` when absent.
    static func limit(_ request: Request, default value: Int, max: Int) throws -> Int {
        guard let raw = request.uri.queryParameters.get("limit") else { return value }
        guard let limit = Int(raw), (1...max).contains(limit) else { throw APIError.unprocessable("limit must be a whole number from 1 to \(max)") }
        return limit
    }

    static func text(_ value: String, field: String, allowEmpty: Bool = false) throws -> String {
        if !allowEmpty, value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw APIError.unprocessable("\(field) must not be empty")
        }
        guard !value.unicodeScalars.contains("\u{0}") else {
            throw APIError.unprocessable("\(field) must not contain NUL characters")
        }
        return value
    }
}

extension JSONValue {
    /// True when a key or a string anywhere inside holds U+0000.
    var containsNUL: Bool {
        switch self {
        case .string(let text): text.unicodeScalars.contains("\u{0}")
        case .array(let items): items.contains { $0.containsNUL }
        case .object(let members): members.contains { $0.key.unicodeScalars.contains("\u{0}") || $0.value.containsNUL }
        default: false
        }
    }
}

/// Opaque page cursors: the last id of a page, base64url.
enum Cursor {
    static func encode(_ id: String) -> String {
        Data(id.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ cursor: String) -> String? {
        guard cursor.utf8.count <= 1024 else { return nil }
        var base64 = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8) else { return nil }
        return text
    }
}
