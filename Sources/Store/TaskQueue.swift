import AgentKit
import Foundation
import Postgres

/// A task a worker has claimed.
public struct ClaimedTask: Sendable {
    public var key: TaskKey
    public var seq: Int64
    public var query: String
    public var systemMessage: String?
    public var attempt: Int
    /// The agent and version the task runs (0: the environment's configuration).
    public var agentID: String
    public var agentVersion: Int
    /// Seconds from its queueing (invoke, resume or release) to this claim.
    public var queueWait: Double
    /// The `x-request-id` of the request that queued it (its invoke or resume), for the run's logs.
    public var requestID: String?
}

/// One claim of a task: its key and the attempt the claim made. A worker's run holds it
/// (`renewLeases`), or let go of it without settling the task (`releaseAbandoned`).
public struct TaskLease: Sendable, Hashable, Codable {
    public var tenantID: String
    public var userID: String
    public var sessionID: String
    public var taskID: String
    public var attempt: Int

    public init(_ task: ClaimedTask) {
        tenantID = task.key.tenantID
        userID = task.key.userID
        sessionID = task.key.sessionID
        taskID = task.key.taskID
        attempt = task.attempt
    }

    /// Exact, as every id is compared (see `Identifier`): a look-alike task's lease is another lease.
    public static func == (a: TaskLease, b: TaskLease) -> Bool {
        a.attempt == b.attempt && Identifier.same(a.tenantID, b.tenantID) && Identifier.same(a.userID, b.userID)
            && Identifier.same(a.sessionID, b.sessionID) && Identifier.same(a.taskID, b.taskID)
    }

    public func hash(into hasher: inout Hasher) {
        for id in [tenantID, userID, sessionID, taskID] { Identifier.hash(id, into: &hasher) }
        hasher.combine(attempt)
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id", userID = "user_id", sessionID = "session_id", taskID = "task_id", attempt
    }
}

/// The queue, across tenants (system scope): claiming, lease renewal and release, reaping.
/// A claimed task's step writes go through its `TaskJournal`.
public struct TaskQueue: Sendable {
    let pool: PostgresPool
    /// Who this process is, in `tasks.lease_owner`.
    public let owner: String
    public let lease: Duration
    /// Told of every change this process commits to a task it runs (a claim, a step), after the
    /// commit: its own event streams learn of it at once.
    let onStep: @Sendable (TaskKey) -> Void
    /// Where a task this process ends is kept for the status reads that follow.
    let settled: SettledTasks?
    /// How the journals' step commits reach the database (nil: each alone).
    let group: GroupCommit?

    public init(
        pool: PostgresPool, owner: String, lease: Duration, settled: SettledTasks? = nil, group: GroupCommit? = nil,
        onStep: @escaping @Sendable (TaskKey) -> Void = { _ in }
    ) {
        self.pool = pool
        self.owner = owner
        self.lease = lease
        self.settled = settled
        self.group = group
        self.onStep = onStep
    }

    // Lifecycle timestamps use clock_timestamp(), read while the statement runs (after its
    // snapshot), not now(), the transaction's start: so a task's start is always later than
    // the finish of the task before it, and dispatch latency is measured where it happens.

    /// Claims up to `limit` queued tasks, oldest first, skipping sessions that have a running
    /// task or an older queued one, and rows another claimer holds.
    public func claim(limit: Int) async throws -> [ClaimedTask] {
        guard limit > 0 else { return [] }
        let statement = Self.claimStatement(owner: owner, leaseSeconds: lease.seconds, limit: limit)
        do {
            // Urgent: a claim starts many tasks, and waiting behind their own start reads it made
            // dispatch wait out the pool's whole queue.
            let claimed = try await pool.system(priority: .urgent) { connection in
                try connection.query(statement).rows.map { row in
                    ClaimedTask(
                        key: TaskKey(
                            tenantID: try row.decode("tenant_id"), userID: try row.decode("user_id"),
                            sessionID: try row.decode("session_id"), taskID: try row.decode("task_id")),
                        seq: try row.decode("seq"), query: try row.decode("query"),
                        systemMessage: try row.decode("system_message", as: String?.self), attempt: try row.decode("attempts"),
                        agentID: try row.decode("agent_id"), agentVersion: try row.decode("agent_version"),
                        queueWait: try row.decode("queue_wait"), requestID: try row.decode("request_id", as: String?.self))
                }.sorted { $0.seq < $1.seq }
            }
            for task in claimed { onStep(task.key) }
            return claimed
        } catch let error as StoreError where error.underlying.isUniqueViolation {
            // Two claimers raced for one session; the index kept the rule, the next claim proceeds.
            return []
        }
    }

    /// The claim (public for the test that reads its plan): run in system scope.
    public static func claimStatement(owner: String, leaseSeconds: Double, limit: Int) -> PostgresQuery {
        """
            WITH candidate AS (
                SELECT t.tenant_id, t.user_id, t.session_id, t.task_id
                FROM tasks t
                -- seq > 0 (always true) lets this scan, and only this one, use tasks_queue_order (sql/018).
                WHERE t.state = 'queued' AND t.seq > 0
                  -- Two probes per candidate, each one step on a partial index of its session
                  -- (tasks_one_running_per_session, tasks_queued_by_session). OFFSET 0 keeps them
                  -- subplans: as anti joins, planned on a nearly empty queue's estimates, they
                  -- walked every running and queued task for each candidate (quadratic in a burst).
                  AND NOT EXISTS (
                      SELECT 1 FROM tasks o
                      WHERE \(unsafeSQL: TaskKey.sameSession("o", "t"))
                        AND o.state = 'running'
                      OFFSET 0)
                  AND NOT EXISTS (
                      SELECT 1 FROM tasks o
                      WHERE \(unsafeSQL: TaskKey.sameSession("o", "t"))
                        AND o.state = 'queued' AND o.seq < t.seq
                      OFFSET 0)
                ORDER BY t.seq
                LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE tasks SET state = 'running', message = NULL, lease_owner = \(owner),
                    lease_expires_at = now() + make_interval(secs => \(leaseSeconds)), attempts = tasks.attempts + 1,
                    claimed_at = clock_timestamp(), started_at = coalesce(tasks.started_at, clock_timestamp()), updated_at = now(),
                    events = tasks.events + 1
                FROM candidate
                WHERE \(unsafeSQL: TaskKey.sameTask("tasks", "candidate"))
                RETURNING \(unsafeSQL: EventRecord.returning), tasks.seq, tasks.query, tasks.system_message, tasks.attempts,
                          tasks.agent_id, tasks.agent_version,
                          extract(epoch FROM tasks.claimed_at - tasks.queued_at)::float8 AS queue_wait, tasks.request_id
            ), logged AS (
                \(fragment: EventRecord.append(EventRecord(
                    kind: .running,
                    data: "jsonb_build_object('attempt', s.attempts, 'agent_id', s.agent_id, 'agent_version', s.agent_version)"), from: "claimed"))
            )
            SELECT tenant_id, user_id, session_id, task_id, seq, query, system_message, attempts, agent_id, agent_version, queue_wait,
                   request_id
            FROM claimed
            """
    }

    /// The journal of a task this process claimed, for its run's step commits.
    public func journal(for task: ClaimedTask) -> TaskJournal {
        TaskJournal(pool: pool, task: task, owner: owner, lease: lease, settled: settled, group: group, onStep: onStep)
    }

    /// Extends the leases of the tasks this process's workers run (`running`), except the ones
    /// they abandoned: those must be released, not kept alive. A task leased to this process that
    /// no worker runs is left to expire: a claim whose reply was lost (the database went away as
    /// it committed) leased it without the process knowing, and renewing every lease of the owner
    /// kept such a task running forever. Returns the tasks renewed: a run missing from them (and
    /// claimed before this call) no longer holds its task (cancelled, deleted, reaped) and should stop.
    public func renewLeases(running: [TaskLease], excluding abandoned: [TaskLease] = []) async throws -> Set<TaskKey> {
        guard !running.isEmpty else { return [] }
        let query: PostgresQuery = """
            UPDATE tasks SET lease_expires_at = now() + make_interval(secs => \(lease.seconds))
            WHERE lease_owner = \(owner) AND state = 'running'
              AND EXISTS (SELECT 1 FROM \(fragment: try Self.leaseRows(running, as: "held"))
                          WHERE \(unsafeSQL: Self.leaseMatchesTask("held")))
              AND NOT EXISTS (SELECT 1 FROM \(fragment: try Self.leaseRows(abandoned, as: "abandoned"))
                              WHERE \(unsafeSQL: Self.leaseMatchesTask("abandoned")))
            RETURNING tenant_id, user_id, session_id, task_id
            """
        return Set(
            try await pool.system { try $0.query(query) }.rows.map { row in
                TaskKey(
                    tenantID: try row.decode("tenant_id"), userID: try row.decode("user_id"), sessionID: try row.decode("session_id"),
                    taskID: try row.decode("task_id"))
            })
    }

    /// Puts every task this process still runs back in the queue (at shutdown), and wakes the
    /// other dispatchers. Each continues from its last committed step.
    @discardableResult
    public func releaseOwnLeases() async throws -> Int {
        try await requeueOwn(matching: "TRUE")
    }

    /// Puts back in the queue the tasks this process's workers gave up on without settling
    /// them (the database went away mid-step). The attempt number keeps a task that has
    /// since been claimed again safe from a stale release.
    @discardableResult
    public func releaseAbandoned(_ abandoned: [TaskLease]) async throws -> Int {
        guard !abandoned.isEmpty else { return 0 }
        return try await requeueOwn(matching: """
            EXISTS (SELECT 1 FROM \(fragment: try Self.leaseRows(abandoned, as: "abandoned")) WHERE \(unsafeSQL: Self.leaseMatchesTask("abandoned")))
            """)
    }

    private func requeueOwn(matching filter: PostgresQuery) async throws -> Int {
        let query: PostgresQuery = """
            WITH released AS (
                UPDATE tasks SET state = 'queued', message = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    queued_at = clock_timestamp(), updated_at = now(), events = tasks.events + 1
                WHERE lease_owner = \(owner) AND state = 'running' AND (\(fragment: filter))
                RETURNING \(unsafeSQL: EventRecord.returning)
            ), logged AS (\(fragment: EventRecord.append(.with(.queued, ["reason": "handed_back"]), from: "released")))
            SELECT count(*) AS released,
                   (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM (SELECT 1 FROM released LIMIT 1) AS any_released) AS notified
            FROM released
            """
        return try await pool.system { try $0.query(query) }.first?.decode("released", as: Int.self) ?? 0
    }

    /// `leases` as rows named `alias` (a fixed name of ours, never input).
    private static func leaseRows(_ leases: [TaskLease], as alias: String) throws -> PostgresQuery {
        let rows = try PostgresJSON(leases)
        return """
            jsonb_to_recordset(\(rows)) AS \(unsafeSQL: alias)(tenant_id text, user_id text, session_id text, task_id text, attempt integer)
            """
    }

    private static func leaseMatchesTask(_ alias: String) -> String {
        TaskKey.sameTask(alias, "tasks") + " AND \(alias).attempt = tasks.attempts"
    }

    /// Puts tasks whose lease expired back in the queue, or ends them in `error` once they
    /// have used `maxAttempts`. Returns how many were re-queued and how many failed.
    public func reapExpiredLeases(maxAttempts: Int) async throws -> (requeued: Int, failed: Int) {
        let query: PostgresQuery = """
            WITH expired AS (
                SELECT tenant_id, user_id, session_id, task_id FROM tasks
                WHERE state = 'running' AND lease_expires_at < now()
                FOR UPDATE SKIP LOCKED
            ), reaped AS (
                UPDATE tasks SET
                    state = CASE WHEN tasks.attempts >= \(maxAttempts) THEN 'error' ELSE 'queued' END,
                    message = CASE WHEN tasks.attempts >= \(maxAttempts)
                                   THEN 'gave up after ' || tasks.attempts || ' attempts: the worker running the task stopped responding'
                                   ELSE 'queued' END,
                    finished_at = CASE WHEN tasks.attempts >= \(maxAttempts) THEN now() END,
                    lease_owner = NULL, lease_expires_at = NULL, queued_at = now(), updated_at = now(), events = tasks.events + 1
                FROM expired
                WHERE \(unsafeSQL: TaskKey.sameTask("tasks", "expired"))
                RETURNING tasks.state, tasks.message, \(unsafeSQL: EventRecord.returning)
            ), requeued AS (SELECT * FROM reaped WHERE state = 'queued'), failed AS (SELECT * FROM reaped WHERE state = 'error'),
            logged AS (\(fragment: EventRecord.append(.with(.queued, ["reason": "lease_expired"]), from: "requeued"))),
            logged_failure AS (\(fragment: EventRecord.append(EventRecord(kind: .error, data: "jsonb_build_object('message', s.message)"), from: "failed")))
            SELECT count(*) FILTER (WHERE state = 'queued') AS requeued, count(*) FILTER (WHERE state = 'error') AS failed,
                   -- Re-queued tasks are new work; a task ended here frees its session for the next.
                   (SELECT count(\(fragment: Notifier.notifyNewWork)) FROM (SELECT 1 FROM reaped LIMIT 1) AS any_reaped) AS notified,
                   -- A task ended here is settled like any other: its waiting status reads answer now.
                   (SELECT count(\(fragment: Notifier.notifySettled(
                                             tenant: "tenant_id", user: "user_id", session: "session_id", task: "task_id", state: "'error'")))
                    FROM failed) AS settled
            FROM reaped
            """
        let rows = try await pool.system { try $0.query(query) }.rows
        guard let row = rows.first else { return (0, 0) }
        return (try row.decode("requeued"), try row.decode("failed"))
    }
}
