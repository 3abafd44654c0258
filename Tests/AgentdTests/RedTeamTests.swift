import AgentKit
import Foundation
import NIOHTTP1
import Postgres
import Store
import Synchronization
import Testing
import TestSupport

/// The defects a red-team pass found against a running agentd (issue 12), one test each.
@Suite("red-team findings")
struct RedTeamTests {
    /// "café" with a precomposed é (NFC) and with e + U+0301 (NFD): canonically equivalent, so
    /// Swift's == calls them equal; different bytes, so PostgreSQL keeps them apart.
    static let composed = "caf\u{E9}"
    static let decomposed = "cafe\u{301}"

    static func createKey(
        _ service: ServiceHarness, tenant: String, user: String? = nil, rate: Double? = nil, maxInFlight: Int? = nil
    ) async throws -> String {
        let pool = PostgresPool(configuration: .init(conninfo: service.databaseURL, size: 1, connectionSettings: .init(role: "agentd_service")))
        defer { Task { await pool.shutdown() } }
        return try await KeyStore(pool: pool).create(
            tenantID: tenant, userID: user, isAdmin: false, name: nil, requestsPerSecond: rate, maxTasksInFlight: maxInFlight
        ).key
    }

    func call(_ service: ServiceHarness, _ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil, key: String?) async throws
        -> ServiceHarness.Reply
    {
        try await service.send(method, path, body: body?.jsonText, authorization: key.map { "Bearer \($0)" })
    }

    static let asciiAlphanumerics = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

    /// A path segment, every byte of it percent-encoded but ASCII letters and digits.
    func segment(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: Self.asciiAlphanumerics) ?? id
    }

    func status(_ service: ServiceHarness, _ user: String, _ session: String, _ task: String, key: String? = nil) async throws
        -> ServiceHarness.Reply
    {
        try await call(service, .GET, "/agent/status/\(segment(user))/\(segment(session))/\(segment(task))", key: key)
    }

    func waitUntil(
        _ service: ServiceHarness, _ user: String, _ session: String, _ task: String, key: String? = nil, is wanted: Set<String>
    ) async throws -> ServiceHarness.Reply {
        var reply = try await status(service, user, session, task, key: key)
        for _ in 0..<1500 {
            if let state = reply["status"]?.stringValue, wanted.contains(state) { break }
            try await Task.sleep(for: .milliseconds(20))
            reply = try await status(service, user, session, task, key: key)
        }
        return reply
    }

    /// The statuses of `count` requests sent all at once.
    static func statuses(of count: Int, _ request: @escaping @Sendable (Int) async throws -> ServiceHarness.Reply) async throws -> [Int] {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<count { group.addTask { try await request(index).status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    // MARK: 1, 2: look-alike ids

    @Test("a user key for café (NFC) cannot read, write or delete the data of café (NFD)")
    func lookAlikeUserKey() async throws {
        #expect(Self.composed == Self.decomposed)  // the trap: Swift calls them equal
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let tenantKey = try await Self.createKey(service, tenant: "A")
        let composedKey = try await Self.createKey(service, tenant: "A", user: Self.composed)
        let victim = Self.decomposed
        #expect(try await call(service, .POST, "/agent/invoke", ["user_id": .string(victim), "session_id": "s1", "task_id": "t1", "query": "secret"], key: tenantKey).status == 200)
        #expect(try await call(service, .POST, "/agent/write/longterm", ["user_id": .string(victim), "memory_info": "victim's memory"], key: tenantKey).status == 200)
        #expect(try await waitUntil(service, victim, "s1", "t1", key: tenantKey, is: ["completed"])["status"] == "completed")
        let before = try service.scalar("SELECT (SELECT count(*) FROM sessions) * 1000 + (SELECT count(*) FROM tasks) * 100 + (SELECT count(*) FROM memories)")

        let user = segment(victim)
        let attacks: [(HTTPMethod, String, JSONValue?)] = [
            (.GET, "/agent/status/\(user)/s1/t1", nil), (.GET, "/agent/sessionids/\(user)", nil), (.GET, "/agent/tasks/\(user)/s1", nil),
            (.GET, "/agent/active/sessionid/\(user)", nil), (.GET, "/agent/memory/\(user)", nil),
            (.POST, "/agent/invoke", ["user_id": .string(victim), "session_id": "s1", "task_id": "t2", "query": "planted"]),
            (.POST, "/agent/resume", ["user_id": .string(victim), "session_id": "s1", "task_id": "t1", "response_type": "accept"]),
            (.POST, "/agent/write/longterm", ["user_id": .string(victim), "memory_info": "planted"]),
            (.DELETE, "/agent/session/\(user)/s1/t1", nil), (.DELETE, "/agent/task/\(user)/s1/t1", nil), (.DELETE, "/agent/session/\(user)/s1", nil),
        ]
        for (method, path, body) in attacks {
            let reply = try await call(service, method, path, body, key: composedKey)
            #expect(reply.status == 403, "\(method) \(path): \(reply.status) \(reply.body)")
        }
        #expect(try service.scalar("SELECT (SELECT count(*) FROM sessions) * 1000 + (SELECT count(*) FROM tasks) * 100 + (SELECT count(*) FROM memories)") == before)
        // Its own user, in its own form, works.
        #expect(try await call(service, .GET, "/agent/sessionids/\(segment(Self.composed))", key: composedKey).body == ["session_ids": []])
    }

    @Test("concurrent status reads of look-alike users and tenants each get their own task")
    func lookAlikeBatchedReads() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        // Not a dictionary: as String keys the two forms are one key.
        let tenants = [
            (Self.composed, try await Self.createKey(service, tenant: Self.composed)),
            (Self.decomposed, try await Self.createKey(service, tenant: Self.decomposed)),
        ]
        // Two look-alike users in one tenant, and one user in each of two look-alike tenants.
        let tenantKey = tenants[0].1
        for user in [Self.composed, Self.decomposed] {
            let body: JSONValue = ["user_id": .string(user), "session_id": "s", "task_id": "t", "query": .string("user \(user.unicodeScalars.count)")]
            #expect(try await call(service, .POST, "/agent/invoke", body, key: tenantKey).status == 200)
        }
        for (tenant, key) in tenants {
            let body: JSONValue = ["user_id": "u", "session_id": "s", "task_id": "t", "query": .string("tenant \(tenant.unicodeScalars.count)")]
            #expect(try await call(service, .POST, "/agent/invoke", body, key: key).status == 200)
        }
        for user in [Self.composed, Self.decomposed] { _ = try await waitUntil(service, user, "s", "t", key: tenantKey, is: ["completed"]) }

        let replies = try await withThrowingTaskGroup(of: (String, JSONValue?).self) { group in
            for index in 0..<80 {
                let (variant, key) = tenants[index % 2]
                group.addTask {
                    if index % 4 < 2 {
                        return ("user \(variant.unicodeScalars.count)", try await status(service, variant, "s", "t", key: tenantKey)["last_query"])
                    }
                    return ("tenant \(variant.unicodeScalars.count)", try await status(service, "u", "s", "t", key: key)["last_query"])
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(replies.count == 80)
        for (expected, got) in replies { #expect(got?.stringValue == expected) }
    }

    @Test("a pooled connection's tenant setting changes between look-alike tenants")
    func lookAlikeSessionSetting() async throws {
        let pool = PostgresPool(configuration: .init(conninfo: try await TestDatabase.migrated(), size: 1))
        defer { Task { await pool.shutdown() } }
        for tenant in [Self.composed, Self.decomposed, Self.composed] {
            let seen = try await pool.withSessionSettings([(name: "agentd.tenant_id", value: tenant)]) { connection in
                try connection.query("SELECT current_setting('agentd.tenant_id') AS tenant").first?.decode("tenant", as: String.self)
            }
            #expect(seen.map { Array($0.utf8) } == Array(tenant.utf8))
        }
    }

    // MARK: 3: quadratic tokenising

    @Test("tokenising is linear: 300,000 CJK characters in a statement that may take 20 s, the same pieces as a plain loop makes")
    func searchTextIsLinear() async throws {
        let connection = try PostgresConnection.connect(try await TestDatabase.migrated())
        defer { connection.close() }
        // Quadratic took 6.4 s for 40,000 characters, so minutes for these; linear takes under a second.
        try connection.execute("SET statement_timeout = '20s'")
        let long = String(repeating: "靠窗的座位我喜欢", count: 37_500)
        let length = try connection.query("SELECT length(agentd_search_text(\(long))) AS n").first?.decode("n", as: Int.self)
        // One space for the run, then " x" for each character and " xy" for each pair.
        #expect(length == 1 + 2 * 300_000 + 3 * (300_000 - 1))
        // The pieces (sql/019): other text kept with full-width folded, each CJK run replaced by a
        // space, then each run's characters (traditional as simplified) and overlapping pairs, in order.
        let mixed = "我喜欢靠窗的座位 hotels 好 a 中文, ＶＩＰ８ booking 東京タワー 한국어 x"
        let expected = "  hotels   a  , VIP8 booking     x"
            + " 我 我喜 喜 喜欢 欢 欢靠 靠 靠窗 窗 窗的 的 的座 座 座位 位 好 中 中文 文 东 东京 京 京タ タ タワ ワ ワー ー 한 한국 국 국어 어"
        #expect(try connection.query("SELECT agentd_search_text(\(mixed)) AS t").first?.decode("t", as: String.self) == expected)
        #expect(try connection.query("SELECT agentd_search_text('') AS t").first?.decode("t", as: String.self) == "")

        // The same output as a plain loop over the characters, on generated text: runs of every
        // length, adjacent scripts, single characters, full-width and traditional characters.
        try connection.execute(Self.loopTokeniser)
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("靠窗的座位東京タワー한국어好會員 ab,.-  xyz1ＡＢ１　！") + ["\u{3400}", "\u{9FFF}", "\u{F900}", "\u{D7AF}", "é"]
        for _ in 0..<300 {
            let text = String((0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator) ?? " " })
            let row = try connection.query("SELECT agentd_search_text(\(text)) AS linear, pg_temp.loop_search_text(\(text)) AS loop").first
            #expect(try row?.decode("linear", as: String.self) == row?.decode("loop", as: String.self), "\(text)")
        }
    }

    /// sql/019's tokenising written as a loop, one character at a time (quadratic, fine for short
    /// texts), with full-width folded by code point rather than by a table.
    static let loopTokeniser = """
        CREATE FUNCTION pg_temp.loop_search_text(input text) RETURNS text LANGUAGE plpgsql AS $$
        DECLARE
            rest text := '';
            pieces text := '';
            run text[] := '{}';
            ch text;
            code int;
        BEGIN
            FOR i IN 1..length(input) + 1 LOOP
                ch := substr(input, i, 1);
                IF ch <> '' THEN
                    code := ascii(ch);
                    IF code BETWEEN 65281 AND 65374 THEN ch := chr(code - 65248); ELSIF code = 12288 THEN ch := ' '; END IF;
                END IF;
                IF ch <> '' AND ch ~ '^[\\u3400-\\u4dbf\\u4e00-\\u9fff\\uf900-\\ufaff\\u3040-\\u30ff\\uac00-\\ud7af]$' THEN
                    run := run || coalesce(agentd_simplified() ->> ch, ch);
                ELSE
                    IF cardinality(run) > 0 THEN
                        rest := rest || ' ';
                        FOR j IN 1..cardinality(run) LOOP
                            pieces := pieces || ' ' || run[j];
                            IF j < cardinality(run) THEN pieces := pieces || ' ' || run[j] || run[j + 1]; END IF;
                        END LOOP;
                        run := '{}';
                    END IF;
                    rest := rest || ch;
                END IF;
            END LOOP;
            RETURN rest || pieces;
        END
        $$;
        """

    @Test("a 1 MiB Chinese query starts and finishes its task; recall reads its first 1,000 characters")
    func hugeChineseQuery() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        // More memories than the recall limit, so that recall searches rather than takes them all.
        for index in 0..<8 {
            #expect(try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": .string("我喜欢靠窗的座位 \(index)")]).status == 200)
        }
        let query = String(repeating: "靠窗的座位我喜欢", count: 43_000)  // 344,000 characters, 1,032,000 bytes
        #expect(try await service.invoke("u1", "s1", "t1", query).status == 200)
        let settled = try await service.settle("u1", "s1", "t1", timeout: .seconds(60))
        #expect(settled["status"] == "completed")
        // The model saw the memories that the query's opening recalled.
        #expect(service.model.requests.first?.messages.first?.content.contains("我喜欢靠窗的座位") == true)

        // A word past the first 1,000 characters finds nothing; the same word first does.
        #expect(try await service.post("/agent/write/longterm", ["user_id": "u1", "memory_info": "zebra crossings scare me"]).status == 200)
        let filler = String(repeating: "の", count: 1_000)
        let late = try await service.get("/agent/memory/u1?q=" + segment(filler + " zebra"))
        let early = try await service.get("/agent/memory/u1?q=" + segment("zebra " + filler))
        #expect(late["memories"] == [])
        #expect(early["memories"]?.jsonText.contains("zebra") == true)
    }

    // MARK: 4, 5, 6: limits

    @Test("key limits: out-of-range rates are refused at creation, and no stored rate can crash the limiter")
    func rateLimits() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        for (rate, inFlight) in [(1e-300, nil), (Double.nan, nil), (Double.infinity, nil), (0, nil), (-1, nil), (1e9, nil), (nil, 0), (nil, -3), (nil, Int(Int32.max))] as [(Double?, Int?)] {
            await #expect(throws: KeyLimits.Invalid.self, "rate \(String(describing: rate)) in flight \(String(describing: inFlight))") {
                _ = try await Self.createKey(service, tenant: "A", rate: rate, maxInFlight: inFlight)
            }
        }
        #expect(try service.scalar("SELECT count(*) FROM api_keys") == 0)

        // Rows written before sql/007's constraints, or by hand: the service still answers.
        let tiny = try await Self.createKey(service, tenant: "A", rate: 1)
        let notANumber = try await Self.createKey(service, tenant: "A", rate: 1)
        let connection = try PostgresConnection.connect(service.databaseURL)
        defer { connection.close() }
        try connection.execute("ALTER TABLE api_keys DROP CONSTRAINT api_keys_rate_range")
        for (key, value) in [(tiny, "1e-300"), (notANumber, "NaN")] {
            let keyID = String(key.split(separator: "_")[1])
            try connection.query("UPDATE api_keys SET requests_per_second = \(value)::float8 WHERE key_id = \(keyID)")
        }
        for key in [tiny, notANumber] {
            var statuses: [Int] = []
            for _ in 0..<3 {
                let reply = try await call(service, .GET, "/agent/sessionids/u1", key: key)
                statuses.append(reply.status)
                if reply.status == 429 { #expect((1...86_400).contains(Int(reply.headers.first(name: "Retry-After") ?? "") ?? 0)) }
            }
            #expect(statuses == [200, 429, 429])
        }
        #expect(try await service.get("/health").status == 200)
    }

    @Test("max-in-flight holds under a burst of invokes and of resumes; refused invokes create no session")
    func inFlightIsAtomic() async throws {
        // Tasks stay running until the test opens their gate: "slow" ones at their first model
        // call, approved ones at the call after their tool ran.
        let slowGate = Gate(), approvedGate = Gate()
        let service = try await ServiceHarness.start(model: { request in
            guard let last = request.messages.last else { return .text("empty") }
            if last.type == .tool {
                await approvedGate.passed()
                return .text("final")
            }
            if last.content.hasPrefix("slow") {
                await slowGate.passed()
                return .text("slow")
            }
            return .toolCalls([ToolCall(id: "call_hotel", name: "book_hotel", args: ["hotel_name": "如家酒店"])])
        })
        defer { slowGate.open(); approvedGate.open() }
        defer { Task { await service.stop() } }
        let limited = try await Self.createKey(service, tenant: "A", maxInFlight: 3)
        let unlimited = try await Self.createKey(service, tenant: "A")

        let invokes = try await Self.statuses(of: 24) { index in
            try await call(service, .POST, "/agent/invoke", ["user_id": "u1", "session_id": .string("burst\(index)"), "task_id": "t", "query": "slow"], key: limited)
        }
        #expect(invokes.filter { $0 == 200 }.count == 3, "\(invokes)")
        #expect(invokes.filter { $0 == 429 }.count == 21)
        // Point 6: a refused invoke leaves nothing behind, not even its session.
        #expect(try service.scalar("SELECT count(*) FROM sessions WHERE session_id LIKE 'burst%'") == 3)
        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE session_id LIKE 'burst%'") == 3)
        slowGate.open()

        // Nine tasks wait for approval (submitted with the unlimited key)...
        for index in 0..<9 {
            #expect(try await call(service, .POST, "/agent/invoke", ["user_id": "u2", "session_id": .string("r\(index)"), "task_id": "t", "query": "book"], key: unlimited).status == 200)
        }
        for index in 0..<9 { _ = try await waitUntil(service, "u2", "r\(index)", "t", key: unlimited, is: ["interrupted"]) }
        for index in 0..<24 { _ = try await waitUntil(service, "u1", "burst\(index)", "t", key: limited, is: ["completed", "not_found"]) }
        // ...and the limited key resumes all nine at once: three may run.
        let resumes = try await Self.statuses(of: 9) { index in
            try await call(service, .POST, "/agent/resume", ["user_id": "u2", "session_id": .string("r\(index)"), "task_id": "t", "response_type": "accept"], key: limited)
        }
        #expect(resumes.filter { $0 == 200 }.count == 3, "\(resumes)")
        #expect(resumes.filter { $0 == 429 }.count == 6)
        #expect(try service.scalar("SELECT count(*) FROM tasks WHERE user_id = 'u2' AND state = 'interrupted'") == 6)
        #expect(try service.scalar("SELECT count(*) FROM interrupts WHERE decision IS NOT NULL") == 3)
    }

    @Test("a 409 invoke leaves the session's updated_at, and so the active session, alone")
    func conflictChangesNothing() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u1", "s1", "t1", "first").status == 200)
        _ = try await service.settle("u1", "s1", "t1")
        #expect(try await service.invoke("u1", "s2", "t1", "second").status == 200)
        _ = try await service.settle("u1", "s2", "t1")
        #expect(try await service.get("/agent/active/sessionid/u1")["active_session_id"] == "s2")
        let before = try service.rows("SELECT session_id, updated_at::text AS at FROM sessions ORDER BY session_id").map { try $0.decode("at", as: String.self) }
        #expect(try await service.invoke("u1", "s1", "t1", "another query").status == 409)
        // A duplicate (same query) is accepted and changes nothing either.
        #expect(try await service.invoke("u1", "s1", "t1", "first").status == 200)
        #expect(try await service.get("/agent/active/sessionid/u1")["active_session_id"] == "s2")
        let after = try service.rows("SELECT session_id, updated_at::text AS at FROM sessions ORDER BY session_id").map { try $0.decode("at", as: String.self) }
        #expect(after == before)
    }

    // MARK: 7, 8: ids and bodies

    @Test("ids are limited by Unicode scalars, not graphemes, and may not hold format characters, on every route")
    func idLimits() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let accents = "e" + String(repeating: "\u{301}", count: 3_000)  // one grapheme, 6 KB
        let huge = String(repeating: "\u{301}", count: 200_000)  // 400 KB
        #expect(accents.count == 1)
        let tooLong = [accents, huge, String(repeating: "字", count: 129)]
        let lookAlikeMakers = ["abc\u{202E}gpj", "u\u{200B}1", "a\u{2028}b", "\u{FEFF}u"]
        for id in tooLong + lookAlikeMakers {
            for body: JSONValue in [
                ["user_id": .string(id), "session_id": "s", "task_id": "t", "query": "q"],
                ["user_id": "u", "session_id": .string(id), "task_id": "t", "query": "q"],
                ["user_id": "u", "session_id": "s", "task_id": .string(id), "query": "q"],
            ] {
                let reply = try await service.post("/agent/invoke", body)
                #expect(reply.status == 422, "\(id.utf8.count) bytes: \(reply.status)")
            }
            #expect(try await service.post("/agent/write/longterm", ["user_id": .string(id), "memory_info": "m"]).status == 422)
        }
        let paths = { (id: String) in
            ["/agent/status/\(segment(id))/s/t", "/agent/sessionids/\(segment(id))", "/agent/tasks/u/\(segment(id))", "/agent/memory/\(segment(id))"]
        }
        for id in tooLong where id.utf8.count < 10_000 {
            for path in paths(id) {
                let reply = try await service.get(path)
                #expect(reply.status == 422, "\(path.prefix(30)): \(reply.status)")
                #expect(reply["detail"] != nil)
            }
        }
        // Ids stored before the format-character rule stay readable and deletable.
        for id in lookAlikeMakers {
            for path in paths(id) { #expect(try await service.get(path).status == 200, "\(path)") }
            #expect(try await service.delete("/agent/session/\(segment(id))/s").status == 404)
        }
        // 128 scalars of four bytes each is the longest id, and it works.
        let longest = String(repeating: "😀", count: 128)
        #expect(try await service.invoke(longest, longest, longest, "q").status == 200)
        #expect(try await service.post("/agent/write/longterm", ["user_id": .string(longest), "memory_info": "m"]).status == 200)
        #expect(try service.scalar("SELECT count(*) FROM tasks") == 1)
    }

    @Test("a body shorter than its Content-Length, then a close, is the client's error: 400")
    func truncatedBody() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let port = try #require(URL(string: service.baseURL)?.port)
        let connection = try #require(RawConnection(port: port))
        connection.send("POST /agent/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\": \"u")
        connection.shutdownWrite()
        let answer = await connection.readAll(within: .seconds(10))
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer.prefix(80))")
        #expect(answer.contains("\"detail\""))
        #expect(try await service.get("/health").status == 200)
    }

    @Test("HEAD is answered wherever GET is")
    func head() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        for path in ["/health", "/agent/sessionids/u1", "/openapi.yaml", "/agent/status/u1/s1/t1"] {
            let reply = try await service.send(.HEAD, path, contentType: nil)
            #expect(reply.status == 200, "\(path)")
        }
    }

    // MARK: 9: model output

    @Test("a model reply with NUL characters, a product beyond Double, or arguments beyond Double does not fail the task")
    func unstorableModelOutput() async throws {
        let service = try await ServiceHarness.start(model: { request in
            guard let last = request.messages.last else { return .text("empty") }
            if last.type == .tool { return .text("the tool said: \(last.content)\u{0}!") }
            return .toolCalls([ToolCall(id: "c\u{0}1", name: "multiply", args: ["a": 1e300, "b": 1e300, "note\u{0}": "x\u{0}y"])], content: "thinking\u{0}")
        })
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u1", "s1", "t1", "multiply").status == 200)
        let settled = try await service.settle("u1", "s1", "t1")
        #expect(settled["status"] == "completed", "\(settled.body)")
        let messages = settled.body.resultMessages
        #expect(!messages.map(\.jsonText).joined().contains("\\u0000"))
        #expect(messages.last?["content"]?.stringValue?.hasPrefix("the tool said: Error: the product") == true)
        #expect(messages.last?["content"]?.stringValue?.hasSuffix("!") == true)

        // The offline model multiplying two 400-digit numbers: the tool refuses, the task completes.
        let offline = try await ServiceHarness.start(configure: { $0.llmBaseURL = nil })
        defer { Task { await offline.stop() } }
        let digits = String(repeating: "9", count: 400)
        #expect(try await offline.invoke("u1", "s1", "t1", "\(digits) 乘以 \(digits)").status == 200)
        let answer = try await offline.settle("u1", "s1", "t1")
        #expect(answer["status"] == "completed", "\(answer.body)")
        #expect(answer.body.resultMessages.contains { $0["type"] == "tool" && $0["content"]?.stringValue?.hasPrefix("Error:") == true })
    }

    // MARK: 10: reports

    @Test("a reporting role scoped to tenant A sees only A's rows in the report views, whatever it sets")
    func reportViewsRespectTenants() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        let keyA = try await Self.createKey(service, tenant: "A")
        let keyB = try await Self.createKey(service, tenant: "B")
        for key in [keyA, keyB] {
            #expect(try await call(service, .POST, "/agent/invoke", ["user_id": "u1", "session_id": "s1", "task_id": "t1", "query": "book"], key: key).status == 200)
            _ = try await waitUntil(service, "u1", "s1", "t1", key: key, is: ["interrupted"])
            #expect(try await call(service, .POST, "/agent/resume", ["user_id": "u1", "session_id": "s1", "task_id": "t1", "response_type": "accept"], key: key).status == 200)
            _ = try await waitUntil(service, "u1", "s1", "t1", key: key, is: ["completed"])
        }
        // Roles belong to the cluster, which parallel tests share: a name of this test's own.
        let role = "report_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        let admin = try PostgresConnection.connect(service.databaseURL)
        defer {
            _ = try? admin.execute("DROP OWNED BY \(role); DROP ROLE IF EXISTS \(role)")
            admin.close()
        }
        try admin.execute("CREATE ROLE \(role) LOGIN IN ROLE agentd_reporting")
        try admin.query("INSERT INTO report_scopes (role_name, tenant_id) VALUES (\(String(role)), 'A')")
        // The superuser sees both tenants.
        for view in ["report_usage_daily", "report_approvals", "report_task_latency"] {
            #expect(try service.scalar(PostgresQuery(unsafeSQL: "SELECT count(DISTINCT tenant_id) FROM \(view)")) == 2)
        }
        var components = try #require(URLComponents(string: service.databaseURL))
        components.user = String(role)
        let reporter = try PostgresConnection.connect(try #require(components.string))
        defer { reporter.close() }
        for settings in ["", "SET agentd.scope = 'system'", "SET agentd.tenant_id = 'B'"] {
            if !settings.isEmpty { try reporter.execute(settings) }
            for view in ["report_usage_daily", "report_approvals", "report_task_latency", "tasks", "llm_calls"] {
                let tenants = try reporter.query(PostgresQuery(unsafeSQL: "SELECT DISTINCT tenant_id FROM \(view)")).rows.map { try $0.decode("tenant_id", as: String.self) }
                #expect(tenants == ["A"], "\(view) after \(settings): \(tenants)")
            }
        }
        #expect(throws: PostgresError.self) { try reporter.query("SELECT count(*) FROM messages") }
    }
}

/// Holds scripted model calls until the test opens it.
final class Gate: Sendable {
    private let isOpen = Mutex(false)

    func open() { isOpen.withLock { $0 = true } }

    func passed() async {
        while !isOpen.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(10)) }
    }
}
