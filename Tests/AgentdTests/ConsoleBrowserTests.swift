import AgentKit
import Foundation
import Testing
import TestSupport

/// The model the console's scenario talks to: `book <hotel>` asks for book_hotel(hotel), and the
/// tool's answer comes back as Markdown (which the page must render as elements).
@Sendable func consoleModel(_ request: ScriptedModelServer.Request) async -> ScriptedModelServer.Reply {
    guard let last = request.messages.last else { return .text("empty") }
    if last.type == .tool { return .text("**已完成** 预订结果：`\(last.content)`\n\n- done") }
    let hotel = last.content.hasPrefix("book ") ? String(last.content.dropFirst(5)) : "如家酒店"
    return .toolCalls([ToolCall(id: "call_\(abs(last.content.hashValue))", name: "book_hotel", args: ["hotel_name": .string(hotel)])])
}

/// The web console in a real browser: `Tests/Fixtures/console_browser.py` drives headless
/// Chromium through chromedriver (Selenium, from PyPI, with Chromium from Debian:
/// scripts/browser-venv.sh) against this service, signed in with a tenant key. The script checks
/// the page; this test checks what reached the database.
@Suite("the web console in Chromium")
struct ConsoleBrowserTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("sign in, edit an approval's arguments by keyboard, follow the task live, batch-reject, no decision on what vanished, delete a memory, read usage; English and Chinese, laptop and phone width, no console errors")
    func scenario() async throws {
        let python = try #require(
            ProcessInfo.processInfo.environment["CONSOLE_PYTHON"].flatMap { $0.isEmpty ? nil : $0 },
            "CONSOLE_PYTHON is not set: run the tests with `make test`, which installs Chromium and Selenium")
        let service = try await ServiceHarness.start(model: consoleModel)
        defer { Task { await service.stop() } }
        let keys = try await AuthTests.makeKeys(service)

        let screenshots = Self.repository.appendingPathComponent(".data/screenshots")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("console-browser-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let log = try FileHandle(forWritingTo: output)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [
            Self.repository.appendingPathComponent("Tests/Fixtures/console_browser.py").path,
            "--base-url", service.baseURL, "--key", keys.tenantA, "--user", "u1", "--screenshots", screenshots.path,
            "--parent-pid", "\(ProcessInfo.processInfo.processIdentifier)",
        ]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try log.close()
        // A page that never reaches its state fails the script within its own waits (30 s each);
        // this bound is for a browser that hangs.
        let deadline = ContinuousClock.now + .seconds(300)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(200)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let printed = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(printed.suffix(6000))")
        #expect(printed.contains("console checks passed"), "\(printed.suffix(2000))")

        // What the page decided, as the service recorded it: a human's edit, a batch of rejections, an accept.
        let decisions = try service.rows(
            """
            SELECT session_id, coalesce(decision, '') AS decision, coalesce(decided_by, '') AS decided_by,
                   coalesce(decision_args::text, '') AS args
            FROM interrupts WHERE tenant_id = 'A' ORDER BY session_id, task_id
            """)
        let recorded = try decisions.map { row in
            try ["session_id", "decision", "decided_by", "args"].map { try row.decode($0, as: String.self) }
        }
        #expect(recorded.count == 7, "\(recorded)")
        #expect(recorded.first?[1] == "edit" && recorded.first?[3].contains("全季酒店") == true, "\(recorded)")
        #expect(recorded.map { $0[1] } == ["edit", "accept", "reject", "reject", "accept", "accept", "reject"], "\(recorded)")
        #expect(recorded.allSatisfy { $0[2] == "human" }, "\(recorded)")
        #expect(try service.scalar("SELECT count(*) FROM tool_calls WHERE tenant_id = 'A' AND status = 'ok'") == 4)
        #expect(try service.scalar("SELECT count(*) FROM memories WHERE tenant_id = 'A' AND user_id = 'u1'") == 1)
        for name in ["inbox", "sessions", "memories", "usage"] {
            for variant in ["en-laptop", "en-phone", "zh-laptop", "zh-phone"] {
                #expect(FileManager.default.fileExists(atPath: screenshots.appendingPathComponent("\(name)-\(variant).png").path), "\(name)-\(variant)")
            }
        }
    }
}
