import Foundation

/// A raw TCP connection to the service, for sending what no HTTP client would. Its reads block,
/// so they run off Swift's cooperative pool (`offPool`): the in-process server they wait for
/// needs that pool to answer.
final class RawConnection: @unchecked Sendable {
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
    func closedByServer(within timeout: Duration) async -> Bool { await blocking { $0.drain(within: timeout).closed } }

    /// Closes the sending side (the server reads end of stream), keeping the connection open to read.
    func shutdownWrite() { shutdown(descriptor, Int32(SHUT_WR)) }

    /// What the server sends until it closes the connection or `timeout` passes.
    func readAll(within timeout: Duration) async -> String {
        await blocking { String(decoding: $0.drain(within: timeout).received, as: UTF8.self) }
    }

    /// `offPool` for reads, which cannot fail.
    private func blocking<Value: Sendable>(_ body: @escaping @Sendable (RawConnection) -> Value) async -> Value {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body(self)) }.start()
        }
    }

    /// Reads until the server closes the connection or `timeout` passes.
    private func drain(within timeout: Duration) -> (received: [UInt8], closed: Bool) {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while clock.now < deadline {
            var descriptor = pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let count = read(self.descriptor, &buffer, buffer.count)
            if count <= 0 { return (received, true) }
            received += buffer[0..<count]
        }
        return (received, false)
    }
}
