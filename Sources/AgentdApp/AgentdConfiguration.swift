import AgentKit
import Foundation
import Logging
import Postgres
import Store

/// Everything `agentd serve` reads from the environment, with the defaults the README lists.
public struct AgentdConfiguration: Sendable {
    public var databaseURL: String
    public var host: String
    public var port: Int
    /// nil: the built-in offline model serves.
    public var llmBaseURL: String?
    public var llmAPIKey: String?
    public var llmModel: String
    /// One model HTTP attempt.
    public var llmTimeout: Duration
    public var llmMaxRetries: Int
    /// Ask the model for streamed replies (text to event streams as it is written).
    public var llmStream: Bool
    public var workerSlots: Int
    public var dbPoolSize: Int
    public var maxSteps: Int
    public var historyMessages: Int
    public var memoryRecallLimit: Int
    public var approvalTools: Set<String>
    /// `APPROVAL_TIMEOUT_S`: how long an approval waits before the service decides it; nil: until a human does.
    public var approvalTimeoutSeconds: Double?
    /// `APPROVAL_TIMEOUT_ACTION`: what the service decides.
    public var approvalTimeoutAction: ApprovalTimeout.Action = .reject
    public var lease: Duration
    public var maxAttempts: Int
    public var statementTimeout: Duration
    /// On SIGTERM/SIGINT, how long running tasks may take to finish their current step.
    public var shutdownGrace: Duration
    /// An HTTP connection that sends nothing this long is closed (idle keep-alive, stalled headers or body).
    public var httpIdleTimeout: Duration
    /// An event stream with nothing to send writes a comment line this often.
    public var eventKeepAlive: Duration
    /// How the other agentd processes reach this one (for the model's text of the tasks it runs);
    /// nil: `http://HOST:PORT`, with this machine's name for a wildcard HOST.
    public var peerURL: String?
    /// The role the service works as (`SET ROLE`), so that row-level security applies; nil for none.
    public var dbRole: String?
    /// `required`: every request needs an API key. `auto`: without any active key, a service
    /// bound to loopback answers without keys (as the original did); with one, keys are required.
    public var authRequired: Bool
    public var logLevel: Logger.Level
    /// `OUTBOUND_ALLOWED_HOSTS`: the hosts the service may call for a tenant (MCP servers).
    public var outboundAllowedHosts: [String] = ["*"]
    /// `AGENTD_SECRETS_KEY`: seals MCP header values at rest; nil: such values are refused.
    public var secretsKey: String?
    /// How long a listed MCP tool set is used before it is listed again.
    public var mcpToolsTTL: Duration = .seconds(300)
    /// `STATUS_CACHE_MB`: memory for settled tasks answered without a statement (`SettledTasks`); 0: none.
    public var statusCacheBytes = 64 << 20
    /// `GROUP_COMMIT_MAX`: invokes and step commits that arrive together share one commit, this many at most (`GroupCommit`); 1: each alone.
    public var groupCommitMax = 64
    /// `METRICS`: `GET /metrics` and the figures behind it; off, every metric is a no-op and the route answers 404.
    public var metricsEnabled = true
    /// `MEMORY_REPLACE_RESTATED`: a memory written with a new value for a fact an older one states
    /// replaces it by itself (high confidence only: README, "Memories that change").
    public var memoryReplacesRestated = true
    /// `MEMORY_MIN_SHARE`: the minimum evidence for recalling a memory (`MemoryStore.Ranking.minimumShare`).
    public var memoryMinimumShare = MemoryStore.Ranking().minimumShare
    /// `EMBEDDINGS_BASE_URL` (nil: recall by words only), `EMBEDDINGS_MODEL`, `EMBEDDINGS_API_KEY`:
    /// an OpenAI-compatible `/embeddings` endpoint for recall's semantic pass.
    public var embeddingsBaseURL: String?
    public var embeddingsModel = "text-embedding-3-small"
    public var embeddingsAPIKey: String?
    /// `EMBEDDINGS_QUERY_PREFIX`, `EMBEDDINGS_DOCUMENT_PREFIX`: put before recall queries and
    /// memories for an asymmetric model (e5: "query: " and "passage: ").
    public var embeddingsQueryPrefix = ""
    public var embeddingsDocumentPrefix = ""
    /// `EMBEDDINGS_MIN_SIMILARITY`, `EMBEDDINGS_SUPPORT_SIMILARITY`: cosines that depend on the model.
    public var embeddingsMinimumSimilarity = 0.5
    public var embeddingsSupportingSimilarity = 0.0
    /// `LOG_FORMAT`: text lines, or one JSON object per line (`JSONLogHandler`).
    public var logFormat = LogFormat.text
    /// `METRICS_DB_INTERVAL_S`: how old the cluster's figures on /metrics (queue depth, approvals waiting) may be before a scrape counts them again.
    public var metricsDatabaseInterval: Duration = .seconds(10)

    public static let defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/agentd"

    public init(
        databaseURL: String = defaultDatabaseURL, host: String = "127.0.0.1", port: Int = 8001, llmBaseURL: String? = nil,
        llmAPIKey: String? = nil, llmModel: String = "gpt-4o-mini", llmTimeout: Duration = .seconds(60), llmMaxRetries: Int = 3, llmStream: Bool = true,
        workerSlots: Int = 256, dbPoolSize: Int = 8, maxSteps: Int = 10, historyMessages: Int = 20, memoryRecallLimit: Int = 5,
        approvalTools: Set<String> = ["book_hotel"], lease: Duration = .seconds(30), maxAttempts: Int = 3,
        statementTimeout: Duration = .seconds(30), shutdownGrace: Duration = .seconds(10), httpIdleTimeout: Duration = .seconds(60),
        eventKeepAlive: Duration = .seconds(15), dbRole: String? = "agentd_service", authRequired: Bool = false,
        logLevel: Logger.Level = .info
    ) {
        self.databaseURL = databaseURL
        self.host = host
        self.port = port
        self.llmBaseURL = llmBaseURL
        self.llmAPIKey = llmAPIKey
        self.llmModel = llmModel
        self.llmTimeout = llmTimeout
        self.llmMaxRetries = llmMaxRetries
        self.llmStream = llmStream
        self.workerSlots = workerSlots
        self.dbPoolSize = dbPoolSize
        self.maxSteps = maxSteps
        self.historyMessages = historyMessages
        self.memoryRecallLimit = memoryRecallLimit
        self.approvalTools = approvalTools
        self.lease = lease
        self.maxAttempts = maxAttempts
        self.statementTimeout = statementTimeout
        self.shutdownGrace = shutdownGrace
        self.httpIdleTimeout = httpIdleTimeout
        self.eventKeepAlive = eventKeepAlive
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
        func seconds(_ name: String, _ range: ClosedRange<Double>) throws -> Duration? {
            guard let raw = value(name) else { return nil }
            guard let number = Double(raw), range.contains(number) else {
                throw Invalid(description: "\(name)=\(raw) must be a number of seconds from \(range.lowerBound) to \(range.upperBound)")
            }
            return .seconds(number)
        }
        func number(_ name: String, _ range: ClosedRange<Double>) throws -> Double? {
            guard let raw = value(name) else { return nil }
            guard let number = Double(raw), range.contains(number) else {
                throw Invalid(description: "\(name)=\(raw) must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }
        func flag(_ name: String) throws -> Bool? {
            guard let raw = value(name) else { return nil }
            switch raw.lowercased() {
            case "1", "true", "on": return true
            case "0", "false", "off": return false
            default: throw Invalid(description: "\(name)=\(raw) must be 1 or 0")
            }
        }
        if let url = value("DATABASE_URL") { databaseURL = url }
        do {
            _ = try PostgresTargets.parse(databaseURL)
        } catch let error as PostgresError {
            throw Invalid(description: "DATABASE_URL: \(error.message)")
        }
        if let host = value("HOST") { self.host = host }
        if let port = try integer("PORT", 0...65535) { self.port = port }
        llmBaseURL = value("LLM_BASE_URL")
        llmAPIKey = value("LLM_API_KEY")
        if let model = value("LLM_MODEL") { llmModel = model }
        if let timeout = try seconds("LLM_TIMEOUT_S", 1...3600) { llmTimeout = timeout }
        if let retries = try integer("LLM_MAX_RETRIES", 0...10) { llmMaxRetries = retries }
        if let stream = value("LLM_STREAM") {
            switch stream.lowercased() {
            case "1", "true", "on": llmStream = true
            case "0", "false", "off": llmStream = false
            default: throw Invalid(description: "LLM_STREAM=\(stream) must be 1 or 0")
            }
        }
        if let slots = try integer("WORKER_SLOTS", 0...100_000) { workerSlots = slots }
        if let size = try integer("DB_POOL_SIZE", 1...500) { dbPoolSize = size }
        if let steps = try integer("MAX_STEPS", 1...1000) { maxSteps = steps }
        if let history = try integer("HISTORY_MESSAGES", 0...10_000) { historyMessages = history }
        if let recall = try integer("MEMORY_RECALL_LIMIT", 0...100) { memoryRecallLimit = recall }
        if let megabytes = try integer("STATUS_CACHE_MB", 0...65_536) { statusCacheBytes = megabytes << 20 }
        if let group = try integer("GROUP_COMMIT_MAX", 1...1000) { groupCommitMax = group }
        if let interval = try seconds("METRICS_DB_INTERVAL_S", 1...3600) { metricsDatabaseInterval = interval }
        if let metrics = try flag("METRICS") { metricsEnabled = metrics }
        if let replace = try flag("MEMORY_REPLACE_RESTATED") { memoryReplacesRestated = replace }
        if let share = try number("MEMORY_MIN_SHARE", 0...1) { memoryMinimumShare = share }
        embeddingsBaseURL = value("EMBEDDINGS_BASE_URL")
        if let model = value("EMBEDDINGS_MODEL") { embeddingsModel = model }
        embeddingsAPIKey = value("EMBEDDINGS_API_KEY")
        if let prefix = environment["EMBEDDINGS_QUERY_PREFIX"] { embeddingsQueryPrefix = prefix }
        if let prefix = environment["EMBEDDINGS_DOCUMENT_PREFIX"] { embeddingsDocumentPrefix = prefix }
        if let similarity = try number("EMBEDDINGS_MIN_SIMILARITY", -1...1) { embeddingsMinimumSimilarity = similarity }
        if let similarity = try number("EMBEDDINGS_SUPPORT_SIMILARITY", -1...1) { embeddingsSupportingSimilarity = similarity }
        if let tools = environment["APPROVAL_TOOLS"] {
            approvalTools = Set(tools.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }
        if let timeout = try seconds("APPROVAL_TIMEOUT_S", 1...Double(ApprovalTimeout.maxSeconds)) {
            approvalTimeoutSeconds = timeout.seconds
        }
        if let action = value("APPROVAL_TIMEOUT_ACTION") {
            guard let parsed = ApprovalTimeout.Action(rawValue: action.lowercased()) else {
                throw Invalid(description: "APPROVAL_TIMEOUT_ACTION=\(action) must be reject or accept")
            }
            approvalTimeoutAction = parsed
        }
        if let lease = try seconds("LEASE_SECONDS", 1...3600) { self.lease = lease }
        if let attempts = try integer("MAX_ATTEMPTS", 1...100) { maxAttempts = attempts }
        if let timeout = try seconds("STATEMENT_TIMEOUT_S", 0.1...3600) { statementTimeout = timeout }
        if let role = environment["DB_ROLE"] {
            let trimmed = role.trimmingCharacters(in: .whitespaces)
            guard trimmed.isEmpty || trimmed.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                throw Invalid(description: "DB_ROLE=\(role) must be a plain role name (letters, digits, _), or empty for none")
            }
            dbRole = trimmed.isEmpty ? nil : trimmed
        }
        if let grace = try seconds("SHUTDOWN_GRACE_S", 0...3600) { shutdownGrace = grace }
        if let idle = try seconds("HTTP_IDLE_TIMEOUT_S", 1...3600) { httpIdleTimeout = idle }
        if let keepAlive = try seconds("EVENT_KEEPALIVE_S", 0.1...3600) { eventKeepAlive = keepAlive }
        if let peer = value("PEER_URL") {
            guard let url = URL(string: peer), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
                throw Invalid(description: "PEER_URL=\(peer) must be an http(s) URL such as http://10.0.0.5:8001")
            }
            peerURL = peer.hasSuffix("/") ? String(peer.dropLast()) : peer
        }
        if let auth = value("AUTH") {
            switch auth.lowercased() {
            case "required": authRequired = true
            case "auto": authRequired = false
            default: throw Invalid(description: "AUTH=\(auth) must be auto or required")
            }
        }
        if let hosts = environment["OUTBOUND_ALLOWED_HOSTS"] {
            outboundAllowedHosts = hosts.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if let key = value("AGENTD_SECRETS_KEY") {
            do {
                _ = try SecretBox(encoded: key)
            } catch {
                throw Invalid(description: "\(error)")
            }
            secretsKey = key
        }
        if let ttl = try seconds("MCP_TOOLS_TTL_S", 0...86_400) { mcpToolsTTL = ttl }
        if let level = value("LOG_LEVEL") {
            guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
                throw Invalid(description: "LOG_LEVEL=\(level) must be one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = parsed
        }
        if let format = value("LOG_FORMAT") {
            guard let parsed = LogFormat(rawValue: format.lowercased()) else {
                throw Invalid(description: "LOG_FORMAT=\(format) must be text or json")
            }
            logFormat = parsed
        }
    }

    public enum LogFormat: String, Sendable {
        case text, json
    }

    /// `PEER_URL`, or what it defaults to once the server listens on `port`.
    public func peerURL(port: Int) -> String {
        if let peerURL { return peerURL }
        var host = host
        if ["0.0.0.0", "::", ""].contains(host) { host = ProcessInfo.processInfo.hostName }
        if host.contains(":") { host = "[\(host)]" }
        return "http://\(host):\(port)"
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

    public var outboundPolicy: OutboundPolicy { OutboundPolicy(allowedHosts: outboundAllowedHosts) }

    /// The environment's approval timeout (agents may set their own).
    public var approvalTimeout: ApprovalTimeout? {
        approvalTimeoutSeconds.map { ApprovalTimeout(seconds: $0, action: approvalTimeoutAction) }
    }
}

extension AgentdConfiguration {
    /// One environment variable as the README's Configuration table shows it (Markdown cells).
    public struct Variable: Sendable, Equatable {
        public var name: String
        public var defaultValue: String
        public var meaning: String
    }

    /// The README's Configuration table, row for row: `agentd serve --help` prints it, and a test
    /// holds the README to it, so the two cannot drift apart.
    public static let variables: [Variable] = [
        Variable(name: "`DATABASE_URL`", defaultValue: "`postgres://postgres@127.0.0.1:5432/agentd` (`make run`: the development cluster)", meaning: "PostgreSQL URL or conninfo; several hosts (`postgres://h1:5432,h2:5432/agentd`) for a cluster: each connection goes to the one that takes writes"),
        Variable(name: "`HOST`", defaultValue: "`127.0.0.1`", meaning: "address to listen on"),
        Variable(name: "`PORT`", defaultValue: "`8001`", meaning: "port (the original client's)"),
        Variable(name: "`LLM_BASE_URL`", defaultValue: "unset: offline model", meaning: "OpenAI-compatible base URL; agentd calls `{LLM_BASE_URL}/chat/completions`"),
        Variable(name: "`LLM_API_KEY`", defaultValue: "unset", meaning: "sent as `Authorization: Bearer …`"),
        Variable(name: "`LLM_MODEL`", defaultValue: "`gpt-4o-mini`", meaning: "model name sent to the server"),
        Variable(name: "`LLM_TIMEOUT_S`", defaultValue: "`60`", meaning: "timeout of one model HTTP attempt"),
        Variable(name: "`LLM_MAX_RETRIES`", defaultValue: "`3`", meaning: "retries on 429, 5xx and connection errors, with exponential backoff (honours `Retry-After`)"),
        Variable(name: "`LLM_STREAM`", defaultValue: "`1`", meaning: "`1`: ask for streamed replies (`stream: true`), so event streams show text as it is written; falls back to plain calls for a server that refuses; `0`: plain calls"),
        Variable(name: "`WORKER_SLOTS`", defaultValue: "`256`", meaning: "tasks in flight per process (Swift tasks, not threads); also the most connections to the model's host; `0`: this process serves the API only and runs no task"),
        Variable(name: "`DB_POOL_SIZE`", defaultValue: "`8`", meaning: "database connections per process, each with its own blocking thread; status reads use at most half at once"),
        Variable(name: "`MAX_STEPS`", defaultValue: "`10`", meaning: "model calls per task before it ends in `error`"),
        Variable(name: "`HISTORY_MESSAGES`", defaultValue: "`20`", meaning: "messages of the session's earlier turns the model sees"),
        Variable(name: "`MEMORY_RECALL_LIMIT`", defaultValue: "`5`", meaning: "long-term memories recalled into the system message"),
        Variable(
            name: "`STATUS_CACHE_MB`", defaultValue: "`64`",
            meaning: "memory for settled tasks (completed, error, cancelled) whose status reads need no statement; deletes and updates reach every process first; `0`: every read reads the database"),
        Variable(
            name: "`GROUP_COMMIT_MAX`", defaultValue: "`64`",
            meaning: "invokes and task steps that arrive while a commit is being written share the next one (one round trip, one commit), this many at most; `1`: each commits alone"),
        Variable(
            name: "`METRICS`", defaultValue: "`1`",
            meaning: "`1`: `GET /metrics` in Prometheus's text format (open mode: anyone on loopback; with keys: operator keys only); `0`: no metrics, the route answers 404"),
        Variable(
            name: "`MEMORY_REPLACE_RESTATED`", defaultValue: "`1`",
            meaning: "`1`: a memory that restates an older one with a new value (\"rent is now 1,310\") replaces it by itself, on a rule tuned for no false merges; `0`: only `replaces` does"),
        Variable(
            name: "`MEMORY_MIN_SHARE`", defaultValue: "`0.4`",
            meaning: "recall's minimum evidence, 0–1: the share of a query's words a memory must explain to be recalled; higher recalls nothing more often when nothing fits, at a cost in recall (the curve: BENCHMARKS.md, \"Issue 19, sixth look\")"),
        Variable(
            name: "`EMBEDDINGS_BASE_URL`", defaultValue: "none",
            meaning: "an OpenAI-compatible `/embeddings` endpoint: memories get vectors after they are written, and recall adds a semantic pass; none: words only"),
        Variable(name: "`EMBEDDINGS_MODEL`", defaultValue: "`text-embedding-3-small`", meaning: "the embeddings model"),
        Variable(name: "`EMBEDDINGS_API_KEY`", defaultValue: "none", meaning: "sent as `Authorization: Bearer …` to the embeddings endpoint"),
        Variable(
            name: "`EMBEDDINGS_QUERY_PREFIX`", defaultValue: "empty",
            meaning: "put before each recall query sent to the embeddings endpoint, for models trained with one (e5: `query: `)"),
        Variable(
            name: "`EMBEDDINGS_DOCUMENT_PREFIX`", defaultValue: "empty",
            meaning: "put before each memory sent to the embeddings endpoint (e5: `passage: `); changing it embeds the memories again"),
        Variable(
            name: "`EMBEDDINGS_MIN_SIMILARITY`", defaultValue: "`0.5`",
            meaning: "cosine from which the semantic pass recalls a memory the words did not find (it depends on the model)"),
        Variable(
            name: "`EMBEDDINGS_SUPPORT_SIMILARITY`", defaultValue: "`0`",
            meaning: "cosine a memory the words found must reach too (it depends on the model)"),
        Variable(
            name: "`METRICS_DB_INTERVAL_S`", defaultValue: "`10`",
            meaning: "how old the cluster's figures on `/metrics` (tasks queued, approvals waiting) may be: the first scrape after that counts them again, for every process"),
        Variable(name: "`APPROVAL_TOOLS`", defaultValue: "`book_hotel`", meaning: "comma-separated tools that wait for a human; empty for none"),
        Variable(
            name: "`APPROVAL_TIMEOUT_S`", defaultValue: "none",
            meaning: "how long an approval waits for a human before the service decides it (agents may set their own `approval_timeout_s`)"),
        Variable(name: "`APPROVAL_TIMEOUT_ACTION`", defaultValue: "`reject`", meaning: "what the service decides for an expired approval: `reject` or `accept`"),
        Variable(name: "`LEASE_SECONDS`", defaultValue: "`30`", meaning: "a running task's lease; renewed while it runs, re-queued when it expires"),
        Variable(name: "`MAX_ATTEMPTS`", defaultValue: "`3`", meaning: "claims of one task (after lost leases) before it ends in `error`"),
        Variable(name: "`STATEMENT_TIMEOUT_S`", defaultValue: "`30`", meaning: "PostgreSQL `statement_timeout` of every connection"),
        Variable(name: "`HTTP_IDLE_TIMEOUT_S`", defaultValue: "`60`", meaning: "an HTTP connection that sends nothing this long is closed (idle keep-alive, stalled headers or body)"),
        Variable(name: "`EVENT_KEEPALIVE_S`", defaultValue: "`15`", meaning: "an event stream with nothing to send writes a `: keep-alive` comment this often (keep it under your proxies' idle timeout)"),
        Variable(name: "`PEER_URL`", defaultValue: "`http://HOST:PORT` (the machine's name for a wildcard HOST)", meaning: "how the other agentd processes on the same database reach this one, to relay the model's text of the tasks it runs to their event streams"),
        Variable(name: "`SHUTDOWN_GRACE_S`", defaultValue: "`10`", meaning: "on SIGTERM/SIGINT, how long running tasks may take to finish their current step"),
        Variable(name: "`AUTH`", defaultValue: "`auto`", meaning: "`auto`: open (no keys checked) while no API key exists and HOST is loopback; `required`: every request needs a key"),
        Variable(name: "`DB_ROLE`", defaultValue: "`agentd_service`", meaning: "role the service `SET ROLE`s to, so row-level security applies; empty for none"),
        Variable(name: "`OUTBOUND_ALLOWED_HOSTS`", defaultValue: "`*`", meaning: "comma-separated hosts (names or addresses) the service may call for a tenant (MCP servers, webhooks); `*` for any public host. Loopback, private and link-local addresses, in the URL or after resolving it, are refused unless the URL's host itself is listed"),
        Variable(name: "`AGENTD_SECRETS_KEY`", defaultValue: "unset: header values and webhooks are refused", meaning: "32 random bytes, base64 (`openssl rand -base64 32`) or hex: seals MCP servers' header values and webhook secrets (AES-256-GCM) in the database"),
        Variable(name: "`MCP_TOOLS_TTL_S`", defaultValue: "`300`", meaning: "how long an MCP server's tool list is used before it is listed again (sooner when the server says it changed)"),
        Variable(name: "`LOG_LEVEL`", defaultValue: "`info`", meaning: "trace, debug, info, notice, warning, error, critical"),
        Variable(
            name: "`LOG_FORMAT`", defaultValue: "`text`",
            meaning: "`json`: one JSON object per line on standard error (`time`, `level`, `message`, `logger`, `request_id`, `tenant`, `task` where known)"),
        Variable(name: "`AGENTD_SQL_DIR`", defaultValue: "`sql/` found from the working directory or the binary", meaning: "migrations folder"),
    ]

    /// The table as plain text for `serve --help`.
    public static var variablesHelp: String {
        func plain(_ cell: String) -> String { cell.replacingOccurrences(of: "`", with: "") }
        let width = variables.map { plain($0.name).count }.max() ?? 0
        return variables.map { variable in
            let name = plain(variable.name)
            return "  " + name + String(repeating: " ", count: width - name.count + 2) + plain(variable.meaning)
                + " [" + plain(variable.defaultValue) + "]"
        }.joined(separator: "\n")
    }
}
