import Foundation

/// A webhook receiver for the tests: `Tests/Fixtures/webhook_receiver.py`, which checks every
/// signature as the README shows, answers 503 to the first `failFirst` attempts of each delivery,
/// and applies each delivery once by its id (`stats()`: attempts, applied, duplicates, bad_signatures).
public final class WebhookReceiver: PythonFixture, @unchecked Sendable {
    public init(secret: String, failFirst: Int = 0) async throws {
        try await super.init(script: "webhook_receiver.py", arguments: ["--secret", secret, "--fail-first", "\(failFirst)"])
    }

    public var url: String { url(path: "/hooks") }
}
