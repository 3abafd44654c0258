import AgentKit
import Testing

@Suite("agent definitions, approval policies and the outbound rules")
struct AgentDefinitionTests {
    let builtins = ["book_hotel", "multiply", "recall_memory"]

    func parse(_ json: JSONValue) throws(AgentDefinition.Invalid) -> AgentDefinition {
        try AgentDefinition.parse(json, builtinTools: builtins)
    }

    /// The field a refusal names, or nil when it parsed.
    func refusedField(_ json: JSONValue) -> String? {
        do {
            _ = try parse(json)
            return nil
        } catch {
            return error.field
        }
    }

    @Test("a full definition reads back as it was written, header values hidden")
    func roundTrip() throws {
        let json: JSONValue = [
            "model": "gpt-4o", "system_message": "be brief", "tools": ["multiply"], "max_steps": 4, "history_messages": 6,
            "memory_recall_limit": 2,
            "mcp_servers": [
                [
                    "type": "mcp", "label": "maps", "url": "https://maps.example.com/mcp", "headers": ["Authorization": "Bearer s3cret"],
                    "allowed_tools": ["lookup", "route"], "require_approval": ["never": ["tool_names": ["lookup"]]], "timeout_s": 5,
                ]
            ],
        ]
        let definition = try parse(json)
        #expect(definition.model == "gpt-4o")
        #expect(definition.tools == ["multiply"])
        #expect(definition.mcpServers.first?.headers == [MCPServerConfig.Header(name: "Authorization", value: "Bearer s3cret")])
        #expect(definition.mcpServers.first?.timeoutSeconds == 5)
        let shown = definition.redacted
        #expect(shown["mcp_servers"]?.arrayItems.first?["headers"]?["Authorization"] == "***")
        #expect(!shown.jsonText.contains("s3cret"))
        // What is shown reads again as the same definition, but for the hidden value, which a PUT must not send back.
        var again = shown
        if case .object(var object) = again, case .array(var servers)? = object["mcp_servers"], case .object(var server) = servers[0] {
            server["headers"] = ["Authorization": "Bearer s3cret"]
            servers[0] = .object(server)
            object["mcp_servers"] = .array(servers)
            again = .object(object)
        }
        #expect(try parse(again) == definition)
        #expect(refusedField(shown) == "mcp_servers[0].headers.Authorization")
    }

    @Test("each invalid field is refused by name")
    func refusals() {
        #expect(refusedField("text") == "body")
        #expect(refusedField(["modle": "x"]) == "modle")
        #expect(refusedField(["tools": ["shell"]]) == "tools[0]")
        #expect(refusedField(["max_steps": 0]) == "max_steps")
        #expect(refusedField(["max_steps": 2.5]) == "max_steps")
        #expect(refusedField(["memory_recall_limit": 101]) == "memory_recall_limit")
        #expect(refusedField(["system_message": .number(1)]) == "system_message")
        #expect(refusedField(["mcp_servers": [["url": "https://a.example/mcp"]]]) == "mcp_servers[0].label")
        #expect(refusedField(["mcp_servers": [["label": "a__b", "url": "https://a.example/mcp"]]]) == "mcp_servers[0].label")
        #expect(refusedField(["mcp_servers": [["label": "maps", "url": "ftp://a.example/mcp"]]]) == "mcp_servers[0].url")
        #expect(refusedField(["mcp_servers": [["label": "maps", "url": "https://user:pw@a.example/mcp"]]]) == "mcp_servers[0].url")
        #expect(refusedField(["mcp_servers": [["label": "maps", "url": "https://a.example/mcp", "headers": ["Host": "x"]]]]) == "mcp_servers[0].headers.Host")
        #expect(
            refusedField(["mcp_servers": [["label": "maps", "url": "https://a.example/mcp", "headers": ["X-Key": "a\r\nInjected: 1"]]]])
                == "mcp_servers[0].headers.X-Key")
        #expect(refusedField(["mcp_servers": [["label": "maps", "url": "https://a.example/mcp", "timeout_s": 0]]]) == "mcp_servers[0].timeout_s")
        let long = JSONValue.string(String(repeating: "k", count: 4097))
        #expect(refusedField(["mcp_servers": [["label": "maps", "url": "https://a.example/mcp", "headers": ["X-Key": long]]]]) == "mcp_servers[0].headers.X-Key")
        #expect(
            refusedField(["mcp_servers": [["label": "maps", "url": "https://a.example/mcp", "require_approval": "sometimes"]]])
                == "mcp_servers[0].require_approval")
        #expect(
            refusedField([
                "mcp_servers": [["label": "maps", "url": "https://a.example/mcp"], ["label": "MAPS", "url": "https://b.example/mcp"]]
            ]) == "mcp_servers[1].label")
        #expect(refusedField(["mcp_servers": [["label": "book", "url": "https://a.example/mcp"]]]) == nil)
    }

    @Test("approval: always by default, never, and per tool with read-only tools exempt on request")
    func approvalPolicies() throws {
        func policy(_ json: JSONValue?) throws -> ApprovalPolicy {
            var server: [String: JSONValue] = ["label": "maps", "url": "https://a.example/mcp"]
            if let json { server["require_approval"] = json }
            return try parse(["mcp_servers": [.object(server)]]).mcpServers[0].requireApproval
        }
        #expect(try policy(nil).needsApproval(tool: "x", readOnly: true))
        #expect(try !policy("never").needsApproval(tool: "x", readOnly: false))
        let split = try policy(["always": ["delete"], "never": ["tool_names": ["lookup"], "read_only": true]])
        #expect(split.needsApproval(tool: "delete", readOnly: true))
        #expect(!split.needsApproval(tool: "lookup", readOnly: false))
        #expect(!split.needsApproval(tool: "search", readOnly: true))
        #expect(split.needsApproval(tool: "write", readOnly: false))
        let listed = try policy(["never": ["lookup"]])
        #expect(!listed.needsApproval(tool: "lookup", readOnly: false))
        #expect(listed.needsApproval(tool: "search", readOnly: true))
        #expect(throws: AgentDefinition.Invalid.self) { try policy(["always": ["a"], "never": ["a"]]) }
    }

    @Test("outbound: internal addresses are refused unless their host is listed, after resolution too")
    func outboundPolicy() {
        let open = OutboundPolicy.publicHosts
        #expect(open.refusal(host: "maps.example.com") == nil)
        for address in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1",
            "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::"]
        {
            #expect(open.refusal(host: address) != nil, "\(address)")
        }
        #expect(open.refusal(host: "8.8.8.8") == nil)
        #expect(open.refusal(host: "2606:4700::1111") == nil)
        let localhost = [IPAddress("127.0.0.1")].compactMap { $0 }
        #expect(open.refusal(host: "localhost", resolvedTo: localhost) != nil)
        #expect(open.refusal(host: "db.internal", resolvedTo: [IPAddress("10.0.0.5")].compactMap { $0 }) != nil)
        #expect(open.refusal(host: "maps.example.com", resolvedTo: [IPAddress("93.184.216.34")].compactMap { $0 }) == nil)
        let listed = OutboundPolicy(allowedHosts: ["127.0.0.1", "Maps.Internal"])
        #expect(listed.refusal(host: "127.0.0.1") == nil)
        #expect(listed.refusal(host: "127.0.0.2") != nil)
        #expect(listed.refusal(host: "maps.internal", resolvedTo: [IPAddress("10.0.0.5")].compactMap { $0 }) == nil)
        #expect(listed.refusal(host: "maps.example.com") != nil, "not listed, and no *")
        for address in ["2001::1", "64:ff9b:1::1", "::ffff:0:127.0.0.1", "2001:db8::1"] {
            #expect(open.refusal(host: address) != nil, "\(address)")
        }
        // One spelling of a host for every parser: ASCII only, case folded for the check.
        #expect(OutboundURL.problem(with: "https://MAPS.Example.com/mcp") == nil)
        #expect(OutboundURL.host(of: "https://MAPS.Example.com/mcp") == "maps.example.com")
        #expect(OutboundURL.problem(with: "https://карты.example/mcp") != nil)
        // Written as sent: no NUL (PostgreSQL cannot store it), spaces or raw non-ASCII anywhere.
        #expect(OutboundURL.problem(with: "https://a.example/h\u{0}x")?.contains("U+0") == true)
        #expect(OutboundURL.problem(with: "https://a.example/a b")?.contains("U+20") == true)
        #expect(OutboundURL.problem(with: "https://a.example/карты")?.contains("printable ASCII") == true)
        #expect(OutboundURL.problem(with: "https://a.example/%D0%BA?q=%20") == nil)
        #expect(OutboundURL.origin(of: "https://a.example/x") == OutboundURL.origin(of: "https://A.example:443/y"))
        #expect(OutboundURL.origin(of: "https://a.example/x") != OutboundURL.origin(of: "http://a.example/x"))
        #expect(IPAddress("1.2.3") == nil)
        #expect(IPAddress("01.2.3.4.5") == nil)
        #expect(IPAddress("::ffff:7f00:1")?.kind == "loopback")
    }

    @Test("the offline model calls any offered tool when asked to, and says which exist otherwise")
    func offlineExplicitCall() async throws {
        let model = OfflineModel()
        let tools = [ToolSpec(name: "maps__lookup", description: "", parameters: [:])]
        let reply = try await model.complete(ModelRequest(messages: [.human(#"call maps__lookup {"city": "Paris"}"#)], tools: tools))
        #expect(reply.message.toolCalls.first?.name == "maps__lookup")
        #expect(reply.message.toolCalls.first?.args == ["city": "Paris"])
        let bare = try await model.complete(ModelRequest(messages: [.human("call maps__lookup")], tools: tools))
        #expect(bare.message.toolCalls.first?.args == [:])
        let missing = try await model.complete(ModelRequest(messages: [.human("call shell {}")], tools: tools))
        #expect(missing.message.toolCalls.isEmpty)
        #expect(missing.message.content.contains("maps__lookup"))
        let answered = try await model.complete(
            ModelRequest(
                messages: [
                    .human("call maps__lookup {}"), .ai("", toolCalls: [ToolCall(id: "c", name: "maps__lookup", args: [:])]),
                    .tool("sunny", name: "maps__lookup", callID: "c"),
                ], tools: tools))
        #expect(answered.message.content == "sunny")
    }
}

extension JSONValue {
    var arrayItems: [JSONValue] {
        if case .array(let items) = self { return items }
        return []
    }
}
