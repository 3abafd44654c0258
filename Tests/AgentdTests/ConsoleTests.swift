import AgentKit
import Foundation
import NIOHTTP1
import Postgres
import Testing
import TestSupport

/// The web console's server side: its files and headers, `/console/mode`, `/system/whoami`,
/// and the report views behind its usage page (`/reports/...`). The pages themselves are
/// driven in Chromium by `ConsoleBrowserTests`.
@Suite("the web console's files and the reports API")
struct ConsoleTests {
    func call(_ service: ServiceHarness, _ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil, key: String? = nil, headers: [(String, String)] = [])
        async throws -> ServiceHarness.Reply
    {
        try await service.send(method, path, body: body?.jsonText, authorization: key.map { "Bearer \($0)" }, extraHeaders: headers)
    }

    @Test("the console is served from console/ with its security headers, ETags and a 404 in JSON for what it does not have")
    func files() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        // The harness's client follows redirects: the redirect itself, over a raw connection.
        let port = try #require(URL(string: service.baseURL)?.port)
        let raw = try #require(RawConnection(port: port))
        raw.send("GET /console HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        let redirect = await raw.readAll(within: .seconds(10))
        #expect(redirect.hasPrefix("HTTP/1.1 308"), "\(redirect.prefix(200))")
        #expect(redirect.lowercased().contains("location: /console/\r\n"), "\(redirect.prefix(200))")

        let index = try await call(service, .GET, "/console/")
        #expect(index.status == 200)
        #expect(index.headers.first(name: "Content-Type") == "text/html; charset=utf-8")
        let policy = try #require(index.headers.first(name: "Content-Security-Policy"))
        #expect(policy.contains("default-src 'none'") && policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"))
        #expect(index.headers.first(name: "X-Content-Type-Options") == "nosniff")
        #expect(index.body.stringValue?.contains("console.js") == true)
        let onDisk = try String(contentsOf: Self.consoleDirectory.appendingPathComponent("index.html"), encoding: .utf8)
        #expect(index.body.stringValue == onDisk)

        let script = try await call(service, .GET, "/console/console.js")
        #expect(script.status == 200)
        #expect(script.headers.first(name: "Content-Type") == "text/javascript; charset=utf-8")
        let etag = try #require(script.headers.first(name: "ETag"))
        let again = try await call(service, .GET, "/console/console.js", headers: [("If-None-Match", etag)])
        #expect(again.status == 304)
        #expect(try await call(service, .GET, "/console/console.js", headers: [("If-None-Match", "\"other\"")]).status == 200)
        #expect(try await call(service, .HEAD, "/console/console.css").status == 200)

        for missing in ["/console/nothing.js", "/console/..%2Fsql%2F001_core.sql", "/console/.hidden.js"] {
            let reply = try await call(service, .GET, missing)
            #expect(reply.status == 404, "\(missing)")
            #expect(reply["detail"]?.stringValue?.isEmpty == false, "\(missing)")
        }
        // Every file the page loads is there.
        for name in ["console.css", "console.js", "i18n.js", "markdown.js"] {
            #expect(try await call(service, .GET, "/console/\(name)").status == 200, "\(name)")
        }
    }

    @Test("/console/mode says whether a key is needed; /system/whoami says who a key acts as")
    func modeAndWhoami() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        #expect(try await call(service, .GET, "/console/mode").body == ["open_mode": true])
        #expect(
            try await call(service, .GET, "/system/whoami").body
                == ["tenant_id": "default", "user_id": .null, "key_id": .null, "operator": false, "open_mode": true])

        let keys = try await AuthTests.makeKeys(service)
        #expect(try await call(service, .GET, "/console/mode").body == ["open_mode": false])
        #expect(try await call(service, .GET, "/system/whoami").status == 401)
        let tenant = try await call(service, .GET, "/system/whoami", key: keys.tenantA)
        #expect(tenant["tenant_id"] == "A" && tenant["user_id"] == .null && tenant["operator"] == false && tenant["open_mode"] == false)
        #expect(tenant["key_id"]?.stringValue.map { keys.tenantA.contains($0) } == true)
        let user = try await call(service, .GET, "/system/whoami", key: keys.userA1)
        #expect(user["tenant_id"] == "A" && user["user_id"] == "u1")
        let admin = try await call(service, .GET, "/system/whoami", key: keys.adminB)
        #expect(admin["tenant_id"] == "B" && admin["operator"] == true)
        #expect(try await call(service, .GET, "/system/whoami", key: keys.revoked).status == 401)
    }

    @Test("the reports: the views' rows for the caller's scope, per day or per user; user keys read their own usage only")
    func reports() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        let keys = try await AuthTests.makeKeys(service)
        // A: u1 and u2 each book (one approval, two model calls); B: u1 once. u1 of A accepts, u2 rejects.
        for (user, key) in [("u1", keys.tenantA), ("u2", keys.tenantA), ("u1", keys.tenantB)] {
            let body: JSONValue = ["user_id": .string(user), "session_id": "s1", "task_id": "t1", "query": "帮我预定如家酒店"]
            #expect(try await call(service, .POST, "/agent/invoke", body, key: key).status == 200)
        }
        for (user, key, decision) in [("u1", keys.tenantA, "accept"), ("u2", keys.tenantA, "reject"), ("u1", keys.tenantB, "accept")] {
            #expect(try await eventually { try await call(service, .GET, "/agent/status/\(user)/s1/t1", key: key)["status"] == "interrupted" })
            let body: JSONValue = ["user_id": .string(user), "session_id": "s1", "task_id": "t1", "response_type": .string(decision)]
            #expect(try await call(service, .POST, "/agent/resume", body, key: key).status == 200)
            #expect(try await eventually { try await call(service, .GET, "/agent/status/\(user)/s1/t1", key: key)["status"] == "completed" })
        }
        func tokens(_ tenant: String, user: String? = nil) throws -> Int {
            try service.scalar(
                "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0)::bigint FROM llm_calls WHERE tenant_id = \(tenant) AND (\(user)::text IS NULL OR user_id = \(user))")
        }

        let daily = try await call(service, .GET, "/reports/usage", key: keys.tenantA)
        #expect(daily.status == 200)
        guard case .array(let rows)? = daily["rows"] else { Issue.record("no rows: \(daily.body)"); return }
        #expect(rows.count == 1)
        #expect(rows.first?["tenant_id"] == "A" && rows.first?["user_id"] == .null && rows.first?["users"] == 2 && rows.first?["model_calls"] == 4)
        let sum = (rows.first?["prompt_tokens"]?.numberValue ?? 0) + (rows.first?["completion_tokens"]?.numberValue ?? 0)
        #expect(Int(sum) == (try tokens("A")))
        #expect(daily["truncated"] == false && daily["by"] == "day" && daily["days"] == 30)

        let perUser = try await call(service, .GET, "/reports/usage?by=user&days=7", key: keys.tenantA)
        guard case .array(let users)? = perUser["rows"] else { Issue.record("no rows: \(perUser.body)"); return }
        #expect(Set(users.compactMap { $0["user_id"]?.stringValue }) == ["u1", "u2"])
        #expect(users.allSatisfy { $0["model_calls"] == 2 && $0["failed_calls"] == 0 && $0["avg_latency_ms"]?.numberValue != nil })
        // The same numbers as the view that operators read with SQL.
        let fromView = try service.rows(
            """
            SELECT user_id, model_calls::int AS calls, prompt_tokens::int AS prompt, completion_tokens::int AS completion,
                   avg_latency_ms::float8 AS latency
            FROM report_usage_daily WHERE tenant_id = 'A' ORDER BY user_id
            """)
        let viewRows = try fromView.map { row -> [JSONValue] in
            [.string(try row.decode("user_id")), .number(Double(try row.decode("calls", as: Int.self))),
             .number(Double(try row.decode("prompt", as: Int.self))), .number(Double(try row.decode("completion", as: Int.self))),
             .number(try row.decode("latency", as: Double.self))]
        }
        let apiRows = users.sorted { ($0["user_id"]?.stringValue ?? "") < ($1["user_id"]?.stringValue ?? "") }.map { row -> [JSONValue] in
            ["user_id", "model_calls", "prompt_tokens", "completion_tokens", "avg_latency_ms"].map { row[$0] ?? .null }
        }
        #expect(apiRows == viewRows)
        let truncated = try await call(service, .GET, "/reports/usage?by=user&limit=1", key: keys.tenantA)
        #expect(truncated["truncated"] == true)

        // A user key: its own usage, whatever it asks; the tenant's reports are refused.
        let own = try await call(service, .GET, "/reports/usage?by=user", key: keys.userA1)
        guard case .array(let ownRows)? = own["rows"] else { Issue.record("no rows: \(own.body)"); return }
        #expect(ownRows.map { $0["user_id"] } == ["u1"])
        let ownSum = (ownRows.first?["prompt_tokens"]?.numberValue ?? 0) + (ownRows.first?["completion_tokens"]?.numberValue ?? 0)
        #expect(Int(ownSum) == (try tokens("A", user: "u1")))
        #expect(try await call(service, .GET, "/reports/usage?user_id=u2", key: keys.userA1).status == 403)
        #expect(try await call(service, .GET, "/reports/approvals", key: keys.userA1).status == 403)
        #expect(try await call(service, .GET, "/reports/latency", key: keys.userA1).status == 403)

        let approvals = try await call(service, .GET, "/reports/approvals", key: keys.tenantA)
        #expect(
            approvals["rows"]
                == [
                    [
                        "tenant_id": "A", "tool_name": "book_hotel", "asked": 2, "pending": 0, "accepted": 1, "edited": 0, "rejected": 1,
                        "responded": 0, "expired": 0, "withdrawn": 0, "approval_rate": 0.5,
                        "avg_seconds_to_decide": approvals["rows"]?[0]?["avg_seconds_to_decide"] ?? .null,
                    ]
                ])
        let latency = try await call(service, .GET, "/reports/latency?days=1", key: keys.tenantA)
        guard case .array(let latencyRows)? = latency["rows"] else { Issue.record("no rows: \(latency.body)"); return }
        #expect(latencyRows.count == 1)
        #expect(latencyRows.first?["state"] == "completed" && latencyRows.first?["tasks"] == 2 && latencyRows.first?["p50_seconds"]?.numberValue != nil)

        // Tenants: B's key sees B only and may not name A; the operator key (of B) sees both, or one.
        let tenantB = try await call(service, .GET, "/reports/approvals", key: keys.tenantB)
        #expect(tenantB["rows"]?[0]?["tenant_id"] == "B" && tenantB["rows"]?[0]?["asked"] == 1)
        #expect(try await call(service, .GET, "/reports/usage?tenant_id=A", key: keys.tenantB).status == 403)
        #expect(try await call(service, .GET, "/reports/usage?tenant_id=B", key: keys.tenantB).status == 200)
        let everyone = try await call(service, .GET, "/reports/usage", key: keys.adminB)
        guard case .array(let everyRows)? = everyone["rows"] else { Issue.record("no rows: \(everyone.body)"); return }
        #expect(Set(everyRows.compactMap { $0["tenant_id"]?.stringValue }) == ["A", "B"])
        let onlyA = try await call(service, .GET, "/reports/latency?tenant_id=A", key: keys.adminB)
        #expect(onlyA["rows"]?[0]?["tenant_id"] == "A")
        guard case .array(let onlyARows)? = onlyA["rows"] else { Issue.record("no rows"); return }
        #expect(onlyARows.count == 1)

        // The days: today and the 29 before it are the last 30; the day before them is not.
        for (daysAgo, user) in [(29, "edge-in"), (30, "edge-out")] {
            _ = try service.scalar(
                """
                WITH inserted AS (
                    INSERT INTO llm_calls (tenant_id, user_id, session_id, task_id, model, prompt_tokens, completion_tokens, latency_ms, outcome, created_at)
                    VALUES ('A', \(user), 's', 't', 'm', 1, 1, 1, 'ok', current_date - \(daysAgo)::int + time '00:00:01') RETURNING 1)
                SELECT count(*) FROM inserted
                """)
        }
        let window = try await call(service, .GET, "/reports/usage?by=user&days=30", key: keys.tenantA)
        let windowUsers = Set((window["rows"]?.arrayItems ?? []).compactMap { $0["user_id"]?.stringValue })
        #expect(windowUsers.contains("edge-in") && !windowUsers.contains("edge-out"), "\(windowUsers)")
        let wider = try await call(service, .GET, "/reports/usage?by=user&days=31", key: keys.tenantA)
        #expect((wider["rows"]?.arrayItems ?? []).contains { $0["user_id"] == "edge-out" })

        // Bad input: 422, and nothing read.
        for bad in ["/reports/usage?days=0", "/reports/usage?days=367", "/reports/usage?days=x", "/reports/usage?by=week",
                    "/reports/usage?limit=0", "/reports/latency?days=-1", "/reports/usage?user_id=%00", "/reports/approvals?tenant_id="] {
            let reply = try await call(service, .GET, bad, key: keys.tenantA)
            #expect(reply.status == 422, "\(bad): \(reply.status)")
        }
        #expect(try await call(service, .GET, "/reports/usage").status == 401)
    }

    func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(25))
        }
        return false
    }

    /// The repository's console/ folder.
    static var consoleDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("console")
    }
}
