import AgentKit
import Foundation
import Logging
import ServiceLifecycle
import Store

/// Makes the vectors of memories for recall's semantic pass (`EMBEDDINGS_BASE_URL`), after the
/// write that stored them: claims due memories across tenants (`MemoryStore.claimEmbeddings`,
/// a lease each, so another process takes over from one that died), asks the embeddings server
/// for a batch at once, and stores each vector. A failed batch is due again after 1 s, 2 s, 4 s …
/// up to 10 minutes per memory's attempts, until it succeeds. Woken by the `Notifier` when a
/// write queues a memory; otherwise it sleeps until the next one falls due (`RoundScheduler`).
public struct MemoryEmbedder: Service {
    let memories: MemoryStore
    let embedder: any TextEmbedder
    let logger: Logger
    let scheduler: RoundScheduler
    /// Memories per request to the embeddings server.
    let batchSize: Int
    /// How long a claim holds a memory before another process may try it.
    let lease: Duration

    public init(
        memories: MemoryStore, embedder: any TextEmbedder, notifier: Notifier?, logger: Logger, batchSize: Int = 32,
        lease: Duration = .seconds(120), safetyInterval: Duration = .seconds(30)
    ) {
        self.memories = memories
        self.embedder = embedder
        self.logger = logger
        self.batchSize = max(1, batchSize)
        self.lease = lease
        let scheduler = RoundScheduler(safetyInterval: safetyInterval)
        self.scheduler = scheduler
        notifier?.onMemoriesToEmbed { scheduler.due() }
    }

    /// The delay before attempt `attempt + 1` after `attempt` failed.
    static func backoff(afterAttempt attempt: Int) -> Duration {
        .seconds(min(600, 1 << min(max(0, attempt - 1), 10)))
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            do {
                var queued = 0
                while true {
                    let round = try await memories.queueMissingEmbeddings(model: embedder.model)
                    queued += round
                    if round < 10_000 { break }
                }
                if queued > 0 { logger.info("memories queued for their vectors", metadata: ["memories": "\(queued)", "model": "\(embedder.model)"]) }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("queueing memories without vectors failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            await scheduler.run { await round() }
        }
    }

    /// Makes the vectors of every memory due now, one batch after another, and returns how many
    /// are still waiting (failed ones, due later): for a caller that needs them made (the bench).
    public func embedDue() async throws -> Int {
        _ = try await memories.queueMissingEmbeddings(model: embedder.model)
        while let wait = await round(), wait == 0 {}
        return try await memories.embeddingsWaiting()
    }

    /// Seconds until the next round (0: at once, more may be due; nil: none known).
    func round() async -> Double? {
        let jobs: [MemoryStore.EmbeddingJob]
        do {
            jobs = try await memories.claimEmbeddings(limit: batchSize, lease: lease)
        } catch {
            logger.warning("claiming memories to embed failed", metadata: ["error": "\(String(reflecting: error))"])
            return 1
        }
        if !jobs.isEmpty {
            do {
                try await embed(jobs)
                if jobs.count == batchSize { return 0 }
            } catch is CancellationError {
                return nil
            } catch let error as EmbeddingError where !error.retryable && jobs.count > 1 {
                // The server refused the batch (one text too long for the model, say): each
                // alone, so that one memory it never takes does not hold up the others.
                for job in jobs {
                    do {
                        try await embed([job])
                    } catch is CancellationError {
                        return nil
                    } catch {
                        await failed([job], error)
                    }
                }
            } catch {
                await failed(jobs, error)
            }
        }
        guard let seconds = try? await memories.secondsUntilNextEmbedding() else { return nil }
        return max(0, seconds)
    }

    /// One request for `jobs`, then each vector stored.
    private func embed(_ jobs: [MemoryStore.EmbeddingJob]) async throws {
        let vectors = try await embedder.embed(jobs.map(\.text), for: .document)
        for (job, vector) in zip(jobs, vectors) {
            try await memories.storeEmbedding(job, vector: vector, model: embedder.model)
        }
    }

    private func failed(_ jobs: [MemoryStore.EmbeddingJob], _ error: any Error) async {
        logger.warning("embedding memories failed; they are tried again later", metadata: ["memories": "\(jobs.count)", "error": "\(error)"])
        for job in jobs {
            try? await memories.failEmbedding(job, error: "\(error)", retryAfter: Self.backoff(afterAttempt: job.attempt))
        }
    }
}
