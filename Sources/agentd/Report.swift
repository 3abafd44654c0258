import AgentKit
import AgentdApp
import ArgumentParser
import Foundation
import Postgres
import Store

/// `agentd report usage|approvals|latency`: the report views of "Reporting with SQL", the rows
/// `GET /reports/...` answers, printed for an operator at the database (every tenant unless
/// `--tenant`).
struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prints the usage, approvals or latency report (the report views) as a table, CSV or JSON.",
        discussion: "Reads DATABASE_URL (and DB_ROLE) like serve. Covers every tenant unless --tenant names one.",
        subcommands: [Usage.self, Approvals.self, Latency.self]
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, csv, json
    }

    struct Options: ParsableArguments {
        @Option(help: "Only this tenant's rows.") var tenant: String?
        @Option(help: "How far back: 7d, 2w (days or weeks; today counts as one day), at most 366 days.") var since = "30d"
        @Option(help: "table, csv or json.") var format: Format = .table

        func validate() throws {
            if let tenant, let problem = Identifier.problem(with: tenant, field: "--tenant") { throw ValidationError(problem) }
            _ = try days()
        }

        /// `--since` in whole days.
        func days() throws -> Int {
            let text = since.trimmingCharacters(in: .whitespaces).lowercased()
            guard let unit = text.last, let count = Int(text.dropLast()), count > 0 else {
                throw ValidationError("--since \(since): write a number of days or weeks, as 7d or 2w")
            }
            let days: Int
            switch unit {
            case "d": days = count
            case "w": days = count * 7
            default: throw ValidationError("--since \(since): write a number of days or weeks, as 7d or 2w")
            }
            guard days <= ReportStore.maxDays else { throw ValidationError("--since \(since): at most \(ReportStore.maxDays) days") }
            return days
        }
    }

    struct Usage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Model calls and tokens per day, by tenant or by user.")
        @OptionGroup var options: Options
        @Option(help: "day: a row per tenant and day; user: a row per user and day.") var by: ReportStore.UsageGrouping = .day
        @Option(help: "Only this user's rows.") var user: String?

        func validate() throws {
            if let user, let problem = Identifier.problem(with: user, field: "--user") { throw ValidationError(problem) }
        }

        func run() async throws {
            let days = try options.days()
            let rows = try await Report.withStore { store in
                try await store.usage(
                    ReportScope(tenantID: options.tenant, userID: user), days: days, grouping: by, limit: ReportStore.maxRows)
            }
            Report.print(rows.map(\.fields), columns: UsageRow.columns, format: options.format)
        }
    }

    struct Approvals: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per tool, how its approvals were decided (every approval stored: --since does not narrow it).")
        @Option(help: "Only this tenant's rows.") var tenant: String?
        @Option(help: "table, csv or json.") var format: Format = .table

        func validate() throws {
            if let tenant, let problem = Identifier.problem(with: tenant, field: "--tenant") { throw ValidationError(problem) }
        }

        func run() async throws {
            let rows = try await Report.withStore { try await $0.approvals(ReportScope(tenantID: tenant, userID: nil)) }
            Report.print(rows.map(\.fields), columns: ApprovalRow.columns, format: format)
        }
    }

    struct Latency: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Finished tasks per day and final state, p50/p95 from invoke to end.")
        @OptionGroup var options: Options

        func run() async throws {
            let days = try options.days()
            let rows = try await Report.withStore { try await $0.latency(ReportScope(tenantID: options.tenant, userID: nil), days: days) }
            Report.print(rows.map(\.fields), columns: LatencyRow.columns, format: options.format)
        }
    }

    static func withStore<T: Sendable>(_ body: (ReportStore) async throws -> T) async throws -> T {
        try await withServicePool { try await body(ReportStore(pool: $0)) }
    }

    /// Prints `rows` (each row's fields in `columns`' order) to standard output.
    static func print(_ rows: [[(name: String, value: JSONValue)]], columns: [String], format: Format) {
        let output: String
        switch format {
        case .json:
            output = JSONValue.array(rows.map { .object(Dictionary(uniqueKeysWithValues: $0.map { ($0.name, $0.value) })) }).jsonText + "\n"
        case .csv:
            output = ([columns] + rows.map { $0.map { csvCell(text($0.value)) } }).map { $0.joined(separator: ",") }.joined(separator: "\r\n")
                + "\r\n"
        case .table:
            let cells = [columns] + rows.map { $0.map { $0.value == .null ? "-" : text($0.value) } }
            let widths = columns.indices.map { column in cells.map { $0[column].count }.max() ?? 0 }
            output = cells.map { row in
                row.enumerated().map { column, cell in cell.padding(toLength: widths[column], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
            }.joined(separator: "\n") + "\n" + (rows.isEmpty ? "(no rows)\n" : "")
        }
        FileHandle.standardOutput.write(Data(output.utf8))
    }

    /// A value as text: whole numbers without a fraction, nulls empty.
    static func text(_ value: JSONValue) -> String {
        switch value {
        case .null: ""
        case .string(let text): text
        case .number(let number): number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case .bool(let flag): flag ? "true" : "false"
        default: value.jsonText
        }
    }

    /// RFC 4180: quoted when it holds a comma, a quote or a line break, quotes doubled.
    static func csvCell(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

extension ReportStore.UsageGrouping: ExpressibleByArgument {}
