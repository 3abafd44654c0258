import Foundation
import Testing

@Suite("stalled clients")
struct SlowClientTests {
    /// A raw TCP connection to the service, for sending what no HTTP client would.
    final class RawConnection {
        let descriptor: Int32

        init?(port: Int) {
            descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { return nil }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                close(descriptor)
                return nil
            }
        }

        deinit { close(descriptor) }

        func send(_ text: String) {
            _ = text.utf8CString.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count - 1) }
        }

        /// Waits up to `timeout` for the server to close the connection; true when it did.
        func closedByServer(within timeout: Duration) -> Bool {
            let clock = ContinuousClock()
            let deadline = clock.now + timeout
            var buffer = [UInt8](repeating: 0, count: 4096)
            while clock.now < deadline {
                var descriptor = pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&descriptor, 1, 100) > 0 else { continue }
                if read(self.descriptor, &buffer, buffer.count) <= 0 { return true }
            }
            return false
        }
    }

    @Test("connections that stall mid-headers or sit idle are closed; others are served meanwhile")
    func idleConnectionsAreClosed() async throws {
        let service = try await ServiceHarness.start(configure: { $0.httpIdleTimeoutSeconds = 1 })
        defer { Task { await service.stop() } }
        let port = try #require(Int(service.baseURL.split(separator: ":").last ?? ""))
        let stalled = try #require(RawConnection(port: port))
        stalled.send("POST /agent/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        let idle = try #require(RawConnection(port: port))
        // Many more idle connections do not stop the service from answering.
        let crowd = (0..<200).compactMap { _ in RawConnection(port: port) }
        #expect(crowd.count == 200)
        #expect(try await service.get("/agent/sessionids/u1").status == 200)
        #expect(stalled.closedByServer(within: .seconds(10)))
        #expect(idle.closedByServer(within: .seconds(10)))
        #expect(try await service.get("/agent/sessionids/u1").status == 200)
    }
}
