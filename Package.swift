// swift-tools-version:6.0
import PackageDescription

let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let asyncHTTPClient = Target.Dependency.product(name: "AsyncHTTPClient", package: "async-http-client")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")
let coreMetrics = Target.Dependency.product(name: "CoreMetrics", package: "swift-metrics")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")

let package = Package(
    name: "agentd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "agentd", targets: ["agentd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // libpq's C API; pkg-config finds the headers, apt names the package that ships them.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // Our libpq wrapper: connections, bound parameters, rows, LISTEN/NOTIFY, the pool.
        .target(name: "Postgres", dependencies: ["CLibPQ", .product(name: "NIOPosix", package: "swift-nio"), logging]),
        // The agent: the run (AgentRun), messages, the ChatModel and Tool protocols, the step planner. No SQL, no HTTP.
        .target(name: "AgentKit"),
        // The service's metrics through swift-metrics (a factory per service: Prometheus's in `agentd serve`).
        .target(name: "Telemetry", dependencies: ["AgentKit", coreMetrics]),
        // ChatModel over any OpenAI-compatible /chat/completions endpoint.
        .target(name: "ModelClient", dependencies: ["AgentKit", asyncHTTPClient, logging]),
        // HTTP to the hosts tenants name (MCP servers, webhooks) under the SSRF rules.
        .target(
            name: "Outbound",
            dependencies: [
                "AgentKit", asyncHTTPClient, .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        // Tools of remote MCP servers (streamable HTTP).
        .target(
            name: "MCPClient",
            dependencies: [
                "AgentKit", "Outbound", asyncHTTPClient, logging, serviceLifecycle, .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        // Repositories, the Notifier (LISTEN), migrations: every SQL statement of the service lives here.
        .target(name: "Store", dependencies: ["Postgres", "AgentKit", logging, serviceLifecycle, .product(name: "Crypto", package: "swift-crypto")]),
        // Claimer, worker slots, leases, reaper; runs an AgentRun per claimed task. No driver: Store's errors only.
        .target(name: "TaskDispatch", dependencies: ["Store", "AgentKit", "Telemetry", logging, serviceLifecycle]),
        // Sends the webhook deliveries that Store holds: signed, retried with backoff, any process.
        .target(
            name: "Webhooks",
            dependencies: [
                "Store", "Outbound", "AgentKit", asyncHTTPClient, logging, serviceLifecycle, .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        // The REST contract: routes, request/response types, status waits, error mapping. No driver.
        .target(name: "API", dependencies: ["Store", "AgentKit", "Telemetry", hummingbird, asyncHTTPClient, logging, .product(name: "NIOHTTP1", package: "swift-nio")]),
        // Configuration and wiring: one function builds the whole service for main and the tests.
        .target(
            name: "AgentdApp",
            dependencies: [
                "API", "TaskDispatch", "Store", "ModelClient", "MCPClient", "Outbound", "Webhooks", "AgentKit", "Postgres", "Telemetry", hummingbird,
                asyncHTTPClient, logging, serviceLifecycle, unixSignals, coreMetrics, prometheus,
            ]
        ),
        .executableTarget(
            name: "agentd",
            dependencies: ["AgentdApp", "Store", "AgentKit", "Postgres", .product(name: "ArgumentParser", package: "swift-argument-parser"), logging, serviceLifecycle]
        ),
        // A scripted OpenAI-compatible model server over real HTTP: the model stand-in of the tests and of `make bench`.
        .target(name: "ScriptedModel", dependencies: ["AgentKit", hummingbird, logging, serviceLifecycle]),
        // `agentd serve` as a child process, for the tests that kill it and for `make bench`.
        .target(name: "AgentdProcess"),
        // `make bench` and `make bench-memory`: measurements, not tests.
        .target(name: "BenchSupport", dependencies: ["Store"]),
        .executableTarget(
            name: "agentd-bench",
            dependencies: [
                "BenchSupport", "ScriptedModel", "AgentdProcess", "Store", "Postgres", "AgentKit", "ModelClient", "TaskDispatch", asyncHTTPClient,
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"), logging,
            ]
        ),
        // Helpers shared by the test targets: throwaway databases; re-exports the scripted model server.
        .target(
            name: "TestSupport",
            dependencies: ["Postgres", "Store", "AgentKit", "ScriptedModel", "AgentdProcess", hummingbird, logging, serviceLifecycle, asyncHTTPClient],
            path: "Tests/TestSupport"),
        .testTarget(name: "AgentKitTests", dependencies: ["AgentKit"]),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "Store", "TestSupport"]),
        .testTarget(name: "MCPClientTests", dependencies: ["MCPClient", "AgentKit", "TestSupport", "AgentdProcess", asyncHTTPClient, logging]),
        .testTarget(name: "ModelClientTests", dependencies: ["ModelClient", "AgentKit", "TestSupport", "AgentdProcess", asyncHTTPClient]),
        .testTarget(
            name: "AgentdTests",
            dependencies: [
                "AgentdApp", "AgentKit", "Store", "Postgres", "TestSupport", "BenchSupport", "AgentdProcess", asyncHTTPClient, serviceLifecycle,
                logging,
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
