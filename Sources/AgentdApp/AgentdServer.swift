import API
import AgentKit
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import MCPClient
import ModelClient
import Outbound
import Postgres
import Prometheus
import ServiceLifecycle
import Synchronization
import Store
import TaskDispatch
import Telemetry
import UnixSignals
import Webhooks

/// Builds and runs the whole service: HTTP API, dispatcher and worker slots in one process.
/// `agentd serve` and the tests both come through here.
public enum AgentdServer {
    /// Runs until a graceful-shutdown signal (or cancellation), then releases everything.
    /// - Parameter onServerRunning: called with the bound port once the server accepts connections.
    public static func run(
        _ configuration: AgentdConfiguration, logger: Logger, gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
        model: (any ChatModel)? = nil, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        // This service's own registry (not the process-wide default): the tests run several
        // services in one process and scrape each.
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = ServiceMetrics.durationBuckets
        factory.valueHistogramBuckets = ServiceMetrics.valueBuckets
        let metrics = configuration.metricsEnabled ? ServiceMetrics(factory: factory) : .disabled()
        let pool = PostgresPool(
            configuration: .init(
                conninfo: configuration.databaseURL, size: configuration.dbPoolSize, acquireTimeout: .seconds(5),
                connectionSettings: .init(
                    statementTimeout: configuration.statementTimeout, role: configuration.dbRole),
                onAcquired: { metrics.poolWait.recordNanoseconds($0.nanoseconds) }),
            logger: logger)
        let poolSize = configuration.dbPoolSize
        let connections = (idle: metrics.gauge(ServiceMetrics.Name.connections, [("state", "idle")]),
                           busy: metrics.gauge(ServiceMetrics.Name.connections, [("state", "busy")]))
        let gauges = MetricGauges(pool: pool)
        let queueDepth = metrics.gauge(ServiceMetrics.Name.queueDepth)
        let interruptsPending = metrics.gauge(ServiceMetrics.Name.interruptsPending)
        metrics.onScrape {
            let statistics = pool.statistics
            connections.idle.record(statistics.idle)
            connections.busy.record(min(poolSize, statistics.open - statistics.idle))
        }
        // AsyncHTTPClient keeps 8 connections per host by default and queues the rest; every busy
        // worker slot may be waiting on the model, so the model host gets one connection per slot.
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(1, configuration.workerSlots)
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        // The relay of the model's text holds one long connection per watched task that another
        // process runs, to that process: its own client, so that it never queues behind model calls.
        var peerConfiguration = HTTPClient.Configuration()
        peerConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 4096
        peerConfiguration.timeout.connect = .seconds(2)
        let peerClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: peerConfiguration)
        // Tenants' MCP servers, under OUTBOUND_ALLOWED_HOSTS; a service of the group, closed here too
        // when the group never ran.
        let toolbox = MCPToolbox(policy: configuration.outboundPolicy, ttl: configuration.mcpToolsTTL, logger: logger)
        // Tenants' webhook endpoints, under the same rules.
        let webhookHTTP = OutboundHTTP(policy: configuration.outboundPolicy)
        do {
            try await serve(
                configuration, pool: pool, httpClient: httpClient, peerClient: peerClient, toolbox: toolbox, webhookHTTP: webhookHTTP,
                model: model, metrics: metrics,
                scrape: {
                    // The cluster's figures, counted at most once per interval by all processes together.
                    do {
                        let figures = try await gauges.read(interval: configuration.metricsDatabaseInterval)
                        queueDepth.record(figures.queueDepth)
                        interruptsPending.record(figures.interruptsPending)
                    } catch {
                        logger.debug("could not read the queue's figures for /metrics", metadata: ["error": "\(String(reflecting: error))"])
                    }
                    metrics.prepareScrape()
                    return registry.emitToBuffer()
                }, logger: logger, signals: gracefulShutdownSignals, onServerRunning: onServerRunning)
        } catch {
            await toolbox.close()
            await webhookHTTP.shutdown()
            await pool.shutdown()
            try? await httpClient.shutdown()
            try? await peerClient.shutdown()
            throw error
        }
        await toolbox.close()
        await webhookHTTP.shutdown()
        await pool.shutdown()
        try await httpClient.shutdown()
        try await peerClient.shutdown()
    }

    private static func serve(
        _ configuration: AgentdConfiguration, pool: PostgresPool, httpClient: HTTPClient, peerClient: HTTPClient, toolbox: MCPToolbox,
        webhookHTTP: OutboundHTTP, model: (any ChatModel)?, metrics: ServiceMetrics, scrape: @escaping @Sendable () async -> [UInt8],
        logger: Logger,
        signals: [UnixSignal], onServerRunning: @escaping @Sendable (Int) async -> Void
    ) async throws {
        let unmetered = model ?? makeModel(configuration, httpClient: httpClient, logger: logger)
        logger.info("model", metadata: ["name": "\(unmetered.name)", "base_url": "\(configuration.llmBaseURL ?? "offline")"])
        let chatModel = MeteredChatModel(unmetered, metrics: metrics)
        let owner = "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UUID().uuidString.prefix(8))"
        let watch = TaskWatch()
        // This process's own steps wake its event streams at once; `EventPoller` covers the others'.
        guard let notifier = Notifier(conninfo: configuration.databaseURL, logger: logger) else {
            throw RefusedToStart(description: "cannot create the notifier's wake-up pipe")
        }
        logger.info("database", metadata: ["servers": "\((try? PostgresTargets.parse(configuration.databaseURL))?.description ?? "?")"])
        // Whether an acknowledged commit survives the database machine's loss (README, "A
        // database cluster"); unreadable at start, the process runs and says so.
        do {
            let report = try await ClusterDurability.read(pool: pool).report
            if report.warning { logger.warning("\(report.message)") } else { logger.info("\(report.message)") }
        } catch {
            logger.notice("database: its replication settings could not be read at start", metadata: ["error": "\(String(reflecting: error))"])
        }
        // Unreadable at start (the database is down): the process runs without them, correct and slower.
        let readCaches = (try? await SettledTasks.invalidationTriggersInstalled(pool: pool)) ?? false
        if !readCaches {
            logger.warning(
                "the triggers of sql/013 and sql/014 are not installed or not readable: settled tasks and API keys are read from the database every time")
        }
        let settled =
            readCaches && configuration.statusCacheBytes > 0 ? SettledTasks(capacityBytes: configuration.statusCacheBytes, notifier: notifier) : nil
        // One per process, shared by invokes and workers' steps, so that they share commits too.
        let groupCommit = configuration.groupCommitMax > 1 ? GroupCommit(pool: pool, maxStatements: configuration.groupCommitMax) : nil
        let queue = TaskQueue(
            pool: pool, owner: owner, lease: configuration.lease, settled: settled, group: groupCommit,
            onStep: { key in
                watch.changed(key)
                metrics.stepCommitted(key)
            })
        let embeddingFailures = EveryMinute()
        let semantic = configuration.embeddingsBaseURL.map { url in
            MemoryStore.Semantic(
                embedder: OpenAICompatibleEmbeddings(
                    baseURL: url, model: configuration.embeddingsModel, apiKey: configuration.embeddingsAPIKey,
                    queryPrefix: configuration.embeddingsQueryPrefix, documentPrefix: configuration.embeddingsDocumentPrefix, httpClient: httpClient),
                minimumSimilarity: configuration.embeddingsMinimumSimilarity,
                supportingSimilarity: configuration.embeddingsSupportingSimilarity,
                onFailure: { error in
                    if embeddingFailures.due() {
                        logger.warning("a query's vector could not be made; recall goes on by words", metadata: ["error": "\(error)"])
                    }
                })
        }
        if let semantic { logger.info("embeddings", metadata: ["model": "\(semantic.embedder.model)", "base_url": "\(configuration.embeddingsBaseURL ?? "")"]) }
        var ranking = MemoryStore.Ranking()
        ranking.minimumShare = configuration.memoryMinimumShare
        let memories = MemoryStore(pool: pool, replacesRestatements: configuration.memoryReplacesRestated, semantic: semantic, ranking: ranking)
        let secrets = try configuration.secretsKey.map { try SecretBox(encoded: $0) }
        if secrets == nil { logger.notice("AGENTD_SECRETS_KEY is not set: agents whose MCP servers have header values are refused") }
        let agents = AgentStore(pool: pool, secrets: secrets)
        let catalog = AgentCatalog(
            store: agents,
            environment: ResolvedAgent(
                tools: configuration.toolRegistry(adding: [RecallMemoryTool(memories: memories, limit: configuration.memoryRecallLimit)]),
                settings: AgentSettings(
                    maxSteps: configuration.maxSteps, historyMessages: configuration.historyMessages,
                    memoryRecallLimit: configuration.memoryRecallLimit, approvalTimeout: configuration.approvalTimeout)),
            remote: toolbox, timeoutAction: configuration.approvalTimeoutAction)
        let interrupts = InterruptStore(pool: pool)
        let expiry = ApprovalExpiry(
            interrupts: interrupts, logger: logger, onExpired: { watch.changed($0) },
            onDecided: { metrics.decided($0, by: "timeout", waited: $1) })
        let runner = TaskRunner(
            queue: queue, memories: memories, model: chatModel, agents: catalog,
            logger: logger, onDelta: { watch.delta($0, $1) }, onRunEnded: { watch.runEnded($0) }, onApprovalAsked: { expiry.asked($0) },
            metrics: metrics)
        let webhooks = WebhookStore(pool: pool, secrets: secrets)
        let deliverer = WebhookDeliverer(store: webhooks, http: webhookHTTP, logger: logger)
        notifier.onWebhooks { deliverer.poke() }
        notifier.onSettled { settled in
            if let settled { watch.settled(settled.key) } else { watch.wakeAll() }
        }
        let dispatcher = Dispatcher(
            configuration: .init(
                slots: configuration.workerSlots, lease: configuration.lease, shutdownGrace: configuration.shutdownGrace),
            queue: queue, runner: runner, notifier: notifier, logger: logger, metrics: metrics)
        let tasksInFlight = metrics.gauge(ServiceMetrics.Name.tasksInFlight)
        metrics.onScrape { tasksInFlight.record(dispatcher.running) }
        // The first connect is not a reconnect.
        let connected = Atomic<Bool>(false)
        notifier.onConnect { if connected.exchange(true, ordering: .relaxed) { metrics.notifyReconnects.increment() } }

        let keys = KeyStore(pool: pool, notifier: readCaches ? notifier : nil)
        let open = !configuration.authRequired && configuration.bindsLoopbackOnly
        if !configuration.authRequired, !configuration.bindsLoopbackOnly, try await !keys.anyActive() {
            throw RefusedToStart(
                description: "refusing to serve on \(configuration.host) with no API key: anyone who can reach the port could read "
                    + "every user's data. Create a key with `agentd keys create --tenant <tenant>`, or bind to 127.0.0.1.")
        }

        // HTTP allows HEAD wherever GET is: the GET handler runs and its body is dropped.
        let router = Router(context: AgentRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: RequestIDMiddleware())
        // Outermost but the id, so that it counts the status ErrorMiddleware makes of an error.
        if configuration.metricsEnabled { router.add(middleware: HTTPMetricsMiddleware(metrics: metrics)) }
        router.add(middleware: ErrorMiddleware(logger: logger))
        let openAPI = Self.openAPIDocument()
        if openAPI == nil { logger.warning("openapi.yaml not found beside the sql/ folder; GET /openapi.yaml answers 404") }
        router.addRoutes(PublicController(checkDatabase: { try await pool.healthCheck() }, openAPI: openAPI).endpoints)
        let consoleFiles = Self.consoleFiles()
        if consoleFiles == nil { logger.warning("console/ not found beside the sql/ folder; /console/ answers 404") }
        router.addRoutes(ConsoleController(files: consoleFiles ?? [:], isOpen: { open ? try await !keys.anyActive() : false }).endpoints)
        // Peers authenticate with this process's own secret, not with API keys.
        let peers = PeerDirectory(pool: pool)
        let secret = PeerRelay.makeSecret()
        // Says again every hour that this process serves (`PeerDirectory.refreshInterval`).
        let registration = Mutex<Task<Void, Never>?>(nil)
        let relay = PeerRelay(
            owner: owner, secret: secret, watch: watch, directory: peers, httpClient: peerClient, logger: logger,
            isRunningHere: { dispatcher.isRunning($0) })
        router.addRoutes(relay.endpoints)
        // Every route added after it has a caller, or is refused: the data routes' context
        // cannot exist without one.
        router.add(middleware: AuthMiddleware(keys: keys, mode: open ? .openWhileNoKeys : .required))
        if configuration.metricsEnabled { router.addRoutes(MetricsController(scrape: scrape).endpoints) }
        let data = router.group(context: TenantRequestContext.self)
        let tasks = TaskStore(
            pool: pool, settled: settled, group: groupCommit, onCancelled: { for _ in 0..<$0 { metrics.taskFinished(.cancelled) } },
            onDecided: { metrics.decided($0, by: $1, waited: $2) })
        data.addRoutes(
            AgentController(tasks: tasks, sessions: SessionStore(pool: pool), memories: memories, watch: watch, metrics: metrics).endpoints)
        data.addRoutes(MemoryController(memories: memories).endpoints)
        data.addRoutes(InboxController(interrupts: interrupts).endpoints)
        data.addRoutes(
            AgentsController(agents: agents, builtinTools: catalog.builtinToolNames, outbound: configuration.outboundPolicy).endpoints)
        data.addRoutes(WebhooksController(webhooks: webhooks, outbound: configuration.outboundPolicy).endpoints)
        data.addRoutes(ReportsController(reports: ReportStore(pool: pool)).endpoints)
        let events = EventStore(pool: pool)
        let poller = EventPoller(interval: EventPoller.defaultInterval, watch: watch, logger: logger) { try await events.latest($0) }
        data.addRoutes(
            EventController(events: events, watch: watch, poller: poller, relay: relay, keepAlive: configuration.eventKeepAlive).endpoints)

        let app = Application(
            router: router,
            server: .http1(configuration: .init(idleTimeout: .milliseconds(Int64(configuration.httpIdleTimeout.milliseconds)))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "agentd"),
            // Started in this order, stopped in reverse: the notifier before the dispatcher that
            // it wakes, and both before the HTTP server; the MCP sessions close after the last
            // task has stopped.
            services: [
                toolbox, notifier, dispatcher,
                LeaseReaper(
                    queue: queue, interval: configuration.lease / 3,
                    maxAttempts: configuration.maxAttempts, logger: logger, metrics: metrics),
                expiry,
            ] + (webhooks.canStoreSecrets ? [deliverer] : [])
                + (semantic.map { [MemoryEmbedder(memories: memories, embedder: $0.embedder, notifier: notifier, logger: logger)] } ?? []),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                let url = configuration.peerURL(port: port)
                do {
                    try await peers.register(owner: owner, url: url, secret: secret)
                } catch {
                    logger.warning("could not register for peers; other processes' event streams get no text of this one's tasks",
                                   metadata: ["error": "\(String(reflecting: error))"])
                }
                registration.withLock {
                    $0 = Task {
                        while (try? await Task.sleep(for: PeerDirectory.refreshInterval)) != nil {
                            try? await peers.register(owner: owner, url: url, secret: secret)
                        }
                    }
                }
                await onServerRunning(port)
            },
            logger: logger)
        // Services stop in reverse order: the waiting status reads answer first, so that the HTTP
        // server's graceful shutdown, which waits for requests in flight, does not wait out their ?wait=.
        let group = ServiceGroup(
            configuration: .init(services: [app, StatusWaitCloser(watch: watch)], gracefulShutdownSignals: signals, logger: logger))
        do {
            try await group.run()
        } catch {
            registration.withLock { $0?.cancel() }
            try? await peers.unregister(owner: owner)
            throw error
        }
        registration.withLock { $0?.cancel() }
        try? await peers.unregister(owner: owner)
    }

    /// Answers every waiting status read as soon as shutdown begins.
    struct StatusWaitCloser: Service {
        let watch: TaskWatch

        func run() async throws {
            try? await gracefulShutdown()
            watch.close()
        }
    }

    /// `openapi.yaml` from the repository (or installation) root, the folder that holds sql/.
    static func openAPIDocument() -> ByteBuffer? {
        guard let sql = Migrator.locateDirectory() else { return nil }
        let url = sql.standardizedFileURL.deletingLastPathComponent().appendingPathComponent("openapi.yaml")
        return FileManager.default.contents(atPath: url.path).map { ByteBuffer(bytes: $0) }
    }

    /// The web console's files: `console/` in the same root as sql/ and openapi.yaml.
    static func consoleFiles() -> [String: ConsoleController.File]? {
        guard let sql = Migrator.locateDirectory() else { return nil }
        return ConsoleController.load(from: sql.standardizedFileURL.deletingLastPathComponent().appendingPathComponent("console"))
    }

    public struct RefusedToStart: Error, CustomStringConvertible {
        public var description: String
    }

    /// The whole service as one `Service`, for a caller that runs its own `ServiceGroup`
    /// (the tests do, to stop it with a graceful shutdown).
    public struct AsService: Service {
        let configuration: AgentdConfiguration
        let logger: Logger
        let model: (any ChatModel)?
        let onServerRunning: @Sendable (Int) async -> Void

        public init(
            _ configuration: AgentdConfiguration, logger: Logger, model: (any ChatModel)? = nil,
            onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
        ) {
            self.configuration = configuration
            self.logger = logger
            self.model = model
            self.onServerRunning = onServerRunning
        }

        public func run() async throws {
            try await AgentdServer.run(configuration, logger: logger, gracefulShutdownSignals: [], model: model, onServerRunning: onServerRunning)
        }
    }

    static func makeModel(_ configuration: AgentdConfiguration, httpClient: HTTPClient, logger: Logger) -> any ChatModel {
        guard let baseURL = configuration.llmBaseURL else { return OfflineModel() }
        return OpenAICompatibleModel(
            configuration: .init(
                baseURL: baseURL, apiKey: configuration.llmAPIKey, model: configuration.llmModel,
                timeout: configuration.llmTimeout, maxRetries: configuration.llmMaxRetries, stream: configuration.llmStream),
            httpClient: httpClient, logger: logger)
    }
}

/// True at most once a minute: for a warning that would otherwise repeat with every request.
final class EveryMinute: Sendable {
    private let last = Mutex<ContinuousClock.Instant?>(nil)

    func due() -> Bool {
        last.withLock { last in
            let now = ContinuousClock.now
            if let previous = last, now - previous < .seconds(60) { return false }
            last = now
            return true
        }
    }
}
