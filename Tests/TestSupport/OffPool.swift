import Foundation

/// Runs blocking work (a child process, a raw socket read) on a thread of its own rather than on
/// Swift's cooperative pool, which has one thread per core: on this 2-core machine two blocked
/// pool threads stall every in-process server of the suite.
public func offPool<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
