import Foundation
import Postgres
@testable import Store
import Testing
import TestSupport

/// Recall's ranking (issue 19): folding, BM25 over the user's memories, synonyms, near
/// spellings, the minimum evidence, and the statistics the ranking reads.
@Suite("memory ranking")
struct MemoryRankingTests {
    /// A migrated database: the service's pool (its role, under row-level security) and an
    /// owner's pool for what operators do with SQL.
    static func stores() async throws -> (MemoryStore, service: PostgresPool, owner: PostgresPool) {
        let url = try await TestDatabase.migrated()
        let service = PostgresPool(configuration: .init(conninfo: url, size: 2, connectionSettings: .init(role: "agentd_service")))
        let owner = PostgresPool(configuration: .init(conninfo: url, size: 1))
        return (MemoryStore(pool: service), service, owner)
    }

    static func close(_ pools: PostgresPool...) async {
        for pool in pools { await pool.shutdown() }
    }

    /// Whether memory_terms and memory_users equal a recount of memories (the owner must read every tenant).
    static func consistent(_ owner: PostgresPool) async throws -> Bool {
        let row = try await owner.query("""
            SELECT
              (SELECT count(*) FROM (
                 SELECT tenant_id, user_id, lexeme, memories FROM memory_terms
                 EXCEPT
                 SELECT m.tenant_id, m.user_id, l, count(*)::int FROM memories m, unnest(tsvector_to_array(m.search)) AS l
                 GROUP BY 1, 2, 3
              ) AS extra) AS extra_terms,
              (SELECT count(*) FROM (
                 SELECT m.tenant_id, m.user_id, l, count(*)::int FROM memories m, unnest(tsvector_to_array(m.search)) AS l
                 GROUP BY 1, 2, 3
                 EXCEPT
                 SELECT tenant_id, user_id, lexeme, memories FROM memory_terms
              ) AS missing) AS missing_terms,
              (SELECT count(*) FROM (
                 SELECT tenant_id, user_id, memories::bigint, lexemes FROM memory_users
                 EXCEPT
                 SELECT tenant_id, user_id, count(*), sum(length(search)) FROM memories GROUP BY 1, 2
              ) AS u1) + (SELECT count(*) FROM (
                 SELECT tenant_id, user_id, count(*), sum(length(search)) FROM memories GROUP BY 1, 2
                 EXCEPT
                 SELECT tenant_id, user_id, memories::bigint, lexemes FROM memory_users
              ) AS u2) AS users_off
            """).rows[0]
        return try row.decode("extra_terms", as: Int.self) == 0 && row.decode("missing_terms", as: Int.self) == 0
            && row.decode("users_off", as: Int.self) == 0
    }

    /// Filler memories that share nothing in particular with the tests' queries, so that the
    /// user has more than the recall limit and the minimum evidence applies.
    static let filler = [
        "周三下午有部门例会", "Gym membership renews in March", "喜欢听爵士乐", "Keys are with the neighbour on the 3rd floor",
        "每月5号交物业费", "Favourite colour is green", "老家在湖南长沙", "Uses a standing desk at work", "周末常去爬山",
        "Learning to play chess on weekends", "不喜欢太甜的蛋糕", "Prefers paper books to e-books",
    ]

    static func write(_ store: MemoryStore, _ user: String, _ texts: [String], tenant: String = "default") async throws {
        for text in texts { _ = try await store.write(tenantID: tenant, userID: user, text: text) }
    }

    static func recall(_ store: MemoryStore, _ user: String, _ query: String, tenant: String = "default") async throws -> [String] {
        try await store.recall(tenantID: tenant, userID: user, query: query, limit: 5).map(\.text)
    }

    @Test("traditional and simplified Chinese, full-width and half-width, upper and lower case find each other")
    func folding() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        try await Self.write(store, "u", Self.filler + ["出差预算每晚不超过800元", "我的會員卡號是ＶＩＰ１２Ａ", "Has an IPHONE 15 for work"])
        #expect(try await Self.recall(store, "u", "出差預算是多少").first == "出差预算每晚不超过800元")
        #expect(try await Self.recall(store, "u", "会员卡号").first == "我的會員卡號是ＶＩＰ１２Ａ")
        #expect(try await Self.recall(store, "u", "VIP12A 是哪张卡").first == "我的會員卡號是ＶＩＰ１２Ａ")
        #expect(try await Self.recall(store, "u", "which iPhone do I have").first == "Has an IPHONE 15 for work")
    }

    @Test("a shipped synonym group works in both directions and across languages; a tenant's own group serves that tenant only")
    func synonyms() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        try await Self.write(store, "u", Self.filler + ["每月按揭还款8000元", "Allergic to dairy", "我喜欢靠窗的座位"])
        #expect(try await Self.recall(store, "u", "房贷每个月还多少").first == "每月按揭还款8000元")
        #expect(try await Self.recall(store, "u", "can I have milk in my coffee").first == "Allergic to dairy")
        #expect(try await Self.recall(store, "u", "what seat do I like on the plane").first == "我喜欢靠窗的座位")

        try await Self.write(store, "u", Self.filler + ["座驾是一辆白色特斯拉"], tenant: "acme")
        try await Self.write(store, "u", Self.filler + ["座驾是一辆白色特斯拉"], tenant: "other")
        try await owner.query("INSERT INTO memory_synonyms (tenant_id, group_name, term) VALUES ('acme', 'ride', '座驾'), ('acme', 'ride', 'vehicle')")
        #expect(try await Self.recall(store, "u", "what vehicle do I drive", tenant: "acme").first == "座驾是一辆白色特斯拉")
        #expect(try await Self.recall(store, "u", "what vehicle do I drive", tenant: "other").contains("座驾是一辆白色特斯拉") == false)
    }

    @Test("a rare word outranks common ones, the newer of two about one subject comes first, nothing is recalled without evidence, and a user with few memories gets all")
    func rankingAndEvidence() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        try await Self.write(
            store, "u",
            Self.filler + [
                "Booked the hotel near the station for the conference", "The hotel breakfast was good", "Hotel points expire in June",
                "Passport number E12345678, expires 2031", "My manager is Aisha; Aisha runs the Berlin team",
            ])
        try await Self.write(store, "u", ["My new manager is Dan"])
        #expect(try await Self.recall(store, "u", "what is my passport number for the hotel booking").first == "Passport number E12345678, expires 2031")
        // Both name the manager; the newer one says less else, so its one match weighs more.
        #expect(try await Self.recall(store, "u", "who is my manager").first == "My new manager is Dan")
        #expect(try await Self.recall(store, "u", "帮我查一下明天的天气怎么样") == [])
        #expect(try await Self.recall(store, "u", "what should I eat tonight") == [])

        try await Self.write(store, "few", ["I am vegetarian", "Prefers window seats"])
        #expect(Set(try await Self.recall(store, "few", "book a restaurant for Friday")) == ["I am vegetarian", "Prefers window seats"])
        #expect(try await store.search(tenantID: "default", userID: "few", query: "book a restaurant for Friday", limit: 5).isEmpty)
    }

    @Test("a misspelt or differently inflected English word finds the word the user wrote")
    func nearSpellings() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        try await Self.write(store, "u", Self.filler + ["I am vegetarian", "Dentist appointment every six months", "Severe allergy to penicillin"])
        #expect(try await Self.recall(store, "u", "any vegitarian options?").first == "I am vegetarian")
        #expect(try await Self.recall(store, "u", "when do I see the dentst").first == "Dentist appointment every six months")
        #expect(try await Self.recall(store, "u", "am I allergic to anything").first == "Severe allergy to penicillin")
    }

    @Test("the term statistics stay exact under concurrent writes, rewrites, replacements and deletes of one user")
    func concurrentStatistics() async throws {
        let url = try await TestDatabase.migrated()
        let service = PostgresPool(configuration: .init(conninfo: url, size: 8, acquireTimeout: .seconds(60), connectionSettings: .init(role: "agentd_service")))
        let owner = PostgresPool(configuration: .init(conninfo: url, size: 1))
        defer { Task { await Self.close(service, owner) } }
        try await owner.query("SET agentd.scope = 'system'")
        let store = MemoryStore(pool: service)
        try await Self.write(store, "u", Self.filler)
        // Every memory shares words with the others, so every statement touches the same rows.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for round in 0..<15 {
                        let written = try await store.write(tenantID: "default", userID: "u", text: "共享的词 shared words \(worker) \(round)")
                        switch round % 3 {
                        case 0: _ = try await store.delete(tenantID: "default", userID: "u", memoryID: written.id)
                        case 1: _ = try await store.rewrite(tenantID: "default", userID: "u", memoryID: written.id, text: "共享的词 rewritten \(worker) \(round)")
                        default:
                            _ = try await store.write(tenantID: "default", userID: "u", text: "共享的词 shared words now \(worker) \(round)", replaces: written.id)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await Self.consistent(owner))
    }

    @Test("the term statistics follow inserts, updates, deletes and truncation, by the service and by operators' SQL")
    func statistics() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        // The owner is under row-level security too (FORCE): it reads every tenant as the dispatcher does.
        try await owner.query("SET agentd.scope = 'system'")
        try await Self.write(store, "a", Self.filler)
        try await Self.write(store, "b", ["我喜欢靠窗的座位", "I am vegetarian"], tenant: "t2")
        #expect(try await Self.consistent(owner))
        let id = try await store.write(tenantID: "default", userID: "a", text: "Passport expires 2031")
        #expect(try await store.delete(tenantID: "default", userID: "a", memoryID: id.id))
        #expect(try await Self.consistent(owner))
        // Replaced memories stay in the statistics (they lead to their successors); a rewrite changes them.
        let older = try await store.write(tenantID: "default", userID: "a", text: "Locker code is 4411")
        let newer = try await store.write(tenantID: "default", userID: "a", text: "Locker code is now 9032", replaces: older.id)
        #expect(newer.replaced == older.id)
        _ = try await store.rewrite(tenantID: "default", userID: "a", memoryID: newer.id, text: "Locker code changed to 9033")
        #expect(try await Self.consistent(owner))
        // Operators' SQL: many rows in one statement, an update of the text, a delete of a user.
        try await owner.query("INSERT INTO memories (tenant_id, user_id, memory_info) SELECT 'default', 'a', '第' || g || '条备忘' FROM generate_series(1, 50) g")
        try await owner.query("UPDATE memories SET memory_info = memory_info || ' (edited)' WHERE user_id = 'a' AND memory_info LIKE 'Gym%'")
        try await owner.query("DELETE FROM memories WHERE user_id = 'b'")
        #expect(try await Self.consistent(owner))
        #expect(try await owner.query("SELECT count(*) AS n FROM memory_users WHERE user_id = 'b'").rows[0].decode("n", as: Int.self) == 0)
        try await owner.query("TRUNCATE memories")
        #expect(try await owner.query("SELECT (SELECT count(*) FROM memory_terms) + (SELECT count(*) FROM memory_users) AS n").rows[0].decode("n", as: Int.self) == 0)
    }

    @Test("the shipped synonym groups are those of sql/data/memory-synonyms.txt")
    func shippedSynonyms() async throws {
        let (_, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        let file = TestDatabase.sqlDirectory.appendingPathComponent("data/memory-synonyms.txt")
        var expected: Set<[String]> = []
        for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty, !text.hasPrefix("#") else { continue }
            var terms: [String] = []
            for term in text.split(separator: "|").map({ $0.trimmingCharacters(in: .whitespaces) }) where !term.isEmpty && !terms.contains(term) {
                terms.append(term)
            }
            if terms.count >= 2 { expected.insert(terms.sorted()) }
        }
        // Terms joined by a unit separator, which no term holds.
        let rows = try await owner.query("SELECT string_agg(term, E'\\x1f') AS terms FROM memory_synonyms WHERE tenant_id = '' GROUP BY group_name").rows
        let stored = Set(try rows.map { try $0.decode("terms", as: String.self).split(separator: "\u{1f}").map(String.init).sorted() })
        #expect(stored == expected)
        #expect(expected.count > 150)
    }

    @Test("words everybody writes weigh little; MEMORY_MIN_SHARE keeps a memory that leaves the query's subject unexplained out")
    func generalWordsAndUnexplainedSubjects() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        let memories = Self.filler + [
            "I think people like the new year party", "Dentist appointment in March", "我的护照号 E58213947，2029年5月到期",
            "Landlord's phone: 07931 442 108",
        ]
        try await Self.write(store, "u", memories)
        // think, people, like and year are each in one memory of the user's, as dentist is; the
        // language writes them everywhere.
        #expect(try await Self.recall(store, "u", "I think people like to know: when is my dentist appointment this year?").first
            == "Dentist appointment in March")
        // The subject (驾照, school) is in no memory of the user's: what the query shares with one
        // (我的 … 到期, phone number) is most of what it says at the default share, not at 0.9.
        #expect(try await Self.recall(store, "u", "我的驾照什么时候到期？").first == "我的护照号 E58213947，2029年5月到期")
        var strict = MemoryStore.Ranking()
        strict.minimumShare = 0.9
        let strictStore = MemoryStore(pool: service, ranking: strict)
        func strictly(_ query: String) async throws -> [String] {
            try await strictStore.recall(tenantID: "default", userID: "u", query: query, limit: 5).map(\.text)
        }
        #expect(try await strictly("我的驾照什么时候到期？") == [])
        #expect(try await strictly("Can you give me the phone number for my kids' school?") == [])
        #expect(try await strictly("我的护照什么时候到期？").first == "我的护照号 E58213947，2029年5月到期")
        #expect(try await strictly("What's the landlord's phone number?").first == "Landlord's phone: 07931 442 108")
        // Whatever the share, single characters alone are no evidence.
        var loose = MemoryStore.Ranking()
        loose.minimumShare = 0
        let looseStore = MemoryStore(pool: service, ranking: loose)
        #expect(try await looseStore.recall(tenantID: "default", userID: "u", query: "帮我查一下明天的天气怎么样", limit: 5).isEmpty)
    }

    @Test("explainRecall shows what the ranking read: the same evident memories, in the same order, as search; which words the user holds; the unexplained weight")
    func explanation() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        try await Self.write(store, "u", Self.filler + ["Dentist appointment in March", "我的护照号 E58213947，2029年5月到期", "Landlord's phone: 07931 442 108"])
        let query = "我的驾照什么时候到期？ and when is my dentist appointment"
        let text = try #require(try await store.explainRecall(tenantID: "default", userID: "u", query: query))
        let explanation = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let words = try #require(explanation["words"] as? [[String: Any]])
        func word(_ lexeme: String) -> [String: Any]? { words.first { $0["lexeme"] as? String == lexeme } }
        #expect(word("dentist")?["held"] as? Bool == true)
        #expect(word("驾照")?["held"] as? Bool == false)
        #expect(word("驾照")?["word"] as? Bool == true)
        // 照什 crosses two words: not a word of the language, so it leaves nothing unexplained.
        #expect(word("照什")?["word"] as? Bool == false)
        #expect((explanation["unexplained"] as? Double ?? 0) > 0)
        #expect(explanation["memories"] as? Int == Self.filler.count + 3)
        let candidates = try #require(explanation["candidates"] as? [[String: Any]])
        let evident = candidates.filter { $0["evident"] as? Bool == true }.compactMap { $0["memory_id"] as? String }
        let hits = try await store.search(tenantID: "default", userID: "u", query: query, limit: 10)
        let searched = hits.map { $0.id.uuidString.lowercased() }
        #expect(!searched.isEmpty)
        #expect(evident == searched)
        let dentistID = try #require(hits.first { $0.text == "Dentist appointment in March" }?.id.uuidString.lowercased())
        let dentist = try #require(candidates.first { $0["memory_id"] as? String == dentistID })
        #expect(Set(dentist["matched"] as? [String] ?? []) == ["appoint", "dentist"])
        // The scores are recall's, and the coverage is the matched words' weight against it plus the unexplained.
        for hit in hits {
            let candidate = candidates.first { $0["memory_id"] as? String == hit.id.uuidString.lowercased() }
            #expect(abs((candidate?["score"] as? Double ?? -1) - (hit.score ?? -2)) < 1e-9)
        }
        let terms = try #require(explanation["terms"] as? [[String: Any]])
        let matchedWeight = terms.filter { ["appoint", "dentist"].contains($0["lexeme"] as? String ?? "") }.compactMap { $0["weight"] as? Double }.reduce(0, +)
        let unexplained = try #require(explanation["unexplained"] as? Double)
        #expect(abs((dentist["coverage"] as? Double ?? -1) - matchedWeight / (matchedWeight + unexplained)) < 1e-9)
        #expect(try await store.explainRecall(tenantID: "default", userID: "nobody", query: query) == nil)
    }

    @Test("queries of tsquery syntax, quotes, backslashes, punctuation alone, emoji and one long word recall without an error")
    func hostileQueries() async throws {
        let (store, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        try await Self.write(store, "u", Self.filler + ["O'Brien's key is under the mat", #"the path is C:\agentd\logs"#, "喜欢 🍜 拉面"])
        let queries = [
            "O'Brien's key", #"C:\agentd\logs"#, "a & b | !c <-> d:* (e)", "'''", #"\"#, "！？。，、", "🍜🍜🍜", "", "   ",
            String(repeating: "x", count: 5_000), String(repeating: "拉面", count: 2_000), "SELECT * FROM memories; --",
        ]
        for query in queries {
            _ = try await store.search(tenantID: "default", userID: "u", query: query, limit: 5)
            _ = try await Self.recall(store, "u", query)
        }
        #expect(try await Self.recall(store, "u", "where is O'Brien's key?").first == "O'Brien's key is under the mat")
        #expect(try await Self.recall(store, "u", #"which folder: C:\agentd\logs"#).first == #"the path is C:\agentd\logs"#)
    }

    @Test("how common each term is comes from sql/data/wordfreq/general-terms.tsv; a piece across words is estimated from its characters")
    func generalTerms() async throws {
        let (_, service, owner) = try await Self.stores()
        defer { Task { await Self.close(service, owner) } }
        let file = TestDatabase.sqlDirectory.appendingPathComponent("data/wordfreq/general-terms.tsv")
        let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n")
        let chinese = lines.filter { $0.hasPrefix("zh\t") }.count
        let stored = try await service.query("""
            SELECT count(*) FILTER (WHERE lexeme ~ '^[\\u3400-\\u9fff]+$') AS chinese, count(*) AS every_term,
                   agentd_general_zipf('的') AS de, agentd_general_zipf('护照') AS passport_zh, agentd_general_zipf('passport') AS passport,
                   agentd_general_zipf('码是') AS across, agentd_general_zipf('码') AS ma, agentd_general_zipf('是') AS shi,
                   agentd_general_zipf('e58213947') AS unknown
            FROM memory_general_terms
            """).rows[0]
        #expect(try stored.decode("chinese", as: Int.self) == chinese)
        #expect(try stored.decode("every_term", as: Int.self) > chinese + 5_000)
        #expect(try stored.decode("de", as: Double.self) > 7)
        #expect(try (3.5...5).contains(stored.decode("passport_zh", as: Double.self)))
        #expect(try (3.5...5).contains(stored.decode("passport", as: Double.self)))
        let across = try stored.decode("across", as: Double.self)
        #expect(try abs(across - ((stored.decode("ma", as: Double.self) + stored.decode("shi", as: Double.self)) / 2 - 1)) < 0.01)
        #expect(try stored.decode("unknown", as: Double?.self) == nil)
    }
}
