import Foundation

/// `agentd serve --no-migrate` as a child process on a free port: for the tests that kill it and
/// for `make bench`, which measures it as it is deployed.
public final class AgentdProcess: @unchecked Sendable {
    // Touched by the owning task only.
    private let process = Process()
    public let port: Int
    public let logURL: URL
    public var pid: Int32 { process.processIdentifier }
    public var log: String { Self.read(logURL) }

    public struct LaunchError: Error, CustomStringConvertible {
        public var description: String
    }

    /// `environment` is the whole environment of the child; PORT=0, HOST and LOG_LEVEL are set here.
    public init(executable: URL, environment: [String: String]) async throws {
        process.executableURL = executable
        process.arguments = ["serve", "--no-migrate"]
        process.environment = environment.merging(["PORT": "0", "HOST": "127.0.0.1", "LOG_LEVEL": "info"]) { _, fixed in fixed }
        // The log (and the bound port) goes to standard error, kept in a file: a pipe nobody drains would block the child.
        let logURL = FileManager.default.temporaryDirectory.appendingPathComponent("agentd-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = log
        try process.run()
        try log.close()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        var found: Int?
        while found == nil, clock.now < deadline, process.isRunning {
            // `address=http://…` in text lines, `"address":"http://…"` in JSON ones.
            found = Self.read(logURL).firstMatch(of: /address"?[=:]"?http:\/\/127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) }
            if found == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        guard let found else {
            if process.isRunning { process.terminate() }
            throw LaunchError(description: "agentd did not start: \(Self.read(logURL).suffix(800))")
        }
        port = found
        self.logURL = logURL
    }

    /// A child still running when its owner lets go of it (a test that failed before `stop`) is
    /// killed: it must not outlive the test run, polling a database that is gone.
    deinit {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: logURL)
    }

    static func read(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    @discardableResult
    public func kill(_ signal: Int32) -> Int32 {
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGTERM (graceful shutdown) if it still runs, and the log file removed.
    public func stop() {
        if process.isRunning { kill(SIGTERM) }
        try? FileManager.default.removeItem(at: logURL)
    }

    /// Resident memory now and its peak, in MiB, from /proc.
    public func memory() -> (resident: Double, peak: Double)? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func kibibytes(_ field: String) -> Double? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
            return line.split(separator: " ").dropFirst().first.flatMap { Double($0) }
        }
        guard let resident = kibibytes("VmRSS"), let peak = kibibytes("VmHWM") else { return nil }
        return (resident / 1024, peak / 1024)
    }

    /// Starts a new peak (Linux: writing 5 to clear_refs resets VmHWM to the current resident size).
    public func resetPeakMemory() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/\(pid)/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }
}

/// 127.0.0.1 ports for child servers and for tests.
public enum FreePort {
    public struct Unavailable: Error {}

    /// A port bound and never listened on: connecting to it is refused, and while the socket is
    /// held no other server can take it (the caller closes it).
    public static func bind() throws -> (port: Int, socket: Int32) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Unavailable() }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else {
            close(fd)
            throw Unavailable()
        }
        return (Int(UInt16(bigEndian: address.sin_port)), fd)
    }

    /// A port that was free a moment ago, for a child server that takes its port as an argument.
    public static func find() throws -> Int {
        let (port, fd) = try bind()
        close(fd)
        return port
    }
}
