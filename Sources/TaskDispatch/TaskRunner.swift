import AgentKit
import Foundation
import Logging
import Store
import Telemetry

/// Runs one claimed task (an `AgentRun` over the task's journal in PostgreSQL) and decides
/// what becomes of it when the run stops early: handed back, lost, or failed.
public struct TaskRunner: Sendable {
    let queue: TaskQueue
    let memories: MemoryStore
    let model: any ChatModel
    /// The agent each task runs: its tools, limits and model.
    let agents: AgentCatalog
    let logger: Logger
    /// The model's text for each task as it is written (to this process's event streams and peers).
    let onDelta: @Sendable (TaskKey, MessageDelta) -> Void
    /// Told when a run stops, however it stops.
    let onRunEnded: @Sendable (TaskKey) -> Void
    /// Told when a run stopped to ask an approval that expires (`ApprovalExpiry.asked`).
    let onApprovalAsked: @Sendable (ApprovalTimeout) -> Void
    let metrics: ServiceMetrics

    public init(
        queue: TaskQueue, memories: MemoryStore, model: any ChatModel, agents: AgentCatalog, logger: Logger,
        onDelta: @escaping @Sendable (TaskKey, MessageDelta) -> Void = { _, _ in },
        onRunEnded: @escaping @Sendable (TaskKey) -> Void = { _ in },
        onApprovalAsked: @escaping @Sendable (ApprovalTimeout) -> Void = { _ in }, metrics: ServiceMetrics = .disabled()
    ) {
        self.queue = queue
        self.memories = memories
        self.model = model
        self.agents = agents
        self.logger = logger
        self.onDelta = onDelta
        self.onRunEnded = onRunEnded
        self.onApprovalAsked = onApprovalAsked
        self.metrics = metrics
    }

    /// - Parameters:
    ///   - stopping: asked between steps; true hands the task back instead of starting another.
    ///   - cancel: fired when a client cancelled the task (see `AgentRun.run`).
    /// - Returns: false when the task may still be `running` under this process's lease with
    ///   nobody working on it (the database failed mid-step): the caller must release it.
    @discardableResult
    public func run(
        _ task: ClaimedTask, stopping: @escaping @Sendable () -> Bool = { false }, cancel: CancelSignal = CancelSignal()
    ) async -> Bool {
        var logger = self.logger
        logger[metadataKey: "task"] = "\(task.key)"
        logger[metadataKey: "tenant"] = "\(task.key.tenantID)"
        if let requestID = task.requestID { logger[metadataKey: "request_id"] = "\(requestID)" }
        logger[metadataKey: "agent"] = "\(task.agentID)@\(task.agentVersion)"
        defer { onRunEnded(task.key) }
        let journal = queue.journal(for: task)
        let agent: ResolvedAgent
        do {
            agent = try await agents.resolve(tenantID: task.key.tenantID, agentID: task.agentID, version: task.agentVersion)
        } catch let unavailable as AgentUnavailable {
            logger.warning("task failed: its agent cannot be run", metadata: ["reason": "\(unavailable)"])
            guard (try? await journal.finish(state: .error, result: nil, message: unavailable.description)) != nil else { return false }
            metrics.taskFinished(.error)
            return true
        } catch {
            logger.warning("could not read the task's agent; the task goes back to the queue", metadata: ["error": "\(String(reflecting: error))"])
            return false
        }
        let run = AgentRun(
            key: task.key, query: task.query, systemMessage: task.systemMessage ?? agent.systemMessage, journal: journal,
            memory: memories, model: model, tools: agent.tools.metered(by: metrics), settings: agent.settings)
        do {
            let onDelta = self.onDelta
            let key = task.key
            switch try await run.run(stopping: stopping, cancel: cancel, deltas: { onDelta(key, $0) }) {
            case .interrupted(let call):
                logger.debug("waiting for a human", metadata: ["tool": "\(call.name)"])
                if let timeout = agent.settings.approvalTimeout { onApprovalAsked(timeout) }
            case .failed(let reason):
                logger.info("task failed", metadata: ["reason": "\(reason)"])
                metrics.taskFinished(.error)
            case .completed: metrics.taskFinished(.completed)
            }
            return true
        } catch is AgentRun.HandedBack {
            logger.info("handed back at a step boundary for shutdown")
            return false
        } catch is AgentRun.Cancelled {
            logger.info("stopped: a client cancelled the task")
            // Released like an abandoned task: a no-op for a task that is cancelled (the release
            // takes only a running task under this lease), and the task runs again if it is not.
            return false
        } catch is LeaseLost {
            logger.info("stopped: the task's lease is gone (taken over or deleted)")
            return true
        } catch is CancellationError {
            logger.info("stopped by shutdown; the task goes back to the queue")
            return false
        } catch let error as StoreError where error.kind == .unavailable {
            logger.warning("database unavailable while running the task; it goes back to the queue", metadata: ["error": "\(String(reflecting: error))"])
            return false
        } catch {
            logger.error("task failed", metadata: ["error": "\(String(reflecting: error))"])
            do {
                try await journal.finish(state: .error, result: nil, message: "internal error while running the task")
                metrics.taskFinished(.error)
                return true
            } catch {
                return false
            }
        }
    }
}
