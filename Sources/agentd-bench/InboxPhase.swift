import Foundation
import NIOCore

/// Phase 10: the approval inbox with `--inbox-pending` approvals waiting (10,000 by default)
/// across `--inbox-users` users (1,000), made through the real path (invoke, the model asks to
/// book a hotel, the task waits), then pages of 50 read one at a time: the tenant's newest and
/// oldest, one user's, and a page deep in the listing (through cursors). One statement per page.
extension Phases {
    func inbox() async throws {
        let total = bench.inboxPending
        let users = max(1, min(bench.inboxUsers, total))
        let client = self.client
        let clock = ContinuousClock()
        let seeding = clock.now
        _ = try await eachClient(64) { index in
            for number in stride(from: index, to: total, by: 64) {
                let (user, task) = ("p10-u\(number % users)", "t\(number / users)")
                try await client.invoke(user: user, session: "s\(number / users)", task: task, query: "hotel for night \(number)")
            }
            return []
        }
        // Waiting until each asked: they are many, so count them in the database rather than read each status.
        let deadline = clock.now + .seconds(600)
        var waiting = 0
        while waiting < total, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(250))
            waiting = try await db.query(
                "SELECT count(*) AS n FROM interrupts WHERE user_id LIKE 'p10-%' AND decision IS NULL"
            ).first?.decode("n", as: Int.self) ?? 0
        }
        guard waiting >= total else { throw LoadClient.Failure(description: "inbox: only \(waiting) of \(total) approvals waited") }
        progress(String(format: "inbox: %d approvals waiting across %d users after %.1f s", total, users, (clock.now - seeding).seconds))
        try await db.query("ANALYZE interrupts")
        try await db.query("ANALYZE tasks")

        // The cursor of a page about halfway down (page by page, as a client would walk there).
        var cursor: String?
        for _ in 0..<min(100, total / 100) {
            let (_, body) = try await client.send(.GET, "/agent/interrupts?limit=50" + (cursor.map { "&cursor=\($0)" } ?? ""))
            cursor = try JSONDecoder().decode(InboxPage.self, from: Data(buffer: body)).next_cursor
        }
        let pages: [(String, String)] = [
            ("newest first", "/agent/interrupts?limit=50"),
            ("oldest first", "/agent/interrupts?limit=50&order=oldest"),
            ("one user's", "/agent/interrupts?limit=50&user_id=p10-u7"),
            ("one tool, waiting over 1 s", "/agent/interrupts?limit=50&tool=book_hotel&older_than_s=1"),
            ("deep (page \(min(100, total / 100) + 1))", "/agent/interrupts?limit=50" + (cursor.map { "&cursor=\($0)" } ?? "")),
        ]
        for (name, path) in pages {
            var latencies: [Double] = []
            var items = 0
            for round in 0..<bench.inboxReads {
                let start = clock.now
                let (status, body) = try await client.send(.GET, path)
                latencies.append((clock.now - start).milliseconds)
                guard status == 200 else { throw LoadClient.Failure(description: "inbox answered \(status): \(String(buffer: body))") }
                if round == 0 { items = try JSONDecoder().decode(InboxPage.self, from: Data(buffer: body)).interrupts.count }
            }
            let observed = Sample(latencies)
            progress("inbox, \(name): \(items) items, p50 \(observed.milliseconds(0.5)), p99 \(observed.milliseconds(0.99))")
            report.add(
                "10 inbox", "a page of 50, \(name) (\(items) items; \(total) waiting, \(users) users), p50 / p99",
                "\(observed.milliseconds(0.5)) / \(observed.milliseconds(0.99))",
                ratio: String(format: "%.1f× one select at p50", observed.p(0.5) / ceiling.selectMilliseconds))
        }
    }

    private struct InboxPage: Decodable {
        struct Item: Decodable {}
        var interrupts: [Item]
        var next_cursor: String?
    }
}
