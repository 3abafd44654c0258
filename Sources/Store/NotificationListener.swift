import Foundation
import Logging
import Postgres
import Synchronization

/// Owns one connection and one OS thread that LISTENs on channels and calls `onNotify` for
/// every batch of notifications, and `onConnect` after every (re)connect so that nothing sent
/// while it was away is missed. It sleeps in poll(2) on the socket; `stop()` wakes it through a pipe.
final class NotificationListener: Sendable {
    private let conninfo: String
    private let channels: [String]
    private let logger: Logger
    private let onConnect: @Sendable () -> Void
    private let onNotify: @Sendable ([PostgresNotification]) -> Void
    private let pipe: (read: Int32, write: Int32)
    private let stopped = Atomic<Bool>(false)

    init?(
        conninfo: String, channels: [String], logger: Logger, onConnect: @escaping @Sendable () -> Void,
        onNotify: @escaping @Sendable ([PostgresNotification]) -> Void
    ) {
        var descriptors: [Int32] = [0, 0]
        guard Foundation.pipe(&descriptors) == 0 else { return nil }
        self.conninfo = conninfo
        self.channels = channels
        self.logger = logger
        self.onConnect = onConnect
        self.onNotify = onNotify
        pipe = (descriptors[0], descriptors[1])
    }

    deinit {
        close(pipe.read)
        close(pipe.write)
    }

    /// Runs the listening thread until `stop()`.
    func run() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread { [self] in
                loop()
                done.resume()
            }
            thread.name = "agentd-listener"
            thread.start()
        }
    }

    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        var byte: UInt8 = 1
        _ = write(pipe.write, &byte, 1)
    }

    private func loop() {
        var backoff = 0.1
        while !stopped.load(ordering: .sequentiallyConsistent) {
            do {
                let connection = try PostgresConnection.connect(conninfo, settings: .init(applicationName: "agentd-listener"))
                defer { connection.close() }
                for channel in channels { try connection.listen(channel) }
                logger.debug("listening", metadata: ["channels": "\(channels)"])
                backoff = 0.1
                onConnect()  // catch up on anything sent while we were not listening
                while !stopped.load(ordering: .sequentiallyConsistent) {
                    let received = try connection.waitForNotifications(timeout: .seconds(10), wakeDescriptor: pipe.read)
                    if !received.isEmpty {
                        onNotify(received)
                    } else if !stopped.load(ordering: .sequentiallyConsistent) {
                        // Quiet for a while: prove the connection is alive (a silent network drop
                        // would otherwise leave us waiting forever).
                        try connection.query("SELECT 1")
                    }
                }
            } catch {
                guard !stopped.load(ordering: .sequentiallyConsistent) else { break }
                logger.warning("listener connection lost; reconnecting", metadata: ["error": "\(String(reflecting: error))"])
                sleepUnlessStopped(seconds: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
    }

    private func sleepUnlessStopped(seconds: Double) {
        var descriptor = pollfd(fd: pipe.read, events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, Int32(seconds * 1000))
    }
}
