import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The web console at `/console/`: static files (the `console/` folder beside `sql/`, read once
/// at start, so no Node toolchain and no file access per request), and `GET /console/mode`, which
/// tells the page whether it must ask for a key. Public, like `/openapi.yaml`: the files hold no
/// data, and every call the page makes goes through the API with its key.
public struct ConsoleController: Sendable {
    public struct File: Sendable {
        var body: ByteBuffer
        var contentType: String
        var etag: String
    }

    /// By name (`index.html`, `console.js`); empty when the folder was not found (404s).
    let files: [String: File]
    /// Whether a request without a key is served now (open mode, and no key exists yet).
    let isOpen: @Sendable () async throws -> Bool

    public init(files: [String: File], isOpen: @escaping @Sendable () async throws -> Bool) {
        self.files = files
        self.isOpen = isOpen
    }

    /// The console's own rules for the browser: nothing but its own scripts, styles and API
    /// calls, never in a frame, so a tool argument or a model's Markdown that slipped past the
    /// page's escaping still could not run script or send data elsewhere. (The page itself asks
    /// for no referrer.)
    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy:
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        .xContentTypeOptions: "nosniff",
        .cacheControl: "no-cache",
    ]

    static let contentTypes = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml", "json": "application/json", "png": "image/png", "ico": "image/x-icon", "txt": "text/plain; charset=utf-8",
    ]

    /// The regular files directly in `directory` with a known type; nil when it cannot be read.
    public static func load(from directory: URL) -> [String: File]? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return nil }
        var files: [String: File] = [:]
        for name in names where !name.hasPrefix(".") {
            guard let type = contentTypes[(name as NSString).pathExtension.lowercased()],
                let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path)
            else { continue }
            let bytes = [UInt8](data)
            files[name] = File(body: ByteBuffer(bytes: bytes), contentType: type, etag: "\"\(fingerprint(bytes))\"")
        }
        return files
    }

    /// FNV-1a over the bytes: an ETag that changes when the file does.
    static func fingerprint(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16) + "-" + String(bytes.count, radix: 16)
    }

    public var endpoints: RouteCollection<AgentRequestContext> {
        let routes = RouteCollection(context: AgentRequestContext.self)
        // The router treats `/console` and `/console/` as one route.
        routes.get("/console", use: index)
        routes.get("/console/mode", use: mode)
        routes.get("/console/:file", use: file)
        return routes
    }

    /// `/console/` is the page; `/console` redirects there, so that the page's relative URLs
    /// resolve against `/console/`, not `/`.
    @Sendable func index(_ request: Request, context: AgentRequestContext) async throws -> Response {
        guard request.uri.path.hasSuffix("/") else { return Response(status: .permanentRedirect, headers: [.location: "/console/"]) }
        return try serve("index.html", request)
    }

    @Sendable func file(_ request: Request, context: AgentRequestContext) async throws -> Response {
        try serve(context.parameters.get("file") ?? "", request)
    }

    /// `{"open_mode": true}` when requests without a key are served.
    @Sendable func mode(_ request: Request, context: AgentRequestContext) async throws -> Response {
        let open: Bool
        do {
            open = try await isOpen()
        } catch {
            throw APIError(.serviceUnavailable, "the database is unavailable", headers: [.retryAfter: "1"])
        }
        return JSONBody.response(["open_mode": .bool(open)], headers: [.cacheControl: "no-store"])
    }

    func serve(_ name: String, _ request: Request) throws -> Response {
        guard let file = files[name] else {
            if files.isEmpty { throw APIError.notFound("the console's files (console/ beside the sql/ folder) were not found") }
            throw APIError.notFound("no console file \(name)")
        }
        var headers = Self.securityHeaders
        headers[.eTag] = file.etag
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == file.etag }) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = file.contentType
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: file.body))
    }
}
