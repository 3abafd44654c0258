import AgentKit
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// HTTP to the hosts tenants name (MCP servers, webhooks), under the `OutboundPolicy`:
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
    /// a client of its own whose DNS override pins the name to the address; the least recently
    /// used beyond `maxPinnedClients` are retired, and shut down once nothing can still be using them.
    private let pinned = Mutex<(clients: [String: (client: HTTPClient, used: ContinuousClock.Instant)], retired: [(HTTPClient, ContinuousClock.Instant)])>(([:], []))

    static let maxRedirects = 5
    static let maxPinnedClients = 64
    /// Longer than any request can take (a tool call is at most 600 s; the GET stream reconnects).
    static let retiredClientGrace: Duration = .seconds(900)

    public init(policy: OutboundPolicy) {
        self.policy = policy
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
        var clients = pinned.withLock { state in
            defer { state = ([:], []) }
            return state.clients.values.map(\.client) + state.retired.map(\.0)
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
    /// - Parameter credentials: names of headers that are the tenant's secrets: not sent on to
    ///   another origin; and no redirect goes from https to http.
    public func execute(
        url: String, method: HTTPMethod, headers: HTTPHeaders, body: ByteBuffer?, deadline: NIODeadline, credentials: [String] = []
    ) async throws -> HTTPClientResponse {
        var url = url
        var headers = headers
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
            let (from, to) = (OutboundURL.origin(of: url), OutboundURL.origin(of: next))
            if from?.scheme == "https", to?.scheme != "https" { throw Refused(reason: "redirected from https to http") }
            if from != to { for name in credentials { headers.remove(name: name) } }
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
            addresses = try await Self.resolve(host)
        } catch {
            throw Refused(reason: "cannot resolve \(host): \(error)")
        }
        if let refused = policy.refusal(host: host, resolvedTo: addresses) { throw Refused(reason: refused) }
        guard let address = addresses.first(where: { $0.bytes.count == 4 }) ?? addresses.first else {
            throw Refused(reason: "\(host) did not resolve to any address")
        }
        let literal = address.bytes.count == 16 ? "[\(address)]" : "\(address)"
        let port = components.port.map { ":\($0)" } ?? ""
        var rest = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { rest += "?" + query }
        let named = host.contains(":") ? "[\(host)]" : host
        if components.scheme?.lowercased() == "https" {
            // Rebuilt with the host as judged, so that the client's DNS override, keyed by it, applies.
            let target = "https://\(named)\(port)\(rest)"
            guard URL(string: target)?.host.map({ OutboundURL.unbracketed($0) }) == host else { throw Refused(reason: "\(host) cannot be pinned") }
            return (try pinnedClient(host: host, address: "\(address)"), target, nil)
        }
        return (try plainClient(), "http://\(literal)\(port)\(rest)", named + port)
    }

    private func pinnedClient(host: String, address: String) throws -> HTTPClient {
        let key = host + " " + address
        let now = ContinuousClock.now
        let (client, expired) = try pinned.withLock { state -> (HTTPClient, [HTTPClient]) in
            guard !closed.load(ordering: .sequentiallyConsistent) else { throw Refused(reason: "the service is shutting down") }
            if let entry = state.clients[key] {
                state.clients[key] = (entry.client, now)
                return (entry.client, [])
            }
            while state.clients.count >= Self.maxPinnedClients,
                let oldest = state.clients.min(by: { $0.value.used < $1.value.used })?.key,
                let entry = state.clients.removeValue(forKey: oldest)
            {
                state.retired.append((entry.client, now))
            }
            let expired = state.retired.filter { now - $0.1 > Self.retiredClientGrace }.map(\.0)
            state.retired.removeAll { now - $0.1 > Self.retiredClientGrace }
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Self.configuration(dnsOverride: [host: address]))
            state.clients[key] = (client, now)
            return (client, expired)
        }
        for old in expired { old.shutdown { _ in } }
        return client
    }

    /// getaddrinfo on NIO's blocking pool: it may wait on a DNS server.
    static func resolve(_ host: String) async throws -> [IPAddress] {
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
