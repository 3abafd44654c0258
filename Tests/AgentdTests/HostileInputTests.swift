import AgentKit
import Foundation
import NIOHTTP1
import Testing
import TestSupport

@Suite("hostile input")
struct HostileInputTests {
    @Test("deep JSON, invalid UTF-8, huge ids and odd values get 4xx; the service keeps serving")
    func garbage() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        let deepObject = String(repeating: #"{"a":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_000)
        let hugeID = #"{"user_id":""# + String(repeating: "x", count: 1_000_000) + #"","session_id":"s","task_id":"t","query":"q"}"#
        let bodies: [(String, Set<Int>)] = [
            (deep, [400, 413, 422]),
            (deepObject, [400, 413, 422]),
            (hugeID, [413, 422]),
            (#"{"user_id":"u","session_id":"s","task_id":"t","query":"\ud800"}"#, [400, 422]),
            (#"{"user_id":"u","session_id":"s","task_id":"t","query":1e999}"#, [400, 422]),
            (#"{"user_id":["u"],"session_id":{},"task_id":null,"query":true}"#, [422]),
            ("null", [422]),
            ("", [422]),
        ]
        for (body, allowed) in bodies {
            for path in ["/agent/invoke", "/agent/resume", "/agent/write/longterm"] {
                let reply = try await service.send(.POST, path, body: body)
                #expect(allowed.contains(reply.status), "\(path) \(body.prefix(40)): \(reply.status)")
                #expect(reply["detail"] != nil)
            }
        }
        // Invalid UTF-8 bytes in the body.
        var request = "{\"user_id\":\"u\",\"session_id\":\"s\",\"task_id\":\"t\",\"query\":\"".utf8.map { $0 }
        request += [0xff, 0xfe, 0xc3]
        request += "\"}".utf8.map { $0 }
        let invalid = try await service.send(.POST, "/agent/invoke", rawBody: request)
        #expect(invalid.status == 400)
        #expect(invalid["detail"] != nil)
        // A million-character id in the path.
        let longPath = try await service.get("/agent/sessionids/" + String(repeating: "x", count: 1_000_000))
        #expect((400..<500).contains(longPath.status))
        // Still alive and correct.
        #expect(try await service.invoke("u1", "s1", "t1", "hi").status == 200)
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "completed")
        #expect(try service.scalar("SELECT count(*) FROM tasks") <= 2)
    }

    @Test("NUL anywhere in resume args (a string, a nested key) is refused with 422, not stored")
    func nulInArgs() async throws {
        let service = try await ServiceHarness.start(model: hotelModel)
        defer { Task { await service.stop() } }
        #expect(try await service.invoke("u1", "s1", "t1", "book").status == 200)
        #expect(try await service.settle("u1", "s1", "t1")["status"] == "interrupted")
        for args: JSONValue in ["answer\u{0}", ["outer": ["in\u{0}ner": 1]], ["list": ["a", "b\u{0}"]]] {
            let reply = try await service.resume("u1", "s1", "t1", "response", args: args)
            #expect(reply.status == 422, "\(args.jsonText)")
            #expect(reply.body["detail"]?.stringValue?.contains("NUL") == true)
        }
        #expect(try await service.status("u1", "s1", "t1").body["status"] == "interrupted")
    }

    @Test("the API's description is served, without a key, as the repository holds it")
    func openAPIServed() async throws {
        let service = try await ServiceHarness.start()
        defer { Task { await service.stop() } }
        let reply = try await service.get("/openapi.yaml")
        #expect(reply.status == 200)
        #expect(reply.headers.first(name: "Content-Type") == "application/yaml")
        let served = reply.body.stringValue ?? ""
        let file = try String(contentsOf: TestDatabase.sqlDirectory.deletingLastPathComponent().appendingPathComponent("openapi.yaml"), encoding: .utf8)
        #expect(served == file)
        #expect(served.hasPrefix("openapi: 3.1"))
    }
}
