import AgentKit
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// HTTP to the hosts tenants name (MCP servers; webhooks later), under the `OutboundPolicy`:
/// every request's host is resolved and judged before anything is sent, the connection goes to
/// the address that was judged (so a DNS answer that changes between the check and the connect
/// cannot point it elsewhere), and redirects are followed here, each judged the same way.
public final class OutboundHTTP: Sendable {
    /// The request was not sent: the policy refuses where it goes.
    public struct Refused: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    public let policy: OutboundPolicy
    /// For http: requests go to the judged address literally, with the name in `Host`. Made at
    /// the first request, so that a process that calls no tenant's host holds no client.
    private let shared = Mutex<HTTPClient?>(nil)
    private let closed = Atomic<Bool>(false)
    /// For https: TLS needs the name (SNI, the certificate), so each judged (name, address) pair has
    /// a client of its own whose DNS override pins the name to the address.
    private let pinned = Mutex<[String: HTTPClient]>([:])
    private let resolve: @Sendable (String) async throws -> [IPAddress]

    static let maxRedirects = 5
    static let maxPinnedClients = 64

    public init(policy: OutboundPolicy, resolve: (@Sendable (String) async throws -> [IPAddress])? = nil) {
        self.policy = policy
        self.resolve = resolve ?? Self.systemResolve
    }

    private static func configuration(dnsOverride: [String: String]) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.dnsOverride = dnsOverride
        configuration.timeout.connect = .seconds(10)
        // A refused connection is an answer: fail at once rather than retry until the deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        return configuration
    }

    /// Shuts every client down; later requests are refused. (AsyncHTTPClient requires a client to
    /// be shut down before it goes away.)
    public func shutdown() async {
        closed.store(true, ordering: .sequentiallyConsistent)
        var clients = pinned.withLock { clients in
            defer { clients.removeAll() }
            return Array(clients.values)
        }
        if let client = shared.withLock({ client in defer { client = nil }; return client }) { clients.append(client) }
        for client in clients { try? await client.shutdown() }
    }

    private func plainClient() throws -> HTTPClient {
        try shared.withLock { client in
            guard !closed.load(ordering: .sequentiallyConsistent) else { throw Refused(reason: "the service is shutting down") }
            if let client { return client }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Self.configuration(dnsOverride: [:]))
            client = made
            return made
        }
    }

    /// Sends the request, following 307 and 308 redirects (each judged again). A refused hop
    /// throws `Refused` before anything is sent to it.
    public func execute(
        url: String, method: HTTPMethod, headers: HTTPHeaders, body: ByteBuffer?, deadline: NIODeadline
    ) async throws -> HTTPClientResponse {
        var url = url
        for _ in 0...Self.maxRedirects {
            let (client, target, host) = try await route(url)
            var request = HTTPClientRequest(url: target)
            request.method = method
            request.headers = headers
            if let host { request.headers.replaceOrAdd(name: "Host", value: host) }
            if let body { request.body = .bytes(body) }
            let response = try await client.execute(request, deadline: deadline)
            guard [307, 308].contains(response.status.code), let location = response.headers.first(name: "Location") else {
                return response
            }
            // Drained before the next hop, so the connection goes back to its pool.
            _ = try? await response.body.collect(upTo: 64 << 10)
            guard let next = URL(string: location, relativeTo: URL(string: url))?.absoluteString else {
                throw Refused(reason: "redirected to an invalid location")
            }
            if let problem = OutboundURL.problem(with: next) { throw Refused(reason: "redirected to a URL that \(problem)") }
            url = next
        }
        throw Refused(reason: "more than \(Self.maxRedirects) redirects")
    }

    /// The client and URL to send to, and the Host header for a pinned http request.
    private func route(_ url: String) async throws -> (HTTPClient, String, String?) {
        guard OutboundURL.problem(with: url) == nil, let components = URLComponents(string: url), let host = OutboundURL.host(of: url) else {
            throw Refused(reason: "not a valid http(s) URL")
        }
        if let refused = policy.refusal(host: host) { throw Refused(reason: refused) }
        let addresses: [IPAddress]
        do {
            addresses = try await resolve(host)
        } catch {
            throw Refused(reason: "cannot resolve \(host): \(error)")
        }
        if let refused = policy.refusal(host: host, resolvedTo: addresses) { throw Refused(reason: refused) }
        guard let address = addresses.first(where: { $0.bytes.count == 4 }) ?? addresses.first else {
            throw Refused(reason: "\(host) did not resolve to any address")
        }
        let literal = address.bytes.count == 16 ? "[\(address)]" : "\(address)"
        if components.scheme?.lowercased() == "https" {
            return (try pinnedClient(host: host, address: "\(address)"), url, nil)
        }
        let port = components.port.map { ":\($0)" } ?? ""
        let hostHeader = (host.contains(":") ? "[\(host)]" : host) + port
        var target = "http://\(literal)\(port)\(components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath)"
        if let query = components.percentEncodedQuery { target += "?" + query }
        return (try plainClient(), target, hostHeader)
    }

    private func pinnedClient(host: String, address: String) throws -> HTTPClient {
        let key = host + " " + address
        let (client, evicted) = try pinned.withLock { clients -> (HTTPClient, [HTTPClient]) in
            guard !closed.load(ordering: .sequentiallyConsistent) else { throw Refused(reason: "the service is shutting down") }
            if let client = clients[key] { return (client, []) }
            var evicted: [HTTPClient] = []
            while clients.count >= Self.maxPinnedClients, let victim = clients.keys.first {
                if let old = clients.removeValue(forKey: victim) { evicted.append(old) }
            }
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Self.configuration(dnsOverride: [host: address]))
            clients[key] = client
            return (client, evicted)
        }
        for old in evicted { old.shutdown { _ in } }
        return client
    }

    /// getaddrinfo on NIO's blocking pool: it may wait on a DNS server.
    @Sendable static func systemResolve(_ host: String) async throws -> [IPAddress] {
        if let literal = IPAddress(host) { return [literal] }
        return try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, nil, &hints, &list)
            guard status == 0 else { throw Refused(reason: String(cString: gai_strerror(status))) }
            defer { freeaddrinfo(list) }
            var addresses: [IPAddress] = []
            var entry = list
            while let current = entry {
                if let address = current.pointee.ai_addr {
                    switch current.pointee.ai_family {
                    case AF_INET:
                        address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                            var raw = pointer.pointee.sin_addr
                            if let ip = IPAddress(bytes: withUnsafeBytes(of: &raw) { Array($0) }) { addresses.append(ip) }
                        }
                    case AF_INET6:
                        address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                            var raw = pointer.pointee.sin6_addr
                            if let ip = IPAddress(bytes: withUnsafeBytes(of: &raw) { Array($0) }) { addresses.append(ip) }
                        }
                    default: break
                    }
                }
                entry = current.pointee.ai_next
            }
            var seen = Set<IPAddress>()
            return addresses.filter { seen.insert($0).inserted }
        }
    }
}
