import Synchronization

/// When a background service that works in rounds (expiring approvals, sending webhooks) asks the
/// database again: at start, when its last round said the next work falls due, when something in
/// this process says work is coming (`due(at:)`: a notification, an approval asked here), and
/// at least every `safetyInterval` for work this process cannot hear of. Between rounds it sleeps
/// until the earliest of these: an idle service wakes once per `safetyInterval`.
public final class RoundScheduler: Sendable {
    let safetyInterval: Duration

    private struct State {
        /// The earliest moment that something announced work for.
        var announced: ContinuousClock.Instant?
        /// The sleeping loop, woken by an announcement earlier than its wake-up, its own timer,
        /// or cancellation.
        var sleeper: CheckedContinuation<Void, Never>?
        var wakeAt: ContinuousClock.Instant?
        /// Which sleep a timer belongs to: a timer of an earlier sleep wakes nothing.
        var generation: UInt64 = 0
        var stopped = false

        mutating func takeSleeper() -> CheckedContinuation<Void, Never>? {
            defer { sleeper = nil; wakeAt = nil }
            return sleeper
        }
    }

    private let state = Mutex(State())

    public init(safetyInterval: Duration) {
        self.safetyInterval = safetyInterval
    }

    /// Work falls due at `instant` (now by default): a round runs then.
    public func due(at instant: ContinuousClock.Instant = .now) {
        state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.announced.map({ instant < $0 }) ?? true { state.announced = instant }
            guard let wakeAt = state.wakeAt, instant < wakeAt else { return nil }
            return state.takeSleeper()
        }?.resume()
    }

    /// Runs rounds until the task is cancelled. A round returns the seconds until its next work
    /// falls due (0: at once; nil: it knows of none; the safety interval caps either).
    public func run(_ round: () async -> Double?) async {
        await withTaskCancellationHandler {
            var next = ContinuousClock.now
            while !Task.isCancelled {
                let now = ContinuousClock.now
                let announced = state.withLock { $0.announced }
                if now >= next || (announced.map { $0 <= now } ?? false) {
                    state.withLock { $0.announced = nil }
                    let started = ContinuousClock.now
                    let untilNext = await round().map { Duration.seconds(max(0, $0)) } ?? safetyInterval
                    next = started + min(untilNext, safetyInterval)
                    continue
                }
                await sleep(until: min(next, announced ?? next))
            }
        } onCancel: {
            state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.stopped = true
                return state.takeSleeper()
            }?.resume()
        }
    }

    /// Until `instant`, or sooner when work is announced for earlier or the loop is cancelled.
    private func sleep(until instant: ContinuousClock.Instant) async {
        let generation = state.withLock { state -> UInt64 in
            state.generation &+= 1
            return state.generation
        }
        let timer = Task {
            guard (try? await Task.sleep(until: instant, clock: .continuous)) != nil else { return }
            state.withLock { state in state.generation == generation ? state.takeSleeper() : nil }?.resume()
        }
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                // Cancelled, announced for earlier since the loop looked, or already due (the
                // timer may have fired before the sleeper was stored).
                if state.stopped || (state.announced.map { $0 < instant } ?? false) || ContinuousClock.now >= instant { return true }
                state.sleeper = continuation
                state.wakeAt = instant
                return false
            }
            if now { continuation.resume() }
        }
        timer.cancel()
    }
}
