import AgentKit
import Foundation
import Logging

/// Everything `agentd serve` reads from the environment, with the defaults the README lists.
public struct AgentdConfiguration: Sendable {
    public var databaseURL: String
    public var host: String
    public var port: Int
    /// nil: the built-in offline model serves.
    public var llmBaseURL: String?
    public var llmAPIKey: String?
    public var llmModel: String
    public var llmTimeoutSeconds: Double
    public var llmMaxRetries: Int
    public var workerSlots: Int
    public var dbPoolSize: Int
    public var maxSteps: Int
    public var historyMessages: Int
    public var memoryRecallLimit: Int
    public var approvalTools: Set<String>
    public var leaseSeconds: Double
    public var maxAttempts: Int
    public var statementTimeoutSeconds: Double
    /// On SIGTERM/SIGINT, how long running tasks may take to finish their current step.
    public var shutdownGraceSeconds: Double
    /// An HTTP connection that sends nothing this long is closed (idle keep-alive, stalled headers or body).
    public var httpIdleTimeoutSeconds: Double
    /// The role the service works as (`SET ROLE`), so that row-level security applies; nil for none.
    public var dbRole: String?
    /// `required`: every request needs an API key. `auto`: without any active key, a service
    /// bound to loopback answers without keys (as the original did); with one, keys are required.
    public var authRequired: Bool
    public var logLevel: Logger.Level

    public static let defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/agentd"

    public init(
        databaseURL: String = defaultDatabaseURL, host: String = "127.0.0.1", port: Int = 8001, llmBaseURL: String? = nil,
        llmAPIKey: String? = nil, llmModel: String = "gpt-4o-mini", llmTimeoutSeconds: Double = 60, llmMaxRetries: Int = 3,
        workerSlots: Int = 256, dbPoolSize: Int = 8, maxSteps: Int = 10, historyMessages: Int = 20, memoryRecallLimit: Int = 5,
        approvalTools: Set<String> = ["book_hotel"], leaseSeconds: Double = 30, maxAttempts: Int = 3,
        statementTimeoutSeconds: Double = 30, shutdownGraceSeconds: Double = 10, httpIdleTimeoutSeconds: Double = 60, dbRole: String? = "agentd_service", authRequired: Bool = false,
        logLevel: Logger.Level = .info
    ) {
        self.databaseURL = databaseURL
        self.host = host
        self.port = port
        self.llmBaseURL = llmBaseURL
        self.llmAPIKey = llmAPIKey
        self.llmModel = llmModel
        self.llmTimeoutSeconds = llmTimeoutSeconds
        self.llmMaxRetries = llmMaxRetries
        self.workerSlots = workerSlots
        self.dbPoolSize = dbPoolSize
        self.maxSteps = maxSteps
        self.historyMessages = historyMessages
        self.memoryRecallLimit = memoryRecallLimit
        self.approvalTools = approvalTools
        self.leaseSeconds = leaseSeconds
        self.maxAttempts = maxAttempts
        self.statementTimeoutSeconds = statementTimeoutSeconds
        self.shutdownGraceSeconds = shutdownGraceSeconds
        self.httpIdleTimeoutSeconds = httpIdleTimeoutSeconds
        self.dbRole = dbRole
        self.authRequired = authRequired
        self.logLevel = logLevel
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads the environment; a value that is set but unusable is an error, not a silent default.
    public init(environment: [String: String]) throws {
        self.init()
        func value(_ name: String) -> String? {
            guard let raw = environment[name]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
            return raw
        }
        func integer(_ name: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let raw = value(name) else { return nil }
            guard let number = Int(raw), range.contains(number) else {
                throw Invalid(description: "\(name)=\(raw) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }
        func seconds(_ name: String, _ range: ClosedRange<Double>) throws -> Double? {
            guard let raw = value(name) else { return nil }
            guard let number = Double(raw), range.contains(number) else {
                throw Invalid(description: "\(name)=\(raw) must be a number of seconds from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }
        if let url = value("DATABASE_URL") { databaseURL = url }
        if let host = value("HOST") { self.host = host }
        if let port = try integer("PORT", 0...65535) { self.port = port }
        llmBaseURL = value("LLM_BASE_URL")
        llmAPIKey = value("LLM_API_KEY")
        if let model = value("LLM_MODEL") { llmModel = model }
        if let timeout = try seconds("LLM_TIMEOUT_S", 1...3600) { llmTimeoutSeconds = timeout }
        if let retries = try integer("LLM_MAX_RETRIES", 0...10) { llmMaxRetries = retries }
        if let slots = try integer("WORKER_SLOTS", 1...100_000) { workerSlots = slots }
        if let size = try integer("DB_POOL_SIZE", 1...500) { dbPoolSize = size }
        if let steps = try integer("MAX_STEPS", 1...1000) { maxSteps = steps }
        if let history = try integer("HISTORY_MESSAGES", 0...10_000) { historyMessages = history }
        if let recall = try integer("MEMORY_RECALL_LIMIT", 0...100) { memoryRecallLimit = recall }
        if let tools = environment["APPROVAL_TOOLS"] {
            approvalTools = Set(tools.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }
        if let lease = try seconds("LEASE_SECONDS", 1...3600) { leaseSeconds = lease }
        if let attempts = try integer("MAX_ATTEMPTS", 1...100) { maxAttempts = attempts }
        if let timeout = try seconds("STATEMENT_TIMEOUT_S", 0.1...3600) { statementTimeoutSeconds = timeout }
        if let role = environment["DB_ROLE"] {
            let trimmed = role.trimmingCharacters(in: .whitespaces)
            guard trimmed.isEmpty || trimmed.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                throw Invalid(description: "DB_ROLE=\(role) must be a plain role name (letters, digits, _), or empty for none")
            }
            dbRole = trimmed.isEmpty ? nil : trimmed
        }
        if let grace = try seconds("SHUTDOWN_GRACE_S", 0...3600) { shutdownGraceSeconds = grace }
        if let idle = try seconds("HTTP_IDLE_TIMEOUT_S", 1...3600) { httpIdleTimeoutSeconds = idle }
        if let auth = value("AUTH") {
            switch auth.lowercased() {
            case "required": authRequired = true
            case "auto": authRequired = false
            default: throw Invalid(description: "AUTH=\(auth) must be auto or required")
            }
        }
        if let level = value("LOG_LEVEL") {
            guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
                throw Invalid(description: "LOG_LEVEL=\(level) must be one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = parsed
        }
    }

    /// Whether HOST keeps the service on this machine.
    public var bindsLoopbackOnly: Bool {
        let host = host.lowercased()
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// The tools of this deployment: the built-in ones plus those that need the service's stores.
    public func toolRegistry(adding tools: [any Tool]) -> ToolRegistry {
        ToolRegistry(tools: [BookHotelTool(), MultiplyTool()] + tools, approvalRequired: approvalTools)
    }
}
