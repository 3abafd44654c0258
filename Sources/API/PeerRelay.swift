import AgentKit
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Store
import Synchronization

/// The model's text as it is written (`message.delta`) crosses processes here. It is never
/// stored (a commit per delta would cost every task), so a process whose event stream watches a
/// task that another process runs asks that process for it: one HTTP stream per watched task
/// and process, however many clients watch, open while the task runs there
/// (`POST /internal/deltas`, authenticated by the serving process's own secret, which only
/// processes that can read the database know: `agentd_peers`). What arrives is handed to this
/// process's `TaskWatch`, as its own runs' text is. The same stream says when the running process
/// committed a step, so the watching streams read the stored event at once rather than at their
/// next poll.
public final class PeerRelay: Sendable {
    /// This process, as `tasks.lease_owner` names it.
    public let owner: String
    /// What other processes must present to read this one's deltas.
    let secret: String
    let watch: TaskWatch
    let directory: PeerDirectory
    let httpClient: HTTPClient
    let isRunningHere: @Sendable (TaskKey) -> Bool
    let logger: Logger

    private struct Upstream {
        var runner: String
        var holders: Int
        var reader: Task<Void, Never>?
        /// Which reader `reader` is: one that ends clears only its own entry.
        var readerID = 0
    }

    private struct State {
        var upstreams: [TaskKey: Upstream] = [:]
        var peers: [String: PeerDirectory.Peer] = [:]
        /// Runners that could not be reached lately, not tried again for a few seconds.
        var unreachable: [String: ContinuousClock.Instant] = [:]
        var nextReaderID = 0
    }

    private let state = Mutex(State())

    public init(
        owner: String, secret: String, watch: TaskWatch, directory: PeerDirectory, httpClient: HTTPClient, logger: Logger,
        isRunningHere: @escaping @Sendable (TaskKey) -> Bool
    ) {
        self.owner = owner
        self.secret = secret
        self.watch = watch
        self.directory = directory
        self.httpClient = httpClient
        self.logger = logger
        self.isRunningHere = isRunningHere
    }

    /// A fresh random secret for a process.
    public static func makeSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(generator.next() as UInt64, radix: 16) }.joined(separator: "-")
    }

    // MARK: Watching a task another process runs

    /// A stream of this process watches `key`, which `runner` runs: relay its text here until
    /// `release`. Nothing to do when this process runs it.
    public func acquire(_ key: TaskKey, runner: String) {
        guard runner != owner else { return }
        state.withLock { state in
            if state.upstreams[key]?.runner == runner {
                state.upstreams[key]?.holders += 1
            } else {
                // Another runner now (the task moved): the old relay ends.
                state.upstreams[key]?.reader?.cancel()
                let holders = (state.upstreams[key]?.holders ?? 0) + 1
                state.upstreams[key] = Upstream(runner: runner, holders: holders)
            }
            startReadingIfIdle(key, in: &state)
        }
    }

    /// The stream still sees `runner` running the task: if the relay from it ended (the run
    /// paused and started again there), it starts again.
    public func refresh(_ key: TaskKey, runner: String) {
        guard runner != owner else { return }
        state.withLock { state in
            guard state.upstreams[key]?.runner == runner else { return }
            startReadingIfIdle(key, in: &state)
        }
    }

    public func release(_ key: TaskKey, runner: String) {
        guard runner != owner else { return }
        let stop = state.withLock { state -> Task<Void, Never>?? in
            guard var upstream = state.upstreams[key] else { return nil }
            upstream.holders -= 1
            guard upstream.holders <= 0 else {
                state.upstreams[key] = upstream
                return nil
            }
            state.upstreams[key] = nil
            return .some(upstream.reader)
        }
        guard let stop else { return }
        stop?.cancel()
        // Nobody here watches it any more: its text so far is of no use to a later stream (unless
        // the task now runs here: that text is this process's own).
        if !isRunningHere(key) { watch.runEnded(key) }
    }

    /// Starts a reader for `key` unless one runs. Under the lock, so that a reader that ends at
    /// once cannot finish before it is recorded.
    private func startReadingIfIdle(_ key: TaskKey, in state: inout State) {
        guard let upstream = state.upstreams[key], upstream.reader == nil else { return }
        state.nextReaderID += 1
        let id = state.nextReaderID
        let runner = upstream.runner
        state.upstreams[key]?.readerID = id
        state.upstreams[key]?.reader = Task {
            await self.read(key, runner: runner)
            // Done (the task left that process, or it could not be reached): a later page that
            // still shows it running there asks again.
            self.state.withLock { state in
                if state.upstreams[key]?.readerID == id { state.upstreams[key]?.reader = nil }
            }
        }
    }

    private func read(_ key: TaskKey, runner: String) async {
        let clock = ContinuousClock()
        if let failed = state.withLock({ $0.unreachable[runner] }), clock.now - failed < .seconds(5) { return }
        do {
            guard let peer = try await peer(runner) else { return }
            var request = HTTPClientRequest(url: peer.url + "/internal/deltas")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(peer.secret)")
            request.headers.add(name: "Content-Type", value: "application/json")
            let ids: JSONValue = [
                "tenant_id": .string(key.tenantID), "user_id": .string(key.userID), "session_id": .string(key.sessionID),
                "task_id": .string(key.taskID),
            ]
            request.body = .bytes(ByteBuffer(string: ids.jsonText))
            let response = try await httpClient.execute(request, timeout: .hours(1))
            guard response.status == .ok else { return }
            var line: [UInt8] = []
            for try await chunk in response.body {
                for byte in chunk.readableBytesView {
                    guard byte == UInt8(ascii: "\n") else {
                        line.append(byte)
                        continue
                    }
                    defer { line.removeAll(keepingCapacity: true) }
                    // Released meanwhile: a cancelled reader writes nothing more.
                    if Task.isCancelled { return }
                    if line == Self.changedLine {
                        watch.changed(key)
                    } else if line.starts(with: Array("data: ".utf8)), let delta = Self.delta(from: line.dropFirst(6)) {
                        watch.delta(key, delta)
                    }
                }
            }
        } catch is CancellationError {
            return
        } catch {
            if Task.isCancelled { return }
            state.withLock { $0.unreachable[runner] = clock.now }
            logger.debug("could not relay a task's text from its process", metadata: ["runner": "\(runner)", "error": "\(error)"])
        }
    }

    private func peer(_ runner: String) async throws -> PeerDirectory.Peer? {
        if let known = state.withLock({ $0.peers[runner] }) { return known }
        guard let found = try await directory.peer(runner) else { return nil }
        state.withLock { $0.peers[runner] = found }
        return found
    }

    // MARK: Serving the tasks this process runs

    public var endpoints: RouteCollection<AgentRequestContext> {
        let routes = RouteCollection(context: AgentRequestContext.self)
        routes.post("/internal/deltas", use: serve)
        return routes
    }

    struct DeltaRequest: Decodable {
        var tenant_id: String
        var user_id: String
        var session_id: String
        var task_id: String
    }

    /// The text of a task this process runs, from the model call in progress, until the task
    /// leaves this process. Only for peers: the secret is this process's own.
    @Sendable func serve(_ request: Request, context: AgentRequestContext) async throws -> Response {
        let presented = request.headers[.authorization] ?? ""
        guard Self.same(presented, "Bearer " + secret) else { throw APIError(.unauthorized, "a peer secret is required") }
        let body = try await JSONBody.decode(DeltaRequest.self, from: request, context: context)
        let key = TaskKey(tenantID: body.tenant_id, userID: body.user_id, sessionID: body.session_id, taskID: body.task_id)
        // The peer saw the claim commit; this process registers the run a moment after it.
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(500)
        while !isRunningHere(key), clock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        guard isRunningHere(key) else { throw APIError.conflict("this process does not run that task") }
        let subscription = watch.subscribe(key, deltas: true)
        let isRunningHere = self.isRunningHere
        let stream = ResponseBody { writer in
            defer { subscription.cancel() }
            try await writer.write(ByteBuffer(string: ": relaying\n\n"))
            var running = true
            while running, !subscription.isClosed {
                // Checked before the wait, written after it: what came before the run ended goes out too.
                running = isRunningHere(key)
                let wake = await subscription.next(timeout: running ? .seconds(1) : .zero)
                var out = wake.deltas.map(Self.frame).joined()
                if wake.changed { out += String(decoding: Self.changedLine, as: UTF8.self) + "\n\n" }
                if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: stream)
    }

    /// A step of the task committed (its stored event can be read).
    static let changedLine = Array("event: changed".utf8)

    static func frame(_ delta: MessageDelta) -> String {
        var object: [String: JSONValue] = ["position": .number(Double(delta.position))]
        switch delta.delta {
        case .text(let text): object["content"] = .string(text)
        case .restart: object["restart"] = true
        case .done: object["done"] = true
        }
        return "data: \(JSONValue.object(object).jsonText)\n\n"
    }

    static func delta(from data: ArraySlice<UInt8>) -> MessageDelta? {
        guard case .object(let object)? = try? JSONValue(parsing: Array(data)),
            let position = object["position"]?.numberValue, position.isFinite, position >= 0, position < 1e9
        else { return nil }
        if object["restart"] == true { return MessageDelta(position: Int(position), delta: .restart) }
        if object["done"] == true { return MessageDelta(position: Int(position), delta: .done) }
        return object["content"]?.stringValue.map { MessageDelta(position: Int(position), delta: .text($0)) }
    }

    /// Compares secrets in time that does not depend on where they differ.
    static func same(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
