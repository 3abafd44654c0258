import Foundation
import Testing

@Suite("stalled clients")
struct SlowClientTests {
    @Test("connections that stall mid-headers or sit idle are closed; others are served meanwhile")
    func idleConnectionsAreClosed() async throws {
        let service = try await ServiceHarness.start(configure: { $0.httpIdleTimeout = .seconds(1) })
        defer { Task { await service.stop() } }
        let port = try #require(Int(service.baseURL.split(separator: ":").last ?? ""))
        let stalled = try #require(RawConnection(port: port))
        stalled.send("POST /agent/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        let idle = try #require(RawConnection(port: port))
        // Many more idle connections do not stop the service from answering.
        let crowd = (0..<200).compactMap { _ in RawConnection(port: port) }
        #expect(crowd.count == 200)
        #expect(try await service.get("/agent/sessionids/u1").status == 200)
        #expect(await stalled.closedByServer(within: .seconds(10)))
        #expect(await idle.closedByServer(within: .seconds(10)))
        // On a new connection: the client's pooled one may be the server's to close by now (1 s idle).
        let fresh = try #require(RawConnection(port: port))
        fresh.send("GET /agent/sessionids/u1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        let answer = await fresh.readAll(within: .seconds(10))
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer.prefix(80))")
    }
}
