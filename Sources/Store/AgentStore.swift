import AgentKit
import Foundation
import Postgres

/// An agent as stored: its latest version. Header values in `definition` are sealed
/// (`SecretBox`), never plain; `definition.redacted` is what clients see.
public struct StoredAgent: Sendable {
    public var agentID: String
    public var version: Int
    /// Unix seconds.
    public var createdAt: Double
    public var updatedAt: Double
    public var definition: AgentDefinition
}

/// Tenants' named agents (`agents`, `agent_versions`). Every write makes a new version; versions
/// are never changed or removed, so a task runs the version it was invoked with.
public struct AgentStore: Sendable {
    let pool: PostgresPool
    let secrets: SecretBox?

    public init(pool: PostgresPool, secrets: SecretBox?) {
        self.pool = pool
        self.secrets = secrets
    }

    /// Whether header values can be stored (`AGENTD_SECRETS_KEY` is set).
    public var canStoreSecrets: Bool { secrets != nil }

    /// Creates the agent or stores its next version, in one statement: the `agents` row's lock
    /// orders concurrent writes of one agent, and a deleted agent's numbering goes on.
    public func put(tenantID: String, agentID: String, definition: AgentDefinition) async throws -> StoredAgent {
        let sealed = try StoreCoding.json(try seal(definition, tenantID: tenantID, agentID: agentID))
        let row = try await pool.tenant(tenantID) { connection in
            try connection.query("""
                WITH current AS (
                    INSERT INTO agents AS a (tenant_id, agent_id, version)
                    VALUES (\(tenantID), \(agentID), 1)
                    ON CONFLICT (tenant_id, agent_id) DO UPDATE
                        SET version = a.version + 1, updated_at = now(), deleted_at = NULL,
                            created_at = CASE WHEN a.deleted_at IS NULL THEN a.created_at ELSE now() END
                    RETURNING a.tenant_id, a.agent_id, a.version, a.created_at, a.updated_at
                ), stored AS (
                    INSERT INTO agent_versions (tenant_id, agent_id, version, config)
                    SELECT tenant_id, agent_id, version, \(sealed) FROM current
                    RETURNING config
                )
                SELECT current.agent_id, current.version, extract(epoch FROM current.created_at) AS created,
                       extract(epoch FROM current.updated_at) AS updated, stored.config
                FROM current, stored
                """).first
        }
        guard let row else { throw StoreConflict("agent \(agentID) was not stored") }
        return try Self.agent(from: row)
    }

    public func get(tenantID: String, agentID: String) async throws -> StoredAgent? {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                \(unsafeSQL: Self.selectCurrent)
                WHERE a.tenant_id = \(tenantID) AND a.agent_id = \(agentID) AND a.deleted_at IS NULL
                """).first.map(Self.agent(from:))
        }
    }

    /// The tenant's agents by id (byte order), after `after`, at most `limit`.
    public func list(tenantID: String, after: String?, limit: Int) async throws -> [StoredAgent] {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                \(unsafeSQL: Self.selectCurrent)
                WHERE a.tenant_id = \(tenantID) AND a.deleted_at IS NULL
                  AND (\(after)::text IS NULL OR a.agent_id COLLATE "C" > \(after)::text COLLATE "C")
                ORDER BY a.agent_id COLLATE "C"
                LIMIT \(limit)
                """).rows.map(Self.agent(from:))
        }
    }

    /// Deletes the agent; its versions stay for the tasks that run them. False when there was none.
    public func delete(tenantID: String, agentID: String) async throws -> Bool {
        try await pool.tenant(tenantID) { connection in
            try connection.query("""
                UPDATE agents SET deleted_at = now(), updated_at = now()
                WHERE tenant_id = \(tenantID) AND agent_id = \(agentID) AND deleted_at IS NULL
                RETURNING 1 AS deleted
                """).count == 1
        }
    }

    /// One version as a task runs it, header values opened.
    public func definition(tenantID: String, agentID: String, version: Int) async throws -> AgentDefinition? {
        let config = try await pool.tenant(tenantID) { connection in
            try connection.query("""
                SELECT config FROM agent_versions
                WHERE tenant_id = \(tenantID) AND agent_id = \(agentID) AND version = \(version)
                """).first?.decode("config", as: PostgresJSON.self)
        }
        guard let config else { return nil }
        let stored = try Self.definition(from: config)
        return try open(stored, tenantID: tenantID, agentID: agentID)
    }

    private static let selectCurrent = """
        SELECT a.agent_id, a.version, extract(epoch FROM a.created_at) AS created, extract(epoch FROM a.updated_at) AS updated, v.config
        FROM agents a JOIN agent_versions v USING (tenant_id, agent_id, version)
        """

    private static func agent(from row: PostgresRow) throws -> StoredAgent {
        StoredAgent(
            agentID: try row.decode("agent_id"), version: try row.decode("version"), createdAt: try row.decode("created"),
            updatedAt: try row.decode("updated"), definition: try definition(from: try row.decode("config", as: PostgresJSON.self)))
    }

    private static func definition(from config: PostgresJSON) throws -> AgentDefinition {
        do {
            return try AgentDefinition.parse(try JSONValue(parsing: config.bytes), builtinTools: nil)
        } catch let invalid as AgentDefinition.Invalid {
            throw PostgresError(code: .decoding, message: "a stored agent does not read back: \(invalid)")
        }
    }

    /// Where a header value belongs, bound into its ciphertext.
    private static func context(_ tenantID: String, _ agentID: String, _ label: String, _ header: String) -> String {
        JSONValue.array([.string(tenantID), .string(agentID), .string(label), .string(header.lowercased())]).jsonText
    }

    private func seal(_ definition: AgentDefinition, tenantID: String, agentID: String) throws -> JSONValue {
        try definition.json { server, header in
            guard let secrets else {
                throw SecretBox.Invalid(description: "header values are stored only encrypted, and AGENTD_SECRETS_KEY is not set")
            }
            return try secrets.seal(header.value, context: Self.context(tenantID, agentID, server.label, header.name))
        }
    }

    private func open(_ definition: AgentDefinition, tenantID: String, agentID: String) throws -> AgentDefinition {
        var opened = definition
        for index in opened.mcpServers.indices {
            let label = opened.mcpServers[index].label
            for headerIndex in opened.mcpServers[index].headers.indices {
                let header = opened.mcpServers[index].headers[headerIndex]
                guard let secrets else {
                    throw SecretBox.Invalid(description: "agent \(agentID) has header values, and AGENTD_SECRETS_KEY is not set to open them")
                }
                opened.mcpServers[index].headers[headerIndex].value = try secrets.open(
                    header.value, context: Self.context(tenantID, agentID, label, header.name))
            }
        }
        return opened
    }
}
