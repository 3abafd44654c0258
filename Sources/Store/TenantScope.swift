import Postgres

/// How every statement of the service reaches the database: in a transaction that tells
/// row-level security whose rows it may see (sql/005_tenants.sql). A query that forgot its
/// `WHERE tenant_id` still sees one tenant only.
extension PostgresPool {
    /// Work for one tenant.
    @discardableResult
    func tenant<T: Sendable>(_ tenantID: String, _ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withTransaction(settings: [(name: "agentd.tenant_id", value: tenantID)], body)
    }

    /// The dispatcher's cross-tenant work: claiming, lease renewal, reaping, key look-ups.
    @discardableResult
    func system<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withTransaction(settings: [(name: "agentd.scope", value: "system")], body)
    }
}
