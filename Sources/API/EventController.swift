import AgentKit
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Store

/// `GET /agent/events/{user_id}/{session_id}/{task_id}`: a task's events as Server-Sent Events,
/// replayable from any point for as long as the task exists (or as a JSON array).
public struct EventController: Sendable {
    let events: EventStore
    let watch: TaskWatch
    let poller: EventPoller
    let relay: PeerRelay
    /// A comment line this often while nothing happens, so that proxies keep the stream open.
    let keepAlive: Duration

    public init(events: EventStore, watch: TaskWatch, poller: EventPoller, relay: PeerRelay, keepAlive: Duration) {
        self.events = events
        self.watch = watch
        self.poller = poller
        self.relay = relay
        self.keepAlive = keepAlive
    }

    /// Stored events read per statement.
    static let pageSize = 500

    public var endpoints: RouteCollection<TenantRequestContext> {
        let routes = RouteCollection(context: TenantRequestContext.self)
        routes.get("/agent/events/:user_id/:session_id/:task_id", use: stream)
        return routes
    }

    struct Options {
        var after: Int
        var follow: Bool
        var json: Bool
    }

    static func options(_ request: Request) throws -> Options {
        let query = request.uri.queryParameters
        // The header is what an EventSource sends when it reconnects: it is newer than the URL's ?after.
        let afterText = Self.lastEventID.flatMap { request.headers[$0] } ?? query.get("after")
        var after = 0
        if let afterText {
            guard let value = Int(afterText.trimmingCharacters(in: .whitespaces)), (0...Int(Int32.max)).contains(value) else {
                throw APIError.unprocessable("after (or Last-Event-ID) must be an event seq: a whole number from 0")
            }
            after = value
        }
        let follow: Bool
        switch query.get("follow") {
        case nil, "0", "false": follow = false
        case "1", "true", "": follow = true
        default: throw APIError.unprocessable("follow must be 1 or 0")
        }
        let json: Bool
        switch query.get("format") {
        case "json": json = true
        case "sse": json = false
        case nil:
            let accept = request.headers[.accept] ?? ""
            json = accept.contains("application/json") && !accept.contains("text/event-stream")
        default: throw APIError.unprocessable("format must be json or sse")
        }
        return Options(after: after, follow: follow, json: json)
    }

    @Sendable func stream(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let key = try context.pathTaskKey()
        let options = try Self.options(request)
        if options.json { return try await jsonEvents(key, after: options.after) }

        // Registered before the first read: a change committed meanwhile wakes the first wait.
        let subscription = watch.subscribe(key, deltas: true)
        let first: EventStore.Page
        do {
            guard let page = try await events.events(key, after: options.after, limit: Self.pageSize) else {
                throw APIError.notFound("task \(key.userID):\(key.sessionID):\(key.taskID) not found")
            }
            first = page
        } catch {
            subscription.cancel()
            throw error
        }
        if first.events.isEmpty, Self.isOver(first.state, follow: options.follow) {
            // Nothing more will come: 204 also tells an EventSource not to reconnect.
            subscription.cancel()
            return Response(status: .noContent)
        }
        let events = self.events
        let poller = self.poller
        let relay = self.relay
        let keepAlive = self.keepAlive
        let body = ResponseBody { writer in
            defer { subscription.cancel() }
            var page: EventStore.Page? = first
            var last = options.after
            var latest = first.latest
            var state = first.state
            var polled: Int?
            // The process whose model text this stream relays (`PeerRelay`), while the task runs there.
            var relayed: String?
            defer {
                if let polled { poller.stop(key, id: polled) }
                if let relayed { relay.release(key, runner: relayed) }
            }
            var text = LiveText()
            // A change seen while waiting for text: read again before waiting.
            var unread = false
            let clock = ContinuousClock()
            while true {
                if let current = page {
                    // Text relayed from another process may trail the stored message that the
                    // database (or a notification) brought first: wait a moment for its end.
                    if let runner = relayed, runner != relay.owner, let position = Self.lastMessagePosition(current.events),
                        position > text.sentPosition, !text.done.contains(position)
                    {
                        let deadline = clock.now + Self.relayGrace
                        while !text.done.contains(position), clock.now < deadline, !subscription.isClosed {
                            let wake = await subscription.next(timeout: deadline - clock.now)
                            text.absorb(wake.deltas)
                            unread = unread || wake.changed
                        }
                    }
                    let out = text.place(current.events, key: key)
                    // A stream that starts after a message (Last-Event-ID) must not repeat its text.
                    text.stored(through: current.lastPosition)
                    if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
                    last = current.events.last?.seq ?? last
                    (latest, state, page) = (current.latest, current.state, nil)
                    if current.runner != relayed {
                        if let relayed { relay.release(key, runner: relayed) }
                        if let runner = current.runner { relay.acquire(key, runner: runner) }
                        relayed = current.runner
                    } else if let runner = current.runner {
                        relay.refresh(key, runner: runner)
                    }
                }
                if last >= latest, !unread {
                    if Self.isOver(state, follow: options.follow) || subscription.isClosed { break }
                    if let polled {
                        poller.advance(key, id: polled, latest: last)
                    } else {
                        polled = poller.track(key, latest: last)
                    }
                    let wake = await subscription.next(timeout: keepAlive)
                    text.absorb(wake.deltas)
                    if !wake.changed {
                        if wake.deltas.isEmpty {
                            // Quiet: a comment keeps proxies from closing the stream (and the read
                            // below finds a change that a lost wake-up did not announce).
                            try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                        } else {
                            // Text of a message not stored yet: out at once.
                            let out = text.flush(key: key)
                            if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
                            continue
                        }
                    }
                    if subscription.isClosed { break }
                }
                unread = false
                guard let next = try await events.events(key, after: last, limit: Self.pageSize) else { break }  // deleted
                page = next
            }
            try await writer.finish(nil)
        }
        var headers: HTTPFields = [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"]
        // nginx buffers proxied responses unless told not to.
        if let name = Self.accelBuffering { headers[name] = "no" }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// The stored events after `after`, as a JSON array: for clients without SSE.
    func jsonEvents(_ key: TaskKey, after: Int) async throws -> Response {
        var all: [JSONValue] = []
        var last = after
        while true {
            guard let page = try await events.events(key, after: last, limit: Self.pageSize) else {
                throw APIError.notFound("task \(key.userID):\(key.sessionID):\(key.taskID) not found")
            }
            all += page.events.map { $0.json(for: key) }
            last = page.events.last?.seq ?? last
            if page.events.count < Self.pageSize { break }
        }
        return JSONBody.response(.array(all))
    }

    /// How long a stream waits for the end of a message's text relayed from another process
    /// before it writes the stored message anyway (the text is a preview; the message is whole).
    static let relayGrace: Duration = .milliseconds(250)

    static func lastMessagePosition(_ events: [TaskEvent]) -> Int? {
        events.last { $0.kind == .message }?.fields["position"]?.numberValue.map(Int.init)
    }

    /// A live `message.delta`: text as the model writes it (`restart`: drop the text so far, the
    /// model call is being tried again).
    static func event(for delta: MessageDelta) -> TaskEvent {
        var fields: [String: JSONValue] = ["position": .number(Double(delta.position))]
        switch delta.delta {
        case .text(let text): fields["content"] = .string(text)
        case .restart: (fields["content"], fields["restart"]) = ("", true)
        case .done: fields["content"] = ""  // not sent: `LiveText` keeps the end marker to itself
        }
        return TaskEvent(seq: nil, kind: .messageDelta, createdAt: Date().timeIntervalSince1970, fields: fields)
    }

    /// Nothing will follow: the task ended, or waits for a human and the client did not ask to follow.
    static func isOver(_ state: TaskState, follow: Bool) -> Bool {
        switch state {
        case .completed, .error, .cancelled: true
        case .interrupted: !follow
        case .queued, .running: false
        }
    }

    /// One event in the SSE wire format. The JSON text is one line (JSON escapes line breaks).
    static func frame(_ event: TaskEvent, key: TaskKey) -> String {
        let id = event.seq.map { "id: \($0)\n" } ?? ""
        return "\(id)event: \(event.kind.rawValue)\ndata: \(event.json(for: key).jsonText)\n\n"
    }

    static let accelBuffering = HTTPField.Name("X-Accel-Buffering")
    static let lastEventID = HTTPField.Name("Last-Event-ID")
}

/// The model's text an event stream holds until it can place it: right before the stored message
/// it belongs to, or, while that message is not stored yet, as soon as it comes.
struct LiveText {
    private(set) var pending: [MessageDelta] = []
    /// Messages whose text is whole (`ModelDelta.done`).
    private(set) var done: Set<Int> = []
    /// The last stored message written: text for it or before it is stale.
    private(set) var sentPosition = -1

    mutating func absorb(_ deltas: [MessageDelta]) {
        for delta in deltas where delta.position > sentPosition {
            if delta.delta == .done { done.insert(delta.position) } else { pending.append(delta) }
        }
    }

    /// `events` as frames, each message's text right before it, and the text of later messages after them.
    mutating func place(_ events: [TaskEvent], key: TaskKey) -> String {
        var out = ""
        for event in events {
            if event.kind == .message, let position = event.fields["position"]?.numberValue.map(Int.init) {
                out += pending.filter { $0.position <= position }.map { EventController.frame(EventController.event(for: $0), key: key) }.joined()
                pending.removeAll { $0.position <= position }
                sentPosition = max(sentPosition, position)
                done = done.filter { $0 > position }
            }
            out += EventController.frame(event, key: key)
        }
        return out + flush(key: key)
    }

    /// The turn's messages up to `position` are stored: their text is stale.
    mutating func stored(through position: Int) {
        guard position > sentPosition else { return }
        sentPosition = position
        pending.removeAll { $0.position <= position }
        done = done.filter { $0 > position }
    }

    mutating func flush(key: TaskKey) -> String {
        defer { pending = [] }
        return pending.map { EventController.frame(EventController.event(for: $0), key: key) }.joined()
    }
}
