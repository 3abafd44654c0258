import AgentKit
import Foundation
import Logging
import ServiceLifecycle
import Store
import Synchronization
import Telemetry

/// Takes queued tasks and runs them in worker slots.
///
/// It claims when woken: by the `Notifier` (new work, or a reconnect), when a slot frees, and by
/// a safety poll about once a second that covers notifications lost during a reconnect. Slots
/// are Swift tasks, so hundreds cost little; only database calls use threads. It renews its own
/// tasks' leases; `LeaseReaper` takes care of expired ones.
public final class Dispatcher: Service {
    public struct Configuration: Sendable {
        /// Tasks in flight at once in this process; 0 serves the API only and claims nothing.
        public var slots: Int
        public var lease: Duration
        public var pollInterval: Duration
        /// On shutdown, how long running tasks may take to finish their current step.
        public var shutdownGrace: Duration

        public init(
            slots: Int, lease: Duration, pollInterval: Duration = .seconds(1), shutdownGrace: Duration = .seconds(10)
        ) {
            self.slots = max(0, slots)
            self.lease = lease
            self.pollInterval = pollInterval
            self.shutdownGrace = shutdownGrace
        }
    }

    let configuration: Configuration
    let queue: TaskQueue
    let runner: TaskRunner
    let notifier: Notifier
    let logger: Logger
    let metrics: ServiceMetrics
    private let inFlight = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Tasks whose workers let go of them unsettled; released by the maintenance loop as soon
    /// as the database takes the statement, and never renewed meanwhile.
    private let abandoned = Mutex<Set<TaskLease>>([])

    private struct Running {
        var cancel: CancelSignal
        /// The task's row: a cancel names it, so that it never reaches a later task of the same ids.
        var seq: Int64
        /// The claim this run holds: its lease is the one renewed.
        var lease: TaskLease
    }

    /// The tasks this process runs, so that a client's cancel reaches their runs.
    private let runs = Mutex<[TaskKey: Running]>([:])

    /// Task rows (`tasks.seq`) cancelled lately, by when this process heard it. A cancel can
    /// commit just after a claim of this process did, and its notification arrive before the
    /// claimed run is in `runs`: the run, once there, is stopped at once. A cancelled row is
    /// never claimed again (a task submitted again under the same ids after a delete is a new row).
    private let cancelled = Mutex<[Int64: ContinuousClock.Instant]>([:])
    static let cancelMemory: Duration = .seconds(60)

    public init(
        configuration: Configuration, queue: TaskQueue, runner: TaskRunner, notifier: Notifier, logger: Logger,
        metrics: ServiceMetrics = .disabled()
    ) {
        self.metrics = metrics
        self.configuration = configuration
        self.queue = queue
        self.runner = runner
        self.notifier = notifier
        self.logger = logger
    }

    /// Tasks running in this process now.
    public var running: Int { inFlight.load(ordering: .relaxed) }

    public func run() async throws {
        let (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        notifier.onNewWork { wake.yield() }
        // A cancel's statement notifies as every settling statement does, whichever process ran it.
        notifier.onSettled { settled in
            guard let settled else {
                // A reconnect: cancels of running tasks may have been missed; the leases say which
                // are still ours. (Nothing to check at the first connect: nothing runs yet.)
                if !self.runs.withLock(\.isEmpty) { Task { await self.checkLeases(wake) } }
                return
            }
            guard settled.state == .cancelled else { return }
            if let seq = settled.seq {
                self.cancelled.withLock { cancelled in
                    let now = ContinuousClock.now
                    cancelled = cancelled.filter { now - $0.value < Self.cancelMemory }
                    cancelled[seq] = now
                }
            }
            self.cancelRun(settled.key, seq: settled.seq)
        }
        wake.yield()  // whatever is queued already
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.poll(wake) }
                group.addTask { await self.maintain(wake) }
                for await _ in wakes {
                    if stopping.load(ordering: .relaxed) { break }
                    let free = configuration.slots - inFlight.load(ordering: .relaxed)
                    guard free > 0 else { continue }
                    let claimed: [ClaimedTask]
                    do {
                        claimed = try await self.queue.claim(limit: free)
                    } catch is CancellationError {
                        continue  // stopping: the loop ends with the wake-ups
                    } catch {
                        logger.warning("claim failed", metadata: ["error": "\(String(reflecting: error))"])
                        continue
                    }
                    let claimedAt = ContinuousClock.now
                    for task in claimed {
                        metrics.taskAttempts.increment()
                        metrics.stepsStarted(task.key)
                        metrics.queueWait.recordNanoseconds(Int64(max(0, task.queueWait) * 1e9))
                        inFlight.add(1, ordering: .relaxed)
                        let cancel = CancelSignal()
                        runs.withLock { $0[task.key] = Running(cancel: cancel, seq: task.seq, lease: TaskLease(task)) }
                        if cancelled.withLock({ $0[task.seq] }).map({ ContinuousClock.now - $0 < Self.cancelMemory }) == true {
                            cancel.fire()
                        }
                        group.addTask {
                            let settled = await self.runner.run(task, stopping: { self.stopping.load(ordering: .relaxed) }, cancel: cancel)
                            self.metrics.taskRun.recordNanoseconds((ContinuousClock.now - claimedAt).nanoseconds)
                            self.metrics.stepsEnded(task.key)
                            // Only its own entry: a resumed task may already run again under a new one.
                            self.runs.withLock { runs in if runs[task.key]?.cancel === cancel { runs[task.key] = nil } }
                            if !settled { _ = self.abandoned.withLock { $0.insert(TaskLease(task)) } }
                            self.inFlight.subtract(1, ordering: .relaxed)
                            wake.yield()
                        }
                    }
                    // A full batch means there may be more waiting.
                    if claimed.count == free { wake.yield() }
                }
                // Running tasks stop at their next step boundary; a step still running when the
                // grace period ends is cancelled (its model call or statement with it).
                logger.info("dispatcher stopping", metadata: ["running": "\(running)"])
                let clock = ContinuousClock()
                let deadline = clock.now + configuration.shutdownGrace
                while running > 0, clock.now < deadline, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                if running > 0 {
                    logger.warning("grace period over; cancelling running steps", metadata: ["running": "\(running)"])
                    group.cancelAll()
                }
            }
            // Whatever this process still holds goes back to the queue now, not when its lease
            // expires. A fresh task: this one may be cancelled.
            let releasing = self.queue
            let released = await Task { try? await releasing.releaseOwnLeases() }.value
            if let released, released > 0 { logger.info("handed tasks back to the queue", metadata: ["tasks": "\(released)"]) }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
            wake.finish()
        }
    }

    private func poll(_ wake: AsyncStream<Void>.Continuation) async {
        while await sleepUnlessStopping(configuration.pollInterval * Double.random(in: 0.8...1.2)) {
            wake.yield()
        }
    }

    /// Renews this process's leases and hands back the tasks its workers abandoned
    /// (`LeaseReaper` takes care of everyone's expired leases).
    private func maintain(_ wake: AsyncStream<Void>.Continuation) async {
        let interval = configuration.lease / 3
        while await sleepUnlessStopping(interval) {
            await checkLeases(wake)
        }
    }

    /// Renews the leases, stops the runs that no longer hold theirs, and releases abandoned tasks.
    private func checkLeases(_ wake: AsyncStream<Void>.Continuation) async {
        do {
            let letGo = Array(abandoned.withLock { $0 })
            // One look at the runs: the leases renewed are theirs, and only a run of this look that
            // still runs and was not renewed has lost its task (cancelled, its notification lost in
            // a reconnect; deleted; reaped). A run added meanwhile holds a fresh claim's lease.
            let held = runs.withLock { $0 }
            let renewed = try await queue.renewLeases(running: held.values.map(\.lease), excluding: letGo)
            let lost = runs.withLock { runs in
                held.filter { key, run in !renewed.contains(key) && runs[key]?.cancel === run.cancel }.map(\.key)
            }
            for key in lost { cancelRun(key) }
            let released = try await queue.releaseAbandoned(letGo)
            if released > 0 {
                logger.info("released abandoned tasks back to the queue", metadata: ["tasks": "\(released)"])
                wake.yield()
            }
            abandoned.withLock { $0.subtract(letGo) }
        } catch {
            logger.warning("lease maintenance failed", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// Whether this process runs `key` now.
    public func isRunning(_ key: TaskKey) -> Bool {
        runs.withLock { $0[key] != nil }
    }

    /// Stops the run of `key` if this process runs it (`CancelSignal`); of that row only, when `seq` names one.
    private func cancelRun(_ key: TaskKey, seq: Int64? = nil) {
        guard let cancel = runs.withLock({ runs in runs[key].flatMap { seq == nil || $0.seq == seq ? $0.cancel : nil } }) else { return }
        logger.debug("cancelling the run of a cancelled task", metadata: ["task": "\(key)"])
        cancel.fire()
    }

    /// Sleeps in short slices so that shutdown is prompt; false once stopping.
    private func sleepUnlessStopping(_ duration: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + duration
        while clock.now < deadline {
            if stopping.load(ordering: .relaxed) || Task.isCancelled { return false }
            try? await Task.sleep(for: min(.milliseconds(200), deadline - clock.now))
        }
        return !(stopping.load(ordering: .relaxed) || Task.isCancelled)
    }
}
