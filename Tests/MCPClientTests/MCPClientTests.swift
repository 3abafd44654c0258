import AgentdProcess
import AgentKit
import AsyncHTTPClient
import Foundation
import Logging
import MCPClient
import Testing
import TestSupport

/// The MCP client against a real MCP server (the Python SDK's FastMCP, Tests/Fixtures), over
/// real HTTP on 127.0.0.1: listing, calling, every failure, list changes, headers, the outbound rules.
@Suite("MCP tools against a real MCP server", .serialized)
struct MCPClientTests {
    static let loopback = OutboundPolicy(allowedHosts: ["127.0.0.1"])
    static let scope = AgentScope(tenantID: "t", agentID: "maps-agent", version: 1)

    func toolbox(_ policy: OutboundPolicy = loopback, ttl: Duration = .seconds(300)) -> MCPToolbox {
        MCPToolbox(policy: policy, ttl: ttl, logger: Logger(label: "test.mcp"))
    }

    func list(_ toolbox: MCPToolbox, _ server: MCPServerConfig) async throws -> RemoteToolList {
        try await toolbox.tools(of: server, for: Self.scope).get()
    }

    func call(_ list: RemoteToolList, _ name: String, _ arguments: [String: JSONValue] = [:]) async throws -> ToolOutput {
        let tool = try #require(list.tools.first { $0.spec.name == name }, "no tool \(name) in \(list.tools.map(\.spec.name))")
        return try await tool.call(arguments: arguments, context: ToolContext(key: TaskKey(tenantID: "t", userID: "u", sessionID: "s", taskID: "k"), toolCallID: "c"))
    }

    func failure(_ list: RemoteToolList, _ name: String, _ arguments: [String: JSONValue] = [:]) async throws -> ToolError {
        do {
            let output = try await call(list, name, arguments)
            Issue.record("\(name) answered \(output.text.prefix(200)) instead of failing")
            return ToolError("")
        } catch let error as ToolError {
            return error
        }
    }

    @Test("tools are listed page by page with their schemas, named {label}__{tool}, in both answer forms", arguments: [false, true])
    func listing(json: Bool) async throws {
        // Three tools a page (the server's default): seven tools take three pages.
        let server = try await MCPTestServer.shared(json ? ["--json"] : [])
        let toolbox = toolbox()
        let list = try await list(
            toolbox, MCPServerConfig(label: "maps", url: server.url, requireApproval: .rules(always: ["slow"], never: ["book"], neverReadOnly: true)))
        let names = Set(list.tools.map(\.spec.name))
        #expect(names == ["maps__lookup", "maps__book", "maps__slow", "maps__fails", "maps__big", "maps__whoami", "maps__add_tool"])
        let lookup = try #require(list.tools.first { $0.spec.name == "maps__lookup" })
        #expect(lookup.spec.parameters["properties"]?["city"]?["type"] == "string")
        #expect(lookup.spec.description.contains("read-only"))
        #expect(lookup.serverLabel == "maps")
        #expect(lookup.origin?.contains("127.0.0.1:\(server.port)") == true)
        #expect(!lookup.runsAtMostOnce, "read-only tools may run again")
        #expect(try #require(list.tools.first { $0.spec.name == "maps__book" }).runsAtMostOnce)
        // Read-only tools need no approval; `slow` is listed under always, `book` under never, the rest wait.
        #expect(list.approving == ["maps__slow", "maps__fails", "maps__add_tool"])
        #expect(try await call(list, "maps__lookup", ["city": "Paris"]) == ToolOutput("weather in Paris: sunny, 21°C"))
        #expect(list.tools.count == 7, "three pages, all read")
        let only = try await self.list(toolbox, MCPServerConfig(label: "few", url: server.url, allowedTools: ["lookup"]))
        #expect(only.tools.map(\.spec.name) == ["few__lookup"])
        #expect(only.approving == ["few__lookup"], "always, by default")
        await toolbox.close()
    }

    @Test("each failure is a tool error with its outcome: isError, timeout, unreachable, not MCP, refused; a big result is cut")
    func failures() async throws {
        let server = try await MCPTestServer.shared()
        let toolbox = toolbox()
        let list = try await list(toolbox, MCPServerConfig(label: "maps", url: server.url, timeoutSeconds: 1))
        let failed = try await failure(list, "maps__fails")
        #expect(failed.outcome == "tool_error")
        #expect(failed.message.contains("the tool failed on purpose"))
        let slow = try await failure(list, "maps__slow", ["seconds": 5])
        #expect(slow.outcome == "timeout")
        let big = try await call(list, "maps__big")
        #expect(big.outcome == "truncated")
        // Checked as flags: a failed expectation would print 32 KiB.
        let (size, noted, start) = (big.text.utf8.count, big.text.contains("[agentd: the result was 106496 bytes; only the first "), big.text.hasPrefix("数据x"))
        #expect(size < 33 * 1024)
        #expect(noted)
        #expect(start)

        // Nobody listens on this port, and nobody can while the socket is held.
        let refusing = try FreePort.bind()
        defer { close(refusing.socket) }
        let goneURL = "http://127.0.0.1:\(refusing.port)/mcp"
        let unreachable = await toolbox.tools(of: MCPServerConfig(label: "gone", url: goneURL), for: Self.scope)
        #expect(unreachable.failureOutcome == "unreachable")
        let broken = await toolbox.tools(of: MCPServerConfig(label: "broken", url: server.url(path: "/broken")), for: Self.scope)
        #expect(broken.failureOutcome == "protocol_error")
        let refused = await toolbox.tools(of: MCPServerConfig(label: "local", url: "http://localhost:\(server.port)/mcp"), for: Self.scope)
        #expect(refused.failureOutcome == "refused", "localhost resolves to loopback, which is not listed by that name")
        // An error whose code no integer holds, echoing the token: a protocol error, the token masked.
        let hostile = await toolbox.tools(
            of: MCPServerConfig(
                label: "hostile", url: server.url(path: "/hostile"), headers: [MCPServerConfig.Header(name: "Authorization", value: "Bearer t0p-s3cret")]),
            for: Self.scope)
        #expect(hostile.failureOutcome == "protocol_error")
        #expect(hostile.failureMessage.contains("*** is not welcome"))
        #expect(!hostile.failureMessage.contains("t0p-s3cret"))
        await toolbox.close()
    }

    @Test("the server's notifications/tools/list_changed on its GET stream makes the next listing fresh")
    func listChanged() async throws {
        let server = try await MCPTestServer()
        defer { server.stop() }
        let toolbox = toolbox()
        let config = MCPServerConfig(label: "maps", url: server.url)
        let first = try await list(toolbox, config)
        #expect(!first.tools.contains { $0.spec.name == "maps__extra" })
        #expect(try await call(first, "maps__add_tool").text == "added the tool extra")
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        var names: [String] = []
        while clock.now < deadline {
            names = try await list(toolbox, config).tools.map(\.spec.name)
            if names.contains("maps__extra") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(names.contains("maps__extra"), "the TTL is 300 s: only the notification can have refreshed it")
        await toolbox.close()
    }

    @Test("without a notification the list is kept for the TTL, then listed again; a session the server forgot is set up anew")
    func ttlAndExpiry() async throws {
        let server = try await MCPTestServer(arguments: ["--quiet-changes"])
        defer { server.stop() }
        // Long enough that the call below fits in it on a machine busy with the whole suite.
        let toolbox = toolbox(ttl: .seconds(3))
        let config = MCPServerConfig(label: "maps", url: server.url)
        let first = try await list(toolbox, config)
        #expect(try await call(first, "maps__add_tool").text == "added the tool extra")
        #expect(!(try await list(toolbox, config)).tools.contains { $0.spec.name == "maps__extra" }, "within the TTL: the cached list")
        try await Task.sleep(for: .milliseconds(3100))
        let later = try await list(toolbox, config)
        #expect(later.tools.contains { $0.spec.name == "maps__extra" }, "after the TTL: listed again")

        // The server forgets the session (a restart): the next request's 404 starts a new one, and the call goes through.
        var forget = HTTPClientRequest(url: server.url(path: "/forget"))
        forget.method = .POST
        let forgotten = try await HTTPClient.shared.execute(forget, timeout: .seconds(5))
        #expect(forgotten.status.code == 200)
        #expect(try await call(later, "maps__lookup", ["city": "Rome"]).text == "weather in Rome: sunny, 21°C")
        await toolbox.close()
    }

    @Test("configured headers reach the server on every request")
    func headers() async throws {
        let server = try await MCPTestServer.shared(["--require-auth", "t0p-s3cret"])
        let toolbox = toolbox()
        let denied = await toolbox.tools(of: MCPServerConfig(label: "maps", url: server.url), for: Self.scope)
        #expect(denied.failureOutcome == "protocol_error")
        let list = try await list(
            toolbox,
            MCPServerConfig(label: "auth", url: server.url, headers: [MCPServerConfig.Header(name: "Authorization", value: "Bearer t0p-s3cret")]))
        #expect(try await call(list, "auth__whoami").text == "Bearer t0p-s3cret")
        await toolbox.close()
    }

    @Test("redirects are judged hop by hop: to a listed host followed, to an unlisted loopback address refused")
    func redirects() async throws {
        let target = try await MCPTestServer.shared()
        let follows = try await MCPTestServer(arguments: ["--redirect-to", target.url])
        defer { follows.stop() }
        let inward = try await MCPTestServer(arguments: ["--redirect-to", "http://127.0.0.2:\(target.port)/mcp"])
        defer { inward.stop() }
        let toolbox = toolbox()
        // The tenant's headers stop at the first origin: the target, another port, never sees them.
        let probe = "Bearer redirect-probe-\(UUID().uuidString)"
        let followed = try await list(
            toolbox, MCPServerConfig(label: "hop", url: follows.url(path: "/redirect"), headers: [MCPServerConfig.Header(name: "Authorization", value: probe)]))
        #expect(followed.tools.contains { $0.spec.name == "hop__lookup" })
        let seen = try await target.stats()["authorizations"]?.arrayItems ?? []
        #expect(!seen.contains(.string(probe)))
        let refused = await toolbox.tools(of: MCPServerConfig(label: "internal", url: inward.url(path: "/redirect")), for: Self.scope)
        #expect(refused.failureOutcome == "refused")
        #expect(refused.failureMessage.contains("127.0.0.2"))
        await toolbox.close()
    }

    @Test("nothing is sent to an address the policy refuses")
    func refusedBeforeSending() async throws {
        let server = try await MCPTestServer()
        defer { server.stop() }
        let toolbox = toolbox(.publicHosts)
        let refused = await toolbox.tools(of: MCPServerConfig(label: "maps", url: server.url), for: Self.scope)
        #expect(refused.failureOutcome == "refused")
        let stats = try await server.stats()
        #expect(stats["authorizations"]?.arrayCount == 0, "the server saw no request")
        await toolbox.close()
    }
}

extension Result where Success == RemoteToolList, Failure == ToolError {
    var failureOutcome: String? {
        if case .failure(let error) = self { return error.outcome }
        return "listed"
    }

    var failureMessage: String {
        if case .failure(let error) = self { return error.message }
        return ""
    }
}

extension JSONValue {
    var arrayCount: Int? {
        if case .array(let items) = self { return items.count }
        return nil
    }

    var arrayItems: [JSONValue] {
        if case .array(let items) = self { return items }
        return []
    }
}
