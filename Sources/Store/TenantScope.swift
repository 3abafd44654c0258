import Postgres

/// How every statement of the service reaches the database: under settings that tell
/// row-level security whose rows it may see (sql/005_tenants.sql). A query that forgot its
/// `WHERE tenant_id` still sees one tenant only.
///
/// Errors of the driver leave as `StoreError`s, so that no caller needs to know PostgreSQL.
/// `tenant` and `system` run their statements outside a transaction block, each its own
/// transaction: a store call that is one statement is one round trip (BEGIN and COMMIT would
/// make it three). They are for bodies whose writes are a single statement, possibly followed by
/// reads. A body that writes twice and needs both or neither uses the `...Transaction` forms.
/// The settings are session settings of the pooled connection, set only when they change, so
/// agentd needs a direct connection or session pooling, not transaction pooling.
extension PostgresPool {
    static func tenantSettings(_ tenantID: String) -> [(name: String, value: String)] {
        [(name: "agentd.tenant_id", value: tenantID), (name: "agentd.scope", value: "")]
    }

    static let systemSettings: [(name: String, value: String)] = [(name: "agentd.tenant_id", value: ""), (name: "agentd.scope", value: "system")]

    /// Work for one tenant, each statement its own transaction.
    @discardableResult
    func tenant<T: Sendable>(
        _ tenantID: String, priority: Priority = .normal, _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        try await StoreError.mapping { try await withSessionSettings(Self.tenantSettings(tenantID), priority: priority, body) }
    }

    /// Work for one tenant in one transaction.
    @discardableResult
    func tenantTransaction<T: Sendable>(_ tenantID: String, _ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await StoreError.mapping { try await withTransaction(settings: Self.tenantSettings(tenantID), body) }
    }

    /// The dispatcher's cross-tenant work: claiming, lease renewal, reaping, key look-ups.
    @discardableResult
    func system<T: Sendable>(
        priority: Priority = .normal, _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        try await StoreError.mapping { try await withSessionSettings(Self.systemSettings, priority: priority, body) }
    }

    /// Cross-tenant work in one transaction.
    @discardableResult
    func systemTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await StoreError.mapping { try await withTransaction(settings: Self.systemSettings, body) }
    }
}
