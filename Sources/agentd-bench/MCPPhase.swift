import AgentdProcess
import Foundation
import Postgres

/// Phase 9: the price of an MCP tool call. A real MCP server (examples/maps_server.py, the Python
/// SDK's FastMCP, started here from `MCP_PYTHON`) on 127.0.0.1, an agent whose server needs no
/// approval, and three kinds of one-tool task run the same way: the built-in `multiply`, the
/// server's read-only `geocode`, and its `book_table`, whose start is committed before it is sent
/// (at most once). Added latency per call is a task's latency less the built-in tool's.
extension Phases {
    /// Writing commits per task are WAL commit records, as in phase 7.
    func mcp() async throws {
        guard let python = ProcessInfo.processInfo.environment["MCP_PYTHON"], !python.isEmpty else {
            progress("MCP calls: MCP_PYTHON is not set (make bench sets it); skipped")
            report.add("9 MCP", "tool calls", "n/a: MCP_PYTHON not set")
            return
        }
        let script = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("examples/maps_server.py")
        let port = try FreePort.find()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: python)
        server.arguments = [script.path, "--port", "\(port)"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        // Killed, not asked to stop: uvicorn's graceful shutdown would wait for agentd's idle
        // connections. (Reaped by Foundation; waitUntilExit on a concurrency thread can hang.)
        defer { kill(server.processIdentifier, SIGKILL) }
        let url = "http://127.0.0.1:\(port)/mcp"
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        var answered = false
        while !answered, clock.now < deadline {
            answered = (try? await LoadClient(http: client.http, base: "http://127.0.0.1:\(port)", polling: false).send(.GET, "/mcp")) != nil
            if !answered { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard answered else { throw LoadClient.Failure(description: "the MCP server did not start on \(url)") }
        let (status, body) = try await client.send(
            .PUT, "/agents/bench-mcp", body: #"{"mcp_servers": [{"label": "maps", "url": "\#(url)", "require_approval": "never"}]}"#)
        guard status == 200 else { throw LoadClient.Failure(description: "PUT /agents answered \(status): \(String(buffer: body))") }

        let dataDirectory: String = try await db.query("SELECT /* agentd-bench */ current_setting('data_directory') AS dir").rows[0].decode("dir")
        var baseline: Double?
        for (kind, tool, query) in [
            ("built-in", "multiply", "tool multiply"), ("MCP read-only", "maps__geocode", "tool maps__geocode"),
            ("MCP at most once", "maps__book_table", "tool maps__book_table"),
        ] {
            let prefix = "p9-\(tool)"
            let total = bench.mcpCalls
            let clients = max(1, min(bench.mcpClients, total))
            let walBefore: String = try await db.query("SELECT /* agentd-bench */ pg_current_wal_lsn()::text AS lsn").rows[0].decode("lsn")
            let latencies = try await eachClient(clients) { index in
                var latencies: [Double] = []
                let user = "\(prefix)-u\(index)"
                for number in stride(from: index, to: total, by: clients) {
                    let start = clock.now
                    try await client.invoke(user: user, session: "s\(number)", task: "t", query: query, agent: "bench-mcp")
                    let done = try await client.wait(user: user, session: "s\(number)", task: "t", for: ["completed", "error", "interrupted"])
                    guard done == "completed" else { throw LoadClient.Failure(description: "\(user) s\(number) ended \(done)") }
                    latencies.append((clock.now - start).milliseconds)
                }
                return latencies
            }
            let walAfter: String = try await db.query("SELECT /* agentd-bench */ pg_current_wal_lsn()::text AS lsn").rows[0].decode("lsn")
            let commits = Double(try await Task.detached { try walCommits(dataDirectory: dataDirectory, from: walBefore, to: walAfter) }.value) / Double(total)
            let failed = try await db.query("""
                SELECT /* agentd-bench */ count(*) AS n FROM tool_calls WHERE user_id LIKE \(prefix + "%") AND status <> 'ok'
                """).rows[0].decode("n", as: Int.self)
            guard failed == 0 else { throw LoadClient.Failure(description: "\(failed) calls of \(tool) failed") }
            let call = Sample(
                try await db.query("""
                    SELECT /* agentd-bench */ duration_ms FROM tool_calls WHERE user_id LIKE \(prefix + "%")
                    """).rows.map { try $0.decode("duration_ms") })
            let task = Sample(latencies)
            let added = baseline.map { String(format: "; %+.2f ms per task at p50 over the built-in tool", task.p(0.5) - $0) } ?? ""
            if baseline == nil { baseline = task.p(0.5) }
            progress(String(format: "MCP calls, %@: call p50 %.2f ms, task p50 %.2f ms%@", kind, call.p(0.5), task.p(0.5), added))
            report.add(
                "9 MCP", "\(kind) (\(tool)), \(task.count) tasks, \(clients) clients: the call as agentd timed it, p50 / p99",
                "\(call.milliseconds(0.5)) / \(call.milliseconds(0.99))")
            report.add(
                "9 MCP", "\(kind): task invoke → completed, client p50 / p99; commits per task",
                "\(task.milliseconds(0.5)) / \(task.milliseconds(0.99)); \(String(format: "%.2f", commits))", ratio: String(added.dropFirst(2)))
        }
    }
}
