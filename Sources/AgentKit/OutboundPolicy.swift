import Foundation

/// The shape every outbound URL a tenant configures must have (MCP servers, webhooks).
public enum OutboundURL {
    /// Why `text` cannot be called, or nil.
    public static func problem(with text: String) -> String? {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            return "must be an absolute http or https URL"
        }
        guard scheme == "http" || scheme == "https" else { return "must be an http or https URL (not \(scheme))" }
        guard let host = components.host, !host.isEmpty else { return "must name a host" }
        // One spelling of the host for the check, the resolution and the connection: ASCII (an
        // internationalised name in its xn-- form), read the same by every URL parser.
        guard host.unicodeScalars.allSatisfy(\.isASCII), let parsed = URL(string: text)?.host,
            unbracketed(parsed).lowercased() == unbracketed(host).lowercased()
        else { return "must name its host in ASCII (an internationalised name as xn--…)" }
        if components.user != nil || components.password != nil {
            return "must not carry credentials: send them in headers, which are stored encrypted and never shown"
        }
        if components.fragment != nil { return "must not have a #fragment" }
        if let port = components.port, !(1...65535).contains(port) { return "has an invalid port" }
        // Written as it is sent: a NUL cannot be stored, and a space or a raw non-ASCII letter is
        // read differently by different parsers (percent-encoding is one spelling for all).
        if let odd = text.unicodeScalars.first(where: { !$0.isASCII || $0.properties.generalCategory == .control || $0 == " " }) {
            return "must be written in printable ASCII, percent-encoded (found U+\(String(odd.value, radix: 16, uppercase: true)))"
        }
        return nil
    }

    /// The host of a URL that passed `problem`, lowercased, without IPv6 brackets.
    public static func host(of text: String) -> String? {
        URLComponents(string: text)?.host.map { unbracketed($0).lowercased() }
    }

    public static func unbracketed(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }

    /// Scheme, host and port (the scheme's default when none is written): where credentials may go.
    public struct Origin: Equatable {
        public var scheme: String
        public var host: String
        public var port: Int
    }

    public static func origin(of text: String) -> Origin? {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(), let host = host(of: text) else {
            return nil
        }
        return Origin(scheme: scheme, host: host, port: components.port ?? (scheme == "https" ? 443 : 80))
    }
}

/// Which hosts the service may call for a tenant (`OUTBOUND_ALLOWED_HOSTS`): a guard against
/// server-side request forgery, so that naming the database, the cloud's metadata service or
/// any internal address as an MCP server reaches none of them.
///
/// Entries are host names or IP addresses, or `*` for any host. Loopback, private, link-local
/// and other non-public addresses are refused, whether written in the URL or found by resolving
/// its name (on every redirect too), unless the URL's host is itself listed: `*` does not open them.
public struct OutboundPolicy: Sendable, Equatable {
    /// Lowercased names and addresses, as listed.
    public let listedHosts: Set<String>
    public let anyHost: Bool

    public init(allowedHosts: [String]) {
        var listed = Set<String>()
        var any = false
        for entry in allowedHosts.map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) where !entry.isEmpty {
            if entry == "*" {
                any = true
            } else {
                listed.insert(entry.hasPrefix("[") && entry.hasSuffix("]") ? String(entry.dropFirst().dropLast()) : entry)
            }
        }
        listedHosts = listed
        anyHost = any
    }

    /// The default: any public host.
    public static let publicHosts = OutboundPolicy(allowedHosts: ["*"])

    public func isListed(_ host: String) -> Bool { listedHosts.contains(host.lowercased()) }

    /// Why `host` may not be called, judged from the name alone (configuration time), or nil.
    public func refusal(host: String) -> String? {
        let host = host.lowercased()
        if isListed(host) { return nil }
        if let address = IPAddress(host), !address.isPublic {
            return "\(host) is a \(address.kind) address, refused unless OUTBOUND_ALLOWED_HOSTS lists it"
        }
        if !anyHost { return "\(host) is not in OUTBOUND_ALLOWED_HOSTS" }
        return nil
    }

    /// Why `host`, resolved to `addresses`, may not be called (each request, each redirect), or nil.
    public func refusal(host: String, resolvedTo addresses: [IPAddress]) -> String? {
        if let refused = refusal(host: host) { return refused }
        if isListed(host) { return nil }
        if addresses.isEmpty { return "\(host) did not resolve to any address" }
        if let refused = addresses.first(where: { !$0.isPublic }) {
            return "\(host) resolves to \(refused), a \(refused.kind) address, refused unless OUTBOUND_ALLOWED_HOSTS lists \(host)"
        }
        return nil
    }
}

/// An IPv4 or IPv6 address, and whether it is a public one.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 or 16 bytes, network order.
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A literal: dotted IPv4 (exactly four decimal parts) or IPv6 text.
    public init?(_ text: String) {
        var text = text
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        var v4 = in_addr()
        var v6 = in6_addr()
        if text.contains(":") {
            guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
                inet_pton(AF_INET, text, &v4) == 1
            else { return nil }
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        }
    }

    public var description: String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The IPv4 address an IPv6 one carries (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`,
    /// 6to4 `2002:a.b.c.d::/16`, and the deprecated compatible form `::a.b.c.d`), which is judged instead.
    var embeddedIPv4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        let translated: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]
        let nat64: [UInt8] = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]
        if [mapped, translated, nat64].contains(Array(bytes[0..<12])) { return IPAddress(bytes: Array(bytes[12..<16])) }
        if bytes[0] == 0x20, bytes[1] == 0x02 { return IPAddress(bytes: Array(bytes[2..<6])) }
        if bytes[0..<12].allSatisfy({ $0 == 0 }), !(bytes[12..<15].allSatisfy { $0 == 0 }) { return IPAddress(bytes: Array(bytes[12..<16])) }
        return nil
    }

    /// What kind of non-public address this is, or "public".
    public var kind: String {
        if let v4 = embeddedIPv4 { return v4.kind }
        let b = bytes
        if b.count == 4 {
            switch (b[0], b[1]) {
            case (127, _): return "loopback"
            case (10, _), (172, 16...31), (192, 168): return "private"
            case (169, 254): return "link-local"
            case (100, 64...127): return "shared (carrier-grade NAT)"
            case (0, _): return "unspecified"
            case (192, 0) where b[2] == 0, (198, 18...19): return "reserved"
            case (224...239, _): return "multicast"
            case (240...255, _): return "reserved"
            default: return "public"
            }
        }
        if b[0..<15].allSatisfy({ $0 == 0 }) { return b[15] == 1 ? "loopback" : "unspecified" }
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x0d, b[3] == 0xb8 { return "documentation" }
        // Teredo (2001::/32) hides an IPv4 address; NAT64 local use (64:ff9b:1::/48) maps anything.
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0, b[3] == 0 { return "tunnelled (Teredo)" }
        if b[0] == 0, b[1] == 0x64, b[2] == 0xff, b[3] == 0x9b, b[4] == 0, b[5] == 1 { return "translated (NAT64 local use)" }
        if b[0] & 0xfe == 0xfc { return "private (unique local)" }
        if b[0] == 0xfe, b[1] & 0xc0 == 0x80 { return "link-local" }
        if b[0] == 0xfe, b[1] & 0xc0 == 0xc0 { return "site-local" }
        if b[0] == 0xff { return "multicast" }
        return "public"
    }

    public var isPublic: Bool { kind == "public" }
}
