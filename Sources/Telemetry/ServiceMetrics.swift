import AgentKit
import CoreMetrics
import Synchronization

/// The service's metrics, made through one swift-metrics factory: swift-prometheus's in a
/// running service (`GET /metrics`), the no-op one where nothing scrapes. Each process has its
/// own, so a test that runs two services in one process reads each one's figures.
///
/// No label takes a value from a request: route templates, methods, statuses and outcomes come
/// from closed sets, and the two that tenants name (a model, a tool) pass through `BoundedValues`,
/// which lets a few dozen distinct values in and folds the rest into `other`.
public final class ServiceMetrics: Sendable {
    public let factory: any MetricsFactory

    // Tasks
    public let tasksSubmitted: Counter
    public let taskAttempts: Counter
    public let leasesExpired: Counter
    /// Queued (invoke or resume) → claimed.
    public let queueWait: Timer
    /// Claimed → the run stopped (ended, paused for a human, or handed back).
    public let taskRun: Timer
    /// One step: from the claim or the step before to the step's commit.
    public let stepRun: Timer
    private let finished: [TaskEnd: Counter]

    // Approvals
    /// Asked → decided, by a human or by the expiry.
    public let interruptWait: Timer
    private let decisions = Mutex<[String: Counter]>([:])

    // Tools
    private let tools = Mutex<[ToolKey: (count: Counter, seconds: Timer)]>([:])
    public let toolNames = BoundedValues(limit: 64)
    private let stepStarts = Mutex<[TaskKey: ContinuousClock.Instant]>([:])

    // Database and notifications
    /// Time spent waiting for a pooled connection (zero for most statements).
    public let poolWait: Timer
    public let notifyReconnects: Counter

    // Cached per label set: the factory's lookup takes a lock and hashes the labels.
    private let http = Mutex<[HTTPKey: (count: Counter, seconds: Timer)]>([:])
    private let models = Mutex<[String: ModelSeries]>([:])
    private let modelErrors = Mutex<[String: Counter]>([:])
    public let modelNames = BoundedValues(limit: 32)
    /// Gauges read when a scrape asks (in flight, connections), not kept up to date per change.
    private let scrapeHooks = Mutex<[@Sendable () -> Void]>([])

    public init(factory: any MetricsFactory) {
        self.factory = factory
        tasksSubmitted = Counter(label: Name.tasksSubmitted, factory: factory)
        taskAttempts = Counter(label: Name.taskAttempts, factory: factory)
        leasesExpired = Counter(label: Name.leasesExpired, factory: factory)
        queueWait = Timer(label: Name.queueWait, factory: factory)
        taskRun = Timer(label: Name.taskRun, dimensions: [("scope", "task")], factory: factory)
        stepRun = Timer(label: Name.taskRun, dimensions: [("scope", "step")], factory: factory)
        interruptWait = Timer(label: Name.interruptWait, factory: factory)
        finished = Dictionary(
            uniqueKeysWithValues: TaskEnd.allCases.map { ($0, Counter(label: Name.tasksFinished, dimensions: [("status", $0.rawValue)], factory: factory)) })
        poolWait = Timer(label: Name.poolWait, factory: factory)
        notifyReconnects = Counter(label: Name.notifyReconnects, factory: factory)
    }

    /// Metrics that go nowhere.
    public static func disabled() -> ServiceMetrics { ServiceMetrics(factory: NOOPMetricsHandler.instance) }

    /// Metric names, as Prometheus shows them.
    public enum Name {
        public static let tasksSubmitted = "agentd_tasks_submitted_total"
        public static let tasksFinished = "agentd_tasks_finished_total"
        public static let taskAttempts = "agentd_task_attempts_total"
        public static let leasesExpired = "agentd_lease_expired_total"
        public static let queueWait = "agentd_task_queue_wait_seconds"
        public static let taskRun = "agentd_task_run_seconds"
        public static let tasksInFlight = "agentd_tasks_in_flight"
        public static let httpRequests = "agentd_http_requests_total"
        public static let httpSeconds = "agentd_http_request_seconds"
        public static let poolWait = "agentd_db_pool_wait_seconds"
        public static let connections = "agentd_db_connections"
        public static let notifyReconnects = "agentd_notify_reconnects_total"
        public static let tokenUsage = "gen_ai_client_token_usage"
        public static let operationDuration = "gen_ai_client_operation_duration_seconds"
        public static let modelErrors = "agentd_model_errors_total"
        public static let queueDepth = "agentd_queue_depth"
        public static let interruptsPending = "agentd_interrupts_pending"
        public static let interruptWait = "agentd_interrupt_wait_seconds"
        public static let decisions = "agentd_decisions_total"
        public static let toolCalls = "agentd_tool_calls_total"
        public static let toolSeconds = "agentd_tool_call_seconds"
    }

    /// Histogram buckets by metric name, for the Prometheus factory. Sub-millisecond buckets for
    /// what is usually fast (dispatch, requests, pool waits); the OpenTelemetry GenAI conventions'
    /// advised boundaries for model calls and tokens.
    public static let durationBuckets: [String: [Duration]] = {
        let fast: [Duration] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
            .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
        ]
        let model: [Duration] = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92].map {
            .milliseconds(Int64($0 * 1000))
        }
        let run: [Duration] = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
            .seconds(300),
        ]
        let human: [Duration] = [
            .seconds(1), .seconds(5), .seconds(15), .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(1800),
            .seconds(3600), .seconds(4 * 3600), .seconds(12 * 3600), .seconds(24 * 3600), .seconds(7 * 24 * 3600),
        ]
        return [
            Name.queueWait: fast, Name.httpSeconds: fast, Name.poolWait: fast, Name.operationDuration: model, Name.taskRun: run,
            Name.toolSeconds: run, Name.interruptWait: human,
        ]
    }()

    public static let valueBuckets: [String: [Double]] = [
        Name.tokenUsage: [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262_144, 1_048_576, 4_194_304]
    ]

    // MARK: Tasks

    /// How a task ended, as `agentd_tasks_finished_total{status}` counts it.
    public enum TaskEnd: String, CaseIterable, Sendable {
        case completed, error, cancelled
    }

    public func taskFinished(_ end: TaskEnd) { finished[end]?.increment() }

    /// A run of the task started (its claim): its first step is timed from here.
    public func stepsStarted(_ key: TaskKey) {
        stepStarts.withLock { $0[key] = .now }
    }

    /// A step of the task committed; the next one is timed from here. A step of a run that
    /// `stepsStarted` did not see (a claim of another process) is not timed.
    public func stepCommitted(_ key: TaskKey) {
        let now = ContinuousClock.now
        let start = stepStarts.withLock { starts -> ContinuousClock.Instant? in
            guard let start = starts[key] else { return nil }
            starts[key] = now
            return start
        }
        guard let start else { return }
        stepRun.recordNanoseconds((now - start).nanoseconds)
    }

    /// The run stopped: no step of it is timed any more.
    public func stepsEnded(_ key: TaskKey) {
        _ = stepStarts.withLock { $0.removeValue(forKey: key) }
    }

    // MARK: Approvals

    /// An approval decided: `decision` as stored (accept, edit, reject, response), `by` human or
    /// timeout, after `waited` seconds.
    public func decided(_ decision: String, by: String, waited: Double?) {
        let decision = ["accept", "edit", "reject", "response"].contains(decision) ? decision : "other"
        let by = by == "timeout" ? "timeout" : "human"
        let counter = decisions.withLock { cache in
            let key = decision + "/" + by
            if let counter = cache[key] { return counter }
            let counter = Counter(label: Name.decisions, dimensions: [("decision", decision), ("decided_by", by)], factory: factory)
            cache[key] = counter
            return counter
        }
        counter.increment()
        if let waited { interruptWait.recordNanoseconds(Int64(max(0, waited) * 1e9)) }
    }

    // MARK: Tools

    private struct ToolKey: Hashable {
        var tool: String
        var outcome: String
    }

    /// A tool call that ran: `outcome` ok or error (it threw).
    public func toolCall(_ tool: String, outcome: String, nanoseconds: Int64) {
        let key = ToolKey(tool: toolNames.admit(tool), outcome: outcome == "ok" ? "ok" : "error")
        let series = tools.withLock { cache in
            if let series = cache[key] { return series }
            let series = (
                Counter(label: Name.toolCalls, dimensions: [("tool", key.tool), ("outcome", key.outcome)], factory: factory),
                Timer(label: Name.toolSeconds, dimensions: [("tool", key.tool)], factory: factory)
            )
            cache[key] = series
            return series
        }
        series.count.increment()
        series.seconds.recordNanoseconds(nanoseconds)
    }

    // MARK: HTTP

    private struct HTTPKey: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    /// One request answered: `route` is the router's template (`/agent/status/{user_id}/...`),
    /// never the path itself.
    public func httpRequest(route: String, method: String, status: Int, nanoseconds: Int64) {
        let key = HTTPKey(route: route, method: Self.method(method), status: status)
        let series = http.withLock { cache in
            if let series = cache[key] { return series }
            let labels = [("route", key.route), ("method", key.method), ("status", String(key.status))]
            let series = (
                Counter(label: Name.httpRequests, dimensions: labels, factory: factory),
                Timer(label: Name.httpSeconds, dimensions: Array(labels.prefix(2)), factory: factory)
            )
            cache[key] = series
            return series
        }
        series.count.increment()
        series.seconds.recordNanoseconds(nanoseconds)
    }

    /// Methods outside HTTP's registered set (any token is a valid method) count as `other`.
    static func method(_ method: String) -> String {
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(method) ? method : "other"
    }

    // MARK: Model calls (OpenTelemetry GenAI names)

    private struct ModelSeries {
        var input: Recorder
        var output: Recorder
        var duration: Timer
    }

    private func modelSeries(_ model: String) -> ModelSeries {
        let name = modelNames.admit(model)
        return models.withLock { cache in
            if let series = cache[name] { return series }
            let common = [("gen_ai_operation_name", "chat"), ("gen_ai_provider_name", "openai"), ("gen_ai_request_model", name)]
            let series = ModelSeries(
                input: Recorder(label: Name.tokenUsage, dimensions: common + [("gen_ai_token_type", "input")], aggregate: true, factory: factory),
                output: Recorder(label: Name.tokenUsage, dimensions: common + [("gen_ai_token_type", "output")], aggregate: true, factory: factory),
                duration: Timer(label: Name.operationDuration, dimensions: common, factory: factory))
            cache[name] = series
            return series
        }
    }

    /// A model call that answered.
    public func modelCall(model: String, nanoseconds: Int64, inputTokens: Int?, outputTokens: Int?) {
        let series = modelSeries(model)
        series.duration.recordNanoseconds(nanoseconds)
        if let inputTokens { series.input.record(inputTokens) }
        if let outputTokens { series.output.record(outputTokens) }
    }

    /// A model call that failed (after its retries): `kind` from `ModelError.Kind`.
    public func modelFailed(model: String, kind: String, nanoseconds: Int64) {
        modelSeries(model).duration.recordNanoseconds(nanoseconds)
        let counter = modelErrors.withLock { cache in
            if let counter = cache[kind] { return counter }
            let counter = Counter(label: Name.modelErrors, dimensions: [("kind", kind)], factory: factory)
            cache[kind] = counter
            return counter
        }
        counter.increment()
    }

    // MARK: Scrapes

    /// Runs `hook` before every scrape (to set a gauge from the state it reads).
    public func onScrape(_ hook: @escaping @Sendable () -> Void) {
        scrapeHooks.withLock { $0.append(hook) }
    }

    /// Sets the gauges that are read at scrape time.
    public func prepareScrape() {
        for hook in scrapeHooks.withLock({ $0 }) { hook() }
    }

    /// A gauge (`Gauge` records the last value).
    public func gauge(_ name: String, _ dimensions: [(String, String)] = []) -> Gauge {
        Gauge(label: name, dimensions: dimensions, factory: factory)
    }
}

/// Label values that tenants choose (model and tool names), bounded: the first `limit` distinct
/// values pass (cleaned to what a label should hold), every later one is `other`.
public final class BoundedValues: Sendable {
    public let limit: Int
    private let seen = Mutex<Set<String>>([])

    public init(limit: Int) { self.limit = limit }

    public func admit(_ value: String) -> String {
        let cleaned = Self.clean(value)
        return seen.withLock { seen in
            if seen.contains(cleaned) { return cleaned }
            guard seen.count < limit else { return "other" }
            seen.insert(cleaned)
            return cleaned
        }
    }

    private static let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/-".unicodeScalars)

    /// At most 64 characters of `[A-Za-z0-9_.:/-]`, anything else as `_`; empty as `unknown`.
    static func clean(_ value: String) -> String {
        let scalars = value.unicodeScalars.prefix(64).map { allowed.contains($0) ? Character($0) : "_" }
        return scalars.isEmpty ? "unknown" : String(scalars)
    }
}
