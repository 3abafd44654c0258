import Foundation

/// The servers a URL or conninfo names, read by libpq's own parser (the one `connect` uses), so
/// that a bad `DATABASE_URL` is refused at start with a reason and the log says where agentd
/// connects, without the password.
public struct PostgresTargets: Sendable, Equatable, CustomStringConvertible {
    /// `host:port` for each server, in the order libpq tries them.
    public var servers: [String]
    public var database: String?
    public var user: String?
    /// libpq's `target_session_attrs`: agentd's default, `read-write`, unless the conninfo says.
    public var sessionAttributes: String

    /// The values agentd can work with: it writes on every connection.
    static let writable: Set<String> = ["read-write", "primary", "any"]

    public static func parse(_ conninfo: String) throws -> PostgresTargets {
        let options = try PostgresConnection.parsedOptions(conninfo)
        // Empty host: libpq's default (the local socket); empty port: 5432. One port serves every
        // host; otherwise one per host, as libpq requires.
        let hosts = (options["host"] ?? options["hostaddr"] ?? "").split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let ports = (options["port"] ?? "").split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard ports.count == 1 || ports.count == hosts.count else {
            throw PostgresError(code: .clientError, message: "invalid connection string: \(hosts.count) hosts but \(ports.count) ports")
        }
        var servers: [String] = []
        for (index, host) in hosts.enumerated() {
            let port = ports.count == 1 ? ports[0] : ports[index]
            guard port.isEmpty || (UInt16(port).map { $0 > 0 } ?? false) else {
                throw PostgresError(code: .clientError, message: "invalid connection string: port \(port) is not a TCP port")
            }
            servers.append(Self.server(host.isEmpty ? "local socket" : host, port.isEmpty ? "5432" : port))
        }
        let attributes = options["target_session_attrs"].flatMap { $0.isEmpty ? nil : $0 }
            ?? PostgresConnection.defaultOptions.first { $0.keyword == "target_session_attrs" }?.value ?? "read-write"
        // `any` takes the first host that answers; a standby there is refused (`connect`) and the
        // hosts after it are never tried.
        guard writable.contains(attributes), attributes != "any" || servers.count == 1 else {
            throw PostgresError(
                code: .clientError,
                message: "target_session_attrs=\(attributes) could connect to a standby; agentd writes, so it takes read-write (its default) or primary"
                    + (servers.count == 1 ? ", or any" : " with several hosts"))
        }
        return PostgresTargets(
            servers: servers, database: options["dbname"].flatMap { $0.isEmpty ? nil : $0 },
            user: options["user"].flatMap { $0.isEmpty ? nil : $0 }, sessionAttributes: attributes)
    }

    /// `host:port`, an IPv6 address in brackets (`[::1]:5432`).
    static func server(_ host: String, _ port: String) -> String {
        host.contains(":") && !host.hasPrefix("/") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public var description: String {
        "\(servers.joined(separator: ", "))/\(database ?? "(default database)") (\(sessionAttributes))"
    }
}
