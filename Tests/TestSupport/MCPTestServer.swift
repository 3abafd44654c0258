import AgentKit
import AgentdProcess
import AsyncHTTPClient
import Foundation

/// A Python script of `Tests/Fixtures` as a child process on a free 127.0.0.1 port, which it
/// prints as `PORT <n>`; run with `MCP_PYTHON`, the virtual environment `make test` makes.
/// Killed when released, and by itself when the test run is gone (`--parent-pid`).
public class PythonFixture: @unchecked Sendable {
    // Touched by the owning test only.
    private let process = Process()
    private let output: URL
    public let port: Int

    public struct LaunchError: Error, CustomStringConvertible {
        public var description: String
    }

    public func url(path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    /// - Parameter ready: printed once the server serves (after `PORT`), when that comes later.
    public init(script: String, arguments: [String], ready: String? = nil) async throws {
        guard let python = ProcessInfo.processInfo.environment["MCP_PYTHON"], !python.isEmpty else {
            throw LaunchError(description: "MCP_PYTHON is not set: run the tests with `make test`, which installs the MCP SDK")
        }
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(script)")
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [path.path, "--parent-pid", "\(ProcessInfo.processInfo.processIdentifier)"] + arguments
        output = FileManager.default.temporaryDirectory.appendingPathComponent("fixture-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let log = try FileHandle(forWritingTo: output)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try log.close()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        var found: Int?
        let output = self.output
        func printed() -> String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }
        while found == nil, clock.now < deadline, process.isRunning {
            found = printed().firstMatch(of: /PORT (\d+)/).flatMap { Int($0.1) }
            if found != nil, let ready, !printed().contains(ready) { found = nil }
            if found == nil { try await Task.sleep(for: .milliseconds(25)) }
        }
        guard let found else {
            if process.isRunning { process.terminate() }
            throw LaunchError(description: "\(script) did not start: \(printed().suffix(1500))")
        }
        port = found
    }

    /// `GET /stats`: what the fixture counted.
    public func stats() async throws -> JSONValue {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url(path: "/stats")), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONValue(parsing: body.readableBytesView)
    }

    /// What the fixture printed (its warnings, tracebacks).
    public var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    deinit {
        stop()
    }

    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: output)
    }
}

/// A real MCP server for the tests: `Tests/Fixtures/mcp_test_server.py` (the Python MCP SDK's
/// FastMCP over streamable HTTP).
public final class MCPTestServer: PythonFixture, @unchecked Sendable {
    /// `http://127.0.0.1:<port>/mcp`
    public var url: String { "http://127.0.0.1:\(port)/mcp" }

    /// - Parameter arguments: the script's flags (`--json`, `--page-size N`, `--require-auth T`, `--redirect-to URL`).
    public init(arguments: [String] = []) async throws {
        // Listening is printed before the app's lifespan has started its session manager.
        try await super.init(script: "mcp_test_server.py", arguments: arguments, ready: "session manager started")
    }

    /// One server per set of arguments for the whole test run, for the tests that only read from
    /// it (each counts its own calls by argument, `stats()["calls"]["book:<place>"]`). Starting a
    /// Python MCP server costs about a second of CPU; the suite would otherwise start twenty.
    public static func shared(_ arguments: [String] = []) async throws -> MCPTestServer {
        try await Shared.instance.server(arguments)
    }

    private actor Shared {
        static let instance = Shared()
        var servers: [[String]: Task<MCPTestServer, any Error>] = [:]

        func server(_ arguments: [String]) async throws -> MCPTestServer {
            if let running = servers[arguments] { return try await running.value }
            let starting = Task { try await MCPTestServer(arguments: arguments) }
            servers[arguments] = starting
            return try await starting.value
        }
    }
}
