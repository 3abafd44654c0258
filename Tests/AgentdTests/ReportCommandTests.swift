import AgentKit
import Foundation
import Testing
import TestSupport

/// `agentd report …`, the binary `make test` built, against a database a service wrote.
@Suite("agentd report")
struct ReportCommandTests {
    static func report(_ arguments: [String], databaseURL: String) throws -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = TestDatabase.sqlDirectory.deletingLastPathComponent().appendingPathComponent(".build/debug/agentd")
        process.arguments = ["report"] + arguments
        process.environment = ["DATABASE_URL": databaseURL, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        let complaint = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: printed, as: UTF8.self), String(decoding: complaint, as: UTF8.self))
    }

    @Test("usage, approvals and latency as JSON, CSV and a table, the same rows the HTTP reports answer; bad options refused")
    func reports() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        for user in ["u1", "u2"] {
            _ = try await service.invoke(user, "s1", "t1", "book")
            #expect(try await service.settle(user, "s1", "t1")["status"] == "interrupted")
        }
        #expect(try await service.resume("u1", "s1", "t1", "accept").status == 200)
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "completed")
        #expect(try await service.resume("u2", "s1", "t1", "reject").status == 200)
        #expect(try await service.settle("u2", "s1", "t1")["status"] == "completed")

        for (name, path) in [("usage", "/reports/usage?by=user"), ("approvals", "/reports/approvals"), ("latency", "/reports/latency")] {
            let arguments = [name, "--format", "json"] + (name == "usage" ? ["--by", "user"] : [])
            let run = try Self.report(arguments, databaseURL: service.databaseURL)
            #expect(run.status == 0, "\(run.errors)")
            let printed = try JSONValue(parsing: Array(run.output.utf8))
            let served = try await service.get(path)
            #expect(served.status == 200)
            #expect(printed == served["rows"], "\(name)")
            guard case .array(let items) = printed, !items.isEmpty else {
                Issue.record("\(name): no rows in \(run.output)")
                continue
            }
        }
        let usage = try Self.report(["usage", "--by", "user", "--format", "json"], databaseURL: service.databaseURL)
        guard case .array(let rows) = try JSONValue(parsing: Array(usage.output.utf8)) else { throw TestFailure("usage printed no array") }
        #expect(Set(rows.compactMap { $0["user_id"]?.stringValue }) == ["u1", "u2"])

        let csv = try Self.report(["approvals", "--format", "csv", "--tenant", "default"], databaseURL: service.databaseURL)
        #expect(csv.status == 0)
        let lines = csv.output.split(separator: "\r\n").map(String.init)
        #expect(lines.first == "tenant_id,tool_name,asked,pending,accepted,edited,rejected,responded,expired,withdrawn,approval_rate,avg_seconds_to_decide")
        #expect(lines.count == 2)
        #expect(lines.last?.hasPrefix("default,book_hotel,2,0,1,0,1,0,0,0,0.5,") == true)

        let table = try Self.report(["latency", "--since", "1w"], databaseURL: service.databaseURL)
        #expect(table.status == 0)
        #expect(table.output.hasPrefix("tenant_id  day"))
        #expect(table.output.contains("completed"))
        // Another tenant has nothing; a table says so.
        let none = try Self.report(["latency", "--tenant", "other"], databaseURL: service.databaseURL)
        #expect(none.status == 0)
        #expect(none.output.hasSuffix("(no rows)\n"))

        for bad in [["usage", "--since", "0d"], ["usage", "--since", "7x"], ["usage", "--since", "400d"], ["latency", "--format", "xml"],
                    ["usage", "--by", "week"], ["usage", "--user", ""]] {
            let refused = try Self.report(bad, databaseURL: service.databaseURL)
            #expect(refused.status != 0, "\(bad)")
            #expect(refused.errors.contains("Error:"), "\(bad): \(refused.errors)")
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
