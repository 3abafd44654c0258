import AgentKit
import Foundation
import Postgres
import Testing
import TestSupport

/// The hotel model, each answer 200 ms late, so that a stream opened at invoke sees the task live,
/// and its final answer streamed in ten pieces 50 ms apart.
@Sendable func slowHotelModel(_ request: ScriptedModelServer.Request) async -> ScriptedModelServer.Reply {
    switch await hotelModel(request) {
    case .text(let answer): .delayed(.milliseconds(200), .streamed(ScriptedModelServer.pieces(of: answer, count: 10), interval: .milliseconds(50)))
    case let reply: .delayed(.milliseconds(200), reply)
    }
}

/// Each stored message's live text comes right before it and adds up to its content; nothing else is live.
func expectDeltasBeforeTheirMessages(_ events: [StreamedEvent], sourceLocation: SourceLocation = #_sourceLocation) {
    var text: [Int: String] = [:]
    for (index, event) in events.enumerated() {
        if event.type == "message.delta" {
            let position = event.data["position"]?.numberValue.map(Int.init) ?? -1
            text[position, default: ""] += event.data["content"]?.stringValue ?? ""
            // Followed by more text or by its message.
            let next = events[(index + 1)...].first { $0.type != "message.delta" }
            #expect(next?.type == "message", sourceLocation: sourceLocation)
            #expect(next?.data["position"]?.numberValue.map(Int.init) == position, sourceLocation: sourceLocation)
        }
    }
    for event in events where event.type == "message" {
        let content = event.data["message"]?["content"]?.stringValue ?? ""
        guard !content.isEmpty, let position = event.data["position"]?.numberValue.map(Int.init) else { continue }
        #expect(text[position] == content, "live text of message \(position)", sourceLocation: sourceLocation)
    }
}

@Suite("event stream")
struct EventStreamTests {
    /// The types of a hotel booking's stored events, from invoke to the approval, and from the resume to the end.
    static let untilApproval = ["task.queued", "task.running", "message", "interrupt"]
    static let afterApproval = ["decision", "task.queued", "task.running", "tool.result", "message", "task.completed"]

    @Test("a hotel booking streamed from invoke to the approval, resumed, and streamed with follow to completion")
    func hotelBooking() async throws {
        let service = try await ServiceHarness.start(model: slowHotelModel)
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店").status == 200)
        let first = try await service.streamEvents("/agent/events/u1/s1/t1")
        #expect(first.status == 200)
        #expect(first.contentType?.hasPrefix("text/event-stream") == true)
        #expect(first.endedByServer)
        #expect(first.events.map(\.type) == Self.untilApproval)
        #expect(first.ids == [1, 2, 3, 4])
        for event in first.events {
            #expect(event.data["seq"]?.numberValue == event.id.map(Double.init))
            #expect(event.data["type"]?.stringValue == event.type)
            #expect(event.data["task_id"] == "t1")
            #expect(event.data["created_at"]?.numberValue ?? 0 > 1_700_000_000)
        }
        let status = try await service.status("u1", "s1", "t1")
        #expect(status["status"] == "interrupted")
        #expect(first.events[3].data["interrupt_data"] == status["last_response"]?["interrupt_data"])
        #expect(first.events[2].data["message"]?["tool_calls"]?.jsonText.contains(#""name":"book_hotel""#) == true)
        #expect(first.events[1].data["attempt"]?.numberValue == 1)

        // Reconnecting at the end while the task waits, without follow: nothing more will come.
        let idle = try await service.streamEvents("/agent/events/u1/s1/t1", lastEventID: "4")
        #expect(idle.status == 204)

        // Follow from the interrupt: the stream stays open through the resume until the task ends.
        async let rest = service.streamEvents("/agent/events/u1/s1/t1?follow=1", lastEventID: "4")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await service.resume("u1", "s1", "t1", "accept").status == 200)
        let resumed = try await rest
        #expect(resumed.endedByServer)
        #expect(resumed.stored.map(\.type) == Self.afterApproval)
        #expect(resumed.ids == Array(5...10))
        // The final answer was streamed: its text came live, in pieces, before the stored message.
        #expect(resumed.events.filter { $0.type == "message.delta" }.count >= 2)
        expectDeltasBeforeTheirMessages(resumed.events)
        let stored = resumed.stored
        #expect(stored[0].data["response_type"] == "accept")
        #expect(stored[0].data["tool_call_id"] == "call_hotel")
        #expect(stored[3].data["message"]?["content"] == "成功预定了在如家酒店的住宿。")
        #expect(stored[3].data["status"] == "ok")
        let completed = try await service.status("u1", "s1", "t1")
        #expect(stored[5].data["result"] == completed["last_response"]?["result"])

        // The whole story, from the start with follow, and as JSON.
        let whole = try await service.streamEvents("/agent/events/u1/s1/t1?follow=1")
        #expect(whole.events.map(\.type) == Self.untilApproval + Self.afterApproval)
        #expect(whole.events == first.stored + resumed.stored)
        #expect(try await service.jsonEvents("u1", "s1", "t1") == whole.events.map(\.data))
        let accepted = try await service.streamEvents("/agent/events/u1/s1/t1", accept: "application/json")
        #expect(try JSONValue.parse(accepted.body) == .array(whole.events.map(\.data)))
    }

    @Test("reconnecting after every seq, by Last-Event-ID or ?after, gives exactly the stored events that follow")
    func reconnectAtEverySeq() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "帮我预定如家酒店")
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        _ = try await service.resume("u1", "s1", "t1", "edit", args: ["args": ["hotel_name": "汉庭"]])
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "completed")
        let all = try await service.streamEvents("/agent/events/u1/s1/t1?follow=1").events
        #expect(all.map(\.id) == Array(1...10))
        for seq in 0..<all.count {
            let byHeader = try await service.streamEvents("/agent/events/u1/s1/t1?follow=1", lastEventID: "\(seq)")
            let byQuery = try await service.streamEvents("/agent/events/u1/s1/t1?follow=1&after=\(seq)")
            #expect(byHeader.events == Array(all[seq...]), "after \(seq)")
            #expect(byQuery.events == Array(all[seq...]), "after \(seq)")
            #expect(try await service.jsonEvents("u1", "s1", "t1", after: seq) == all[seq...].map(\.data))
        }
        // The header wins over the URL: an EventSource reconnects with its original URL.
        #expect(try await service.streamEvents("/agent/events/u1/s1/t1?follow=1&after=2", lastEventID: "8").ids == [9, 10])
        #expect(try await service.streamEvents("/agent/events/u1/s1/t1", lastEventID: "10").status == 204)
    }

    @Test("a client on process A sees every event of a task that process B runs, gap-free")
    func acrossProcesses() async throws {
        let front = try await ServiceHarness.start(model: slowHotelModel) { $0.workerSlots = 0 }
        defer { Task { await front.stop() } }
        let worker = try await ServiceHarness.start(model: slowHotelModel, database: front.databaseURL)
        defer { Task { await worker.stop() } }
        #expect(try await front.invoke("u1", "s1", "t1", "帮我预定如家酒店").status == 200)
        async let watched = front.streamEvents("/agent/events/u1/s1/t1?follow=1")
        // Resumed through the worker's API once it waits.
        for _ in 0..<300 {
            if try await worker.status("u1", "s1", "t1")["status"] == "interrupted" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await worker.resume("u1", "s1", "t1", "accept").status == 200)
        let stream = try await watched
        #expect(stream.endedByServer)
        #expect(stream.stored.map(\.type) == Self.untilApproval + Self.afterApproval)
        #expect(stream.ids == Array(1...10))
        #expect(try await worker.jsonEvents("u1", "s1", "t1") == stream.stored.map(\.data))
        // The text the worker's model wrote reached the front's client live, relayed by the worker.
        #expect(stream.events.filter { $0.type == "message.delta" }.count >= 2)
        expectDeltasBeforeTheirMessages(stream.events)
        // The front never ran anything.
        #expect(front.model.requestCount == 0)
    }

    @Test("an idle stream writes keep-alive comments, and ends when the task is cancelled")
    func keepAlive() async throws {
        let service = try await ServiceHarness.start(configure: {
            $0.workerSlots = 0
            $0.eventKeepAlive = .milliseconds(200)
        })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "hello")
        let idle = try await service.streamEvents("/agent/events/u1/s1/t1", stopAfterComments: 2)
        #expect(idle.comments == ["keep-alive", "keep-alive"])
        #expect(idle.events.map(\.type) == ["task.queued"])
        async let stream = service.streamEvents("/agent/events/u1/s1/t1")
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await service.cancel("u1", "s1", "t1").status == 200)
        let reply = try await stream
        #expect(reply.endedByServer)
        #expect(reply.events.map(\.type) == ["task.queued", "task.cancelled"])
    }

    @Test("a graceful shutdown ends open streams instead of waiting for them")
    func shutdownEndsStreams() async throws {
        let service = try await ServiceHarness.start(configure: { $0.workerSlots = 0 })
        defer { Task { await service.stop() } }
        _ = try await service.invoke("u1", "s1", "t1", "hello")
        // A shutdown that waited for the stream would take its whole minute; one that ends it takes
        // well under a second alone, several on a machine busy with the whole suite.
        async let stream = service.streamEvents("/agent/events/u1/s1/t1?follow=1", timeout: .seconds(60))
        try await Task.sleep(for: .milliseconds(300))
        let clock = ContinuousClock()
        let started = clock.now
        await service.stopService()
        let reply = try await stream
        #expect(reply.endedByServer)
        #expect(reply.ids == [1])
        #expect(clock.now - started < .seconds(30))
    }

    @Test("missing tasks are 404 before any stream; bad after, follow and format are 422")
    func refusals() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let missing = try await service.streamEvents("/agent/events/u1/s1/nope")
        #expect(missing.status == 404)
        #expect(missing.body.contains("not found"))
        _ = try await service.invoke("u1", "s1", "t1", "hello")
        for path in ["?after=-1", "?after=x", "?after=99999999999", "?follow=maybe", "?format=xml"] {
            #expect(try await service.get("/agent/events/u1/s1/t1" + path).status == 422, "\(path)")
        }
        #expect(try await service.streamEvents("/agent/events/u1/s1/t1", lastEventID: "abc").status == 422)
    }

    @Test("the event stream under the auth matrix: own user, another user, another tenant, no key")
    func authMatrix() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        let keys = try await AuthTests.makeKeys(service)
        for user in ["u1", "u2"] {
            let body: JSONValue = ["user_id": .string(user), "session_id": "s1", "task_id": "t1", "query": "帮我预定如家酒店"]
            #expect(try await service.send(.POST, "/agent/invoke", body: body.jsonText, authorization: "Bearer \(keys.tenantA)").status == 200)
        }
        let own = try await service.streamEvents("/agent/events/u1/s1/t1?format=json", authorization: "Bearer \(keys.userA1)", accept: nil)
        #expect(own.status == 200)
        let tenant = try await service.streamEvents("/agent/events/u2/s1/t1", authorization: "Bearer \(keys.tenantA)", stop: { _ in true })
        #expect(tenant.status == 200)
        #expect(tenant.events.first?.type == "task.queued")
        #expect(try await service.streamEvents("/agent/events/u2/s1/t1", authorization: "Bearer \(keys.userA1)").status == 403)
        #expect(try await service.streamEvents("/agent/events/u1/s1/t1", authorization: "Bearer \(keys.tenantB)").status == 404)
        #expect(try await service.streamEvents("/agent/events/u1/s1/t1").status == 401)
        #expect(try await service.streamEvents("/agent/events/u1/s1/t1", authorization: "Bearer \(keys.revoked)").status == 401)
        // Cancel follows the same rules.
        let cancelOther: JSONValue = ["user_id": "u2", "session_id": "s1", "task_id": "t1"]
        #expect(try await service.send(.POST, "/agent/cancel", body: cancelOther.jsonText, authorization: "Bearer \(keys.userA1)").status == 403)
        #expect(try await service.send(.POST, "/agent/cancel", body: cancelOther.jsonText, authorization: "Bearer \(keys.tenantB)").status == 404)
    }
}
