import AgentKit
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One Server-Sent Event as a client parses it off the wire.
struct StreamedEvent: Sendable, Equatable {
    var id: Int?
    var type: String
    var data: JSONValue
    /// When the client read it (for latency).
    var receivedAt: ContinuousClock.Instant

    static func == (a: StreamedEvent, b: StreamedEvent) -> Bool { a.id == b.id && a.type == b.type && a.data == b.data }
}

/// What one `GET /agent/events/...` gave: the status, every event, comment lines, and whether
/// the server ended the stream (rather than the client stopping or the time running out).
struct StreamedReply: Sendable {
    var status: Int
    var contentType: String?
    var events: [StreamedEvent]
    var comments: [String]
    var endedByServer: Bool
    /// The body of a reply that was not a stream (an error's JSON).
    var body: String

    var stored: [StreamedEvent] { events.filter { $0.id != nil } }
    var ids: [Int] { stored.compactMap(\.id) }
}

extension ServiceHarness {
    /// Reads an event stream with a real HTTP client and a line-by-line SSE parser, until the
    /// server ends it, `stop` says so for an event, or `timeout` passes.
    func streamEvents(
        _ path: String, lastEventID: String? = nil, authorization: String? = nil, accept: String? = "text/event-stream",
        timeout: Duration = .seconds(30), stopAfterComments: Int? = nil, stop: @escaping @Sendable (StreamedEvent) -> Bool = { _ in false }
    ) async throws -> StreamedReply {
        var request = HTTPClientRequest(url: baseURL + path)
        if let lastEventID { request.headers.add(name: "Last-Event-ID", value: lastEventID) }
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        if let accept { request.headers.add(name: "Accept", value: accept) }
        let client = self.client
        let frozen = request
        return try await withThrowingTaskGroup(of: StreamedReply?.self) { group in
            group.addTask {
                let response = try await client.execute(frozen, timeout: .seconds(3600))
                var reply = StreamedReply(
                    status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"), events: [], comments: [],
                    endedByServer: false, body: "")
                // Bytes, not text, until a frame is whole: a chunk may end inside a UTF-8 character.
                var pending: [UInt8] = []
                for try await chunk in response.body {
                    pending += chunk.readableBytesView
                    while let end = Self.frameEnd(pending) {
                        let frame = String(decoding: pending[..<end], as: UTF8.self)
                        pending.removeFirst(end + 2)
                        var event = StreamedEvent(id: nil, type: "message", data: .null, receivedAt: .now)
                        var isEvent = false
                        for line in frame.split(separator: "\n", omittingEmptySubsequences: false) {
                            if line.hasPrefix(":") {
                                reply.comments.append(String(line.dropFirst()).trimmingCharacters(in: .whitespaces))
                                if let stopAfterComments, reply.comments.count >= stopAfterComments { return reply }
                            } else if line.hasPrefix("id: ") {
                                event.id = Int(line.dropFirst(4))
                            } else if line.hasPrefix("event: ") {
                                event.type = String(line.dropFirst(7))
                                isEvent = true
                            } else if line.hasPrefix("data: ") {
                                event.data = (try? JSONValue.parse(String(line.dropFirst(6)))) ?? .string(String(line.dropFirst(6)))
                                isEvent = true
                            }
                        }
                        if isEvent {
                            reply.events.append(event)
                            if stop(event) { return reply }
                        }
                    }
                }
                reply.body = String(decoding: pending, as: UTF8.self)
                reply.endedByServer = true
                return reply
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let reply = try await group.next(), let reply else { throw HarnessError(message: "the event stream \(path) did not end in \(timeout)") }
            return reply
        }
    }

    /// Where the first blank line (the end of a frame) starts.
    static func frameEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in 0..<(bytes.count - 1) where bytes[index] == 10 && bytes[index + 1] == 10 { return index }
        return nil
    }

    /// `?format=json`: the stored events after `after`.
    func jsonEvents(_ user: String, _ session: String, _ task: String, after: Int = 0) async throws -> [JSONValue] {
        let reply = try await get("/agent/events/\(user)/\(session)/\(task)?format=json&after=\(after)")
        guard reply.status == 200, case .array(let events) = reply.body else { throw HarnessError(message: "events: \(reply.status) \(reply.body)") }
        return events
    }

    func cancel(_ user: String, _ session: String, _ task: String? = nil) async throws -> Reply {
        var body: [String: JSONValue] = ["user_id": .string(user), "session_id": .string(session)]
        if let task { body["task_id"] = .string(task) }
        return try await post("/agent/cancel", .object(body))
    }
}
