import AgentKit
import Hummingbird
import Store

/// The report views of `Reporting with SQL` over HTTP, for the console and for operators without
/// a database login: `GET /reports/usage`, `/reports/approvals`, `/reports/latency`.
/// A user key reads its own user's usage only; the approvals and latency reports are the
/// tenant's (tenant or operator keys); an operator key reads every tenant, or one (`tenant_id`).
public struct ReportsController: Sendable {
    let reports: ReportStore

    public init(reports: ReportStore) { self.reports = reports }

    public static let defaultDays = 30
    public static let maxDays = ReportStore.maxDays
    public static let defaultLimit = 500
    public static let maxLimit = ReportStore.maxRows

    public var endpoints: RouteCollection<TenantRequestContext> {
        let routes = RouteCollection(context: TenantRequestContext.self)
        routes.get("/reports/usage", use: usage)
        routes.get("/reports/approvals", use: approvals)
        routes.get("/reports/latency", use: latency)
        return routes
    }

    /// `?days=&by=day|user&user_id=&tenant_id=&limit=`: model calls and tokens per day.
    @Sendable func usage(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        var grouping = ReportStore.UsageGrouping.day
        if let raw = query.get("by") {
            guard let value = ReportStore.UsageGrouping(rawValue: raw) else { throw APIError.unprocessable("by must be day or user") }
            grouping = value
        }
        var user = try query.get("user_id").map { try Validate.id($0, field: "user_id") }
        if let user { try context.authorize(user: user) }
        if user == nil { user = context.userScope }
        let scope = ReportScope(tenantID: try Self.tenant(request, context), userID: user)
        let days = try Self.days(request)
        let limit = try Validate.limit(request, default: Self.defaultLimit, max: Self.maxLimit)
        let rows = try await reports.usage(scope, days: days, grouping: grouping, limit: limit + 1)
        let items: [JSONValue] = rows.prefix(limit).map { .object(Dictionary(uniqueKeysWithValues: $0.fields.map { ($0.name, $0.value) })) }
        return JSONBody.response(["days": .number(Double(days)), "by": .string(grouping.rawValue), "rows": .array(items), "truncated": .bool(rows.count > limit)])
    }

    /// `?tenant_id=`: per tool, how its approvals were decided.
    @Sendable func approvals(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "the approvals report is read")
        let rows = try await reports.approvals(ReportScope(tenantID: try Self.tenant(request, context), userID: nil))
        let items: [JSONValue] = rows.map { .object(Dictionary(uniqueKeysWithValues: $0.fields.map { ($0.name, $0.value) })) }
        return JSONBody.response(["rows": .array(items)])
    }

    /// `?days=&tenant_id=`: finished tasks per day and final state, p50/p95 from invoke to end.
    @Sendable func latency(_ request: Request, context: TenantRequestContext) async throws -> Response {
        try Validate.tenantWide(context, "the latency report is read")
        let days = try Self.days(request)
        let rows = try await reports.latency(ReportScope(tenantID: try Self.tenant(request, context), userID: nil), days: days)
        let items: [JSONValue] = rows.map { .object(Dictionary(uniqueKeysWithValues: $0.fields.map { ($0.name, $0.value) })) }
        return JSONBody.response(["days": .number(Double(days)), "rows": .array(items)])
    }

    /// The tenant a report covers: the key's own, or for an operator key every tenant unless
    /// `tenant_id` names one. Naming another tenant with any other key is 403.
    static func tenant(_ request: Request, _ context: TenantRequestContext) throws -> String? {
        let named = try request.uri.queryParameters.get("tenant_id").map { try Validate.id($0, field: "tenant_id") }
        if context.isAdmin, context.userScope == nil { return named }
        if let named, !Identifier.same(named, context.tenantID) {
            throw APIError(.forbidden, "this API key reads tenant \(context.tenantID) only")
        }
        return context.tenantID
    }

    static func days(_ request: Request) throws -> Int {
        guard let raw = request.uri.queryParameters.get("days") else { return defaultDays }
        guard let days = Int(raw), (1...maxDays).contains(days) else { throw APIError.unprocessable("days must be a whole number from 1 to \(maxDays)") }
        return days
    }
}
