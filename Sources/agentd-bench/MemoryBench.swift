import ArgumentParser
import AsyncHTTPClient
import BenchSupport
import Foundation
import Logging
import ModelClient
import Postgres
import Store
import TaskDispatch

/// Recall quality on the hand-written set in bench/memory, then recall latency at scale.
struct MemoryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "Long-term memory: recall@k and MRR on a labelled set, then p50/p99 recall latency over many memories."
    )

    @Option(help: "The labelled recall sets (JSON), comma-separated; empty skips the quality runs.")
    var recallSets = "bench/memory/recall-set.json,bench/memory/hard-set.json"
    @Option(help: "Memories recalled per query (k) for recall@k.") var k = 5
    @Option(help: "Memories asked for per query, for MRR at this depth.") var depth = 10
    @Option(help: "Users of the hard set whose queries the ranking was tuned on, comma-separated: printed apart from the others.")
    var tuningUsers = "h01,h02,h03"
    @Option(help: "Memories to load for the latency run (0 skips it).") var rows = 1_000_000
    @Option(help: "Users the memories are spread over.") var users = 10_000
    @Option(help: "Recall queries timed.") var queries = 1000
    @Flag(help: "Print every query whose expected memories were not all recalled.") var verbose = false
    @Option(help: "An OpenAI-compatible embeddings base URL (…/v1): the quality runs add recall's semantic pass.") var embeddingsURL: String?
    @Option(help: "The embeddings model.") var embeddingsModel = "wordllama-l2-supercat-256"
    @Option(help: "EMBEDDINGS_QUERY_PREFIX: put before each query (e5: \"query: \").") var queryPrefix = ""
    @Option(help: "EMBEDDINGS_DOCUMENT_PREFIX: put before each memory (e5: \"passage: \").") var documentPrefix = ""
    @Option(help: "EMBEDDINGS_MIN_SIMILARITY of the semantic pass.") var minSimilarity = 0.5
    @Option(help: "EMBEDDINGS_SUPPORT_SIMILARITY of the semantic pass.") var supportSimilarity = 0.0
    @Flag(help: "Write each update with replaces naming the memory it replaces, as a client that knows would.") var sayReplaces = false
    @Option(help: "Write every query's category, expected keys and hits with scores to PATH-<set>.tsv (for tuning the ranking).")
    var dump: String?
    @Option(help: "Ranking parameters to try instead of the defaults, e.g. minimumShare=0.6,commonZipf=7 (MemoryStore.Ranking's numbers).")
    var ranking: String?
    @Option(help: "Write what the ranking read for each query (its terms and words, each candidate's scores and matched terms; MemoryStore.explainRecall) to PATH-<set>.jsonl, a query a line.")
    var explain: String?

    func run() async throws {
        for path in recallSets.split(separator: ",").map({ String($0).trimmingCharacters(in: .whitespaces) }) where !path.isEmpty {
            try await quality(path)
        }
        if rows > 0 { try await latency() }
    }

    // MARK: Quality

    func quality(_ path: String) async throws {
        let set = try RecallSet.load(path)
        let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let url = try await BenchDatabase.fresh("bench_memory_" + name.replacingOccurrences(of: "-", with: "_"))
        let pool = PostgresPool(configuration: .init(conninfo: url, size: 4))
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { Task { try? await http.shutdown() } }
        let semantic = embeddingsURL.map { url in
            MemoryStore.Semantic(
                embedder: OpenAICompatibleEmbeddings(
                    baseURL: url, model: embeddingsModel, apiKey: nil, queryPrefix: queryPrefix, documentPrefix: documentPrefix, httpClient: http),
                minimumSimilarity: minSimilarity, supportingSimilarity: supportSimilarity)
        }
        let store = MemoryStore(pool: pool, semantic: semantic, ranking: try tried(ranking))
        let written = try await RecallEvaluation.write(set, store: store, tenantID: "bench", sayingReplaces: sayReplaces)
        if let semantic {
            var logger = Logger(label: "bench")
            logger.logLevel = .warning
            let clock = ContinuousClock()
            let started = clock.now
            let waiting = try await MemoryEmbedder(memories: store, embedder: semantic.embedder, notifier: nil, logger: logger).embedDue()
            print(String(format: "vectors of %d memories made in %.1f s (%d still waiting) by %@", written.keys.count, (clock.now - started).milliseconds / 1000, waiting, embeddingsModel))
        }
        let keys = written.keys
        // As autovacuum would within a minute of the writes: the planner's statistics.
        try await pool.query("ANALYZE")
        let score = try await RecallEvaluation.evaluate(set, keys: keys, store: store, tenantID: "bench", k: k, depth: depth)
        if let explain, !explain.isEmpty {
            let file = URL(fileURLWithPath: explain).deletingPathExtension().path + "-" + name + ".jsonl"
            try await explained(set, keys: keys, store: store).write(toFile: file, atomically: true, encoding: .utf8)
        }
        let tuning = Set(tuningUsers.split(separator: ",").map(String.init))
        let split = set.users.contains { tuning.contains($0.user_id) }
        var parts: [(String, RecallScore)] = []
        if split {
            // The same memories, scored again for each half: recall reads, it does not write.
            for (label, keep) in [("tuning users", true), ("held-out users", false)] {
                let half = RecallSet(users: set.users, queries: set.queries.filter { tuning.contains($0.user_id) == keep })
                parts.append((label, try await RecallEvaluation.evaluate(half, keys: keys, store: store, tenantID: "bench", k: k, depth: depth)))
            }
        }
        await pool.shutdown()
        print("\(path): \(set.memoryCount) memories of \(set.users.count) users, \(set.queries.count) queries")
        print("")
        print("| category | queries | recall@\(k) | MRR@\(depth) | queries with no answer recalling anything |")
        print("|---|---|---|---|---|")
        func row(_ label: String, _ figures: RecallFigures) {
            let negatives = figures.negatives > 0 ? "\(figures.negativesRecalling) of \(figures.negatives)" : ""
            let measured = figures.queries > 0
            print(
                "| \(label) | \(figures.queries + figures.negatives) | \(measured ? String(format: "%.2f", figures.recallAtK) : "") | "
                    + "\(measured ? String(format: "%.2f", figures.meanReciprocalRank) : "") | \(negatives) |")
        }
        for (category, figures) in score.categories { row(category, figures) }
        row("**overall**", score.overall)
        for (label, part) in parts { row(label, part.overall) }
        if !written.updates.isEmpty || !written.replaced.isEmpty {
            print("")
            print("replaced (\(sayReplaces ? "the writes said replaces" : "by agentd itself: the writes never said replaces")): \(written.correct) of the set's \(written.updates.count) updates; "
                + "\(written.wrong.count) false merges\(written.wrong.isEmpty ? "" : ": " + written.wrong.map { "\($0.older) by \($0.newer)" }.joined(separator: ", "))")
        }
        let sorted = score.latencies.sorted()
        // The table rounds; an aim such as "recall@5 ≥ 0.85" is read on these.
        print("")
        print(String(format: "overall recall@%d %.3f, MRR@%d %.3f", k, score.overall.recallAtK, depth, score.overall.meanReciprocalRank))
        print(String(format: "queries answered in p50 %.2f ms, p99 %.2f ms (through the pool, one at a time); %d of %d fully answered",
                     percentile(sorted, 0.5), percentile(sorted, 0.99), score.perfect, set.queries.count))
        if let dump, !dump.isEmpty {
            // One file per set: the set's name before the extension.
            let file = URL(fileURLWithPath: dump).deletingPathExtension().path + "-" + name + ".tsv"
            try score.dump.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        }
        if verbose {
            for miss in score.misses {
                print("  missed [\(miss.query.category ?? "")] \(miss.query.user_id) \"\(miss.query.query)\" expected \(miss.query.expected) got \(miss.recalled)")
            }
        }
        print("")
    }

    /// Each query with what the ranking read for it (`--explain`): JSON lines, each candidate
    /// named by the set's key of its memory as well as its id, with the k and depth scored.
    func explained(_ set: RecallSet, keys: [UUID: String], store: MemoryStore) async throws -> String {
        var lines: [String] = []
        for query in set.queries {
            var line: [String: Any] = [
                "user_id": query.user_id, "category": query.category ?? "", "query": query.query, "expected": query.expected,
                "superseded": query.superseded ?? [], "k": k, "depth": depth,
            ]
            if let text = try await store.explainRecall(tenantID: "bench", userID: query.user_id, query: query.query),
                var explanation = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            {
                if let candidates = explanation["candidates"] as? [[String: Any]] {
                    explanation["candidates"] = candidates.map { candidate in
                        var candidate = candidate
                        candidate["key"] = (candidate["memory_id"] as? String).flatMap(UUID.init(uuidString:)).flatMap { keys[$0] } ?? "?"
                        return candidate
                    }
                }
                line["explanation"] = explanation
            }
            let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
            lines.append(String(decoding: data, as: UTF8.self))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The ranking with `settings` (name=value, comma-separated) applied to its numbers.
    func tried(_ settings: String?) throws -> MemoryStore.Ranking {
        var ranking = MemoryStore.Ranking()
        let numbers: [String: WritableKeyPath<MemoryStore.Ranking, Double>] = [
            "k1": \.k1, "b": \.b, "characterWeight": \.characterWeight, "synonymWeight": \.synonymWeight,
            "similarWeight": \.similarWeight, "minimumSimilarity": \.minimumSimilarity, "minimumShare": \.minimumShare,
            "lengthPower": \.lengthPower, "strongScore": \.strongScore, "specificZipf": \.specificZipf, "commonZipf": \.commonZipf,
            "leastGenerality": \.leastGenerality, "updateShare": \.updateShare, "updateOverlap": \.updateOverlap,
            "semanticWeight": \.semanticWeight, "fusionRank": \.fusionRank, "semanticUpdateLift": \.semanticUpdateLift,
        ]
        for setting in (settings ?? "").split(separator: ",") {
            let parts = setting.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let path = numbers[parts[0]], let value = Double(parts[1]), value.isFinite else {
                throw ValidationError("--ranking: \(setting) is not one of \(numbers.keys.sorted().joined(separator: ", ")) = a number")
            }
            ranking[keyPath: path] = value
        }
        return ranking
    }

    // MARK: Latency

    static let chinese = [
        "喜欢", "靠窗的座位", "出差", "预算", "酒店", "每晚", "不超过", "早餐", "健身房", "游泳", "女儿", "儿子", "过敏", "花生",
        "海鲜", "素食", "咖啡", "燕麦拿铁", "公司", "南山区", "地铁", "高铁", "飞机", "经济舱", "商务舱", "会员", "积分", "周末",
        "周一", "开会", "报销", "发票", "邮箱", "手机", "生日", "纪念日", "父母", "老家", "成都", "上海", "北京", "深圳", "杭州",
        "火锅", "不吃辣", "牛奶", "猫", "狗", "宠物", "医院", "体检", "牙医", "眼镜", "跑步", "瑜伽", "篮球", "音乐", "钢琴",
        "电影", "小说", "英语", "日语", "学习", "考试", "孩子", "学校", "接送", "加班", "项目", "客户", "会议室", "打车", "停车",
    ]
    static let english = [
        "prefer", "window", "seat", "aisle", "hotel", "budget", "night", "breakfast", "gym", "swimming", "daughter", "son",
        "allergic", "peanuts", "seafood", "vegetarian", "coffee", "oat", "latte", "office", "downtown", "train", "flight",
        "economy", "business", "member", "points", "weekend", "monday", "meeting", "expense", "invoice", "email", "phone",
        "birthday", "anniversary", "parents", "hometown", "berlin", "london", "tokyo", "paris", "spicy", "food", "milk", "cat",
        "dog", "pet", "doctor", "checkup", "dentist", "glasses", "running", "yoga", "basketball", "music", "piano", "movies",
        "novels", "spanish", "learning", "exam", "kids", "school", "pickup", "overtime", "project", "client", "room", "taxi",
        "parking", "quiet", "early", "late", "morning", "evening", "tea", "wine", "cheese", "bike", "car", "rent", "apartment",
    ]

    func latency() async throws {
        let url = try await BenchDatabase.fresh("bench_memory_scale")
        let pool = PostgresPool(
            configuration: .init(conninfo: url, size: 2, connectionSettings: .init(statementTimeout: nil)))
        let clock = ContinuousClock()
        let loadStart = clock.now
        // Generated in the server: three to five words per memory from the lists above, Chinese
        // and English alternating, and the row number to keep every text distinct.
        try await pool.query("""
            INSERT INTO memories (tenant_id, user_id, memory_info, created_at)
            SELECT 'bench', 'user' || (i % \(users)),
                   CASE WHEN i % 2 = 0
                        THEN array_to_string(ARRAY(SELECT zh[1 + floor(random() * array_length(zh, 1))::int]
                                                   FROM generate_series(1, 3 + i % 3) AS w WHERE i > 0 AND w > 0), '') || '，第' || i || '条'
                        ELSE array_to_string(ARRAY(SELECT en[1 + floor(random() * array_length(en, 1))::int]
                                                   FROM generate_series(1, 3 + i % 3) AS w WHERE i > 0 AND w > 0), ' ') || ' #' || i
                   END,
                   now() - make_interval(secs => i)
            FROM generate_series(1, \(rows)) AS i, (SELECT \(Self.chinese) AS zh, \(Self.english) AS en) AS vocabulary
            """)
        try await pool.query("ANALYZE memories")
        let loaded = clock.now - loadStart
        let size = try await pool.query("SELECT pg_size_pretty(pg_total_relation_size('memories')) AS size").first?.decode("size", as: String.self) ?? "?"
        print("latency: \(rows) memories over \(users) users loaded in \(String(format: "%.0f", loaded.milliseconds / 1000)) s (table with indexes: \(size))")

        let store = MemoryStore(pool: pool)
        var generator = SystemRandomNumberGenerator()
        func randomQuery() -> String {
            let words = Bool.random(using: &generator) ? Self.chinese : Self.english
            let picked = (0..<3).map { _ in words.randomElement(using: &generator) ?? "" }
            return words == Self.chinese ? "帮我看看" + picked.joined() : "please check " + picked.joined(separator: " ")
        }
        for _ in 0..<100 {  // warm-up
            _ = try await store.recall(tenantID: "bench", userID: "user\(Int.random(in: 0..<users))", query: randomQuery(), limit: k)
        }
        var samples: [Double] = []
        var returned = 0
        for _ in 0..<queries {
            let user = "user\(Int.random(in: 0..<users))"
            let query = randomQuery()
            let start = clock.now
            returned += try await store.recall(tenantID: "bench", userID: user, query: query, limit: k).count
            samples.append((clock.now - start).milliseconds)
        }
        samples.sort()
        print(
            String(
                format: "  recall latency over %d queries (one at a time, through the pool): p50 %.2f ms, p99 %.2f ms, max %.2f ms; %.1f memories returned on average",
                queries, percentile(samples, 0.5), percentile(samples, 0.99), samples.last ?? .nan, Double(returned) / Double(max(1, queries))))
        await pool.shutdown()
    }
}
