import BenchSupport
import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite("memory recall quality")
struct RecallQualityTests {
    static var recallSetPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("bench/memory/recall-set.json").path
    }

    @Test("the labelled set in bench/memory is recalled at 0.9 or better at k = 5")
    func labelledSet() async throws {
        let set = try RecallSet.load(Self.recallSetPath)
        #expect(set.memoryCount >= 200)
        #expect(set.queries.count >= 100)
        let pool = PostgresPool(configuration: .init(conninfo: try await TestDatabase.migrated(), size: 2))
        let score = try await RecallEvaluation.run(set, store: MemoryStore(pool: pool), tenantID: "default", k: 5)
        await pool.shutdown()
        #expect(score.recallAtK >= 0.9, "misses: \(score.misses.map { "\($0.query.query) → \($0.recalled)" })")
    }
}
