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
    /// A comment line this often while nothing happens, so that proxies keep the stream open.
    let keepAlive: Duration

    public init(events: EventStore, watch: TaskWatch, poller: EventPoller, keepAlive: Duration) {
        self.events = events
        self.watch = watch
        self.poller = poller
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
        let subscription = watch.subscribe(key)
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
        let keepAlive = self.keepAlive
        let body = ResponseBody { writer in
            defer { subscription.cancel() }
            var page = first
            var last = options.after
            var polled: Int?
            defer { if let polled { poller.stop(key, id: polled) } }
            while true {
                if !page.events.isEmpty {
                    try await writer.write(ByteBuffer(string: page.events.map { Self.frame($0, key: key) }.joined()))
                    last = page.events.last?.seq ?? last
                }
                let caughtUp = last >= page.latest
                if caughtUp {
                    if Self.isOver(page.state, follow: options.follow) || subscription.isClosed { break }
                    if let polled {
                        poller.advance(key, id: polled, latest: last)
                    } else {
                        polled = poller.track(key, latest: last)
                    }
                    if !(await subscription.next(timeout: keepAlive)) {
                        try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    }
                    if subscription.isClosed { break }
                }
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
