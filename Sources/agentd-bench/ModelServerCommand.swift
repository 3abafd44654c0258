import AgentKit
import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import ScriptedModel

#if canImport(Glibc)
import Glibc
#endif

/// `agentd-bench model-server`: the bench's scripted model in a process of its own, so that the
/// CPU it spends is read apart from the load generator's and agentd's. Prints `PORT <n>`; takes
/// its latency from `POST /control`; exits when the bench (`--parent-pid`) is gone.
struct ModelServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-server", abstract: "The bench's scripted OpenAI-compatible model, as a process of its own.")

    @Option(help: "Exit when this process is gone.") var parentPid: Int32 = 0

    func run() async throws {
        let behaviour = ModelLatency()
        let server = try await ScriptedModelServer.start(recordsRequests: false, control: { behaviour.apply($0) }) { request in
            await behaviour.reply(to: request)
        }
        FileHandle.standardOutput.write(Data("PORT \(URL(string: server.baseURL)?.port ?? 0)\n".utf8))
        while parentPid == 0 || kill(parentPid, 0) == 0 { try await Task.sleep(for: .milliseconds(500)) }
        await server.shutdown()
    }
}

/// The bench's side of the model server: starts it and tells it how to answer.
final class ModelServerProcess: @unchecked Sendable {
    // Touched by the owning task only.
    private let process = Process()
    let port: Int
    var pid: Int32 { process.processIdentifier }
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    init(executable: URL) async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("agentd-bench-model-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let log = try FileHandle(forWritingTo: output)
        process.executableURL = executable
        process.arguments = ["model-server", "--parent-pid", "\(ProcessInfo.processInfo.processIdentifier)"]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try log.close()
        let deadline = ContinuousClock.now + .seconds(30)
        var found: Int?
        while found == nil, ContinuousClock.now < deadline, process.isRunning {
            found = ((try? String(contentsOf: output, encoding: .utf8)) ?? "").firstMatch(of: /PORT (\d+)/).flatMap { Int($0.1) }
            if found == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        guard let found else {
            if process.isRunning { process.terminate() }
            throw ValidationError("the model server did not start: \(((try? String(contentsOf: output, encoding: .utf8)) ?? "").suffix(800))")
        }
        port = found
    }

    /// Every model call waits `latency` before it answers.
    func set(latency: Duration) async throws { try await control(["latency_ms": .number(latency.milliseconds)]) }

    /// Answers to "live" queries come in `count` pieces, `interval` apart (0: whole).
    func setLive(count: Int, interval: Duration) async throws {
        try await control(["live_count": .number(Double(count)), "live_interval_ms": .number(interval.milliseconds)])
    }

    private func control(_ body: JSONValue) async throws {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/control")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: body.jsonText))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        guard response.status == .ok else { throw ValidationError("the model server refused its control: \(response.status)") }
    }

    func stop() async {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
