#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import GatewayIO

/// The audit log: reactor threads enqueue one `AuditRecord` per client request; one writer thread writes them to
/// SQLite in batches.
///
/// ## The hot path
/// `enqueue` takes a mutex (`Locked`, a pthread mutex) around an array append (tens of nanoseconds, never held across I/O) and, once per
/// `batchSize` records, wakes the writer. It never touches a disk or the database and never blocks on the writer.
///
/// ## The writer thread
/// It wakes every `batchIntervalMs` (50 ms) or when `batchSize` (512) records are waiting, swaps the queue for an
/// empty array and writes the whole batch in one `BEGIN IMMEDIATE … COMMIT` transaction with prepared INSERTs.
/// The database runs in WAL mode with `synchronous=NORMAL`, so readers (reports, the admin API) never wait for it.
///
/// ## CPU priority: background while caught up
/// The writer is background work: while it keeps up it runs at SCHED_IDLE, so it only takes CPU time that no
/// reactor wants, and a request never waits on a run queue behind an audit batch. When records back up
/// (`backlogRecords` queued, by default a batch and a quarter, and every `backlogRecords` more) the producer that
/// crosses the mark moves it to SCHED_OTHER, the normal fair share, so that a saturated CPU cannot starve it;
/// `flush` and `close` do the same. It goes back to SCHED_IDLE once the queue is short again. The price is CPU
/// that was idle anyway: a reactor that wakes preempts the writer at once, so the writer is switched out more
/// often. (Measured with the reactor thread's run-queue delay, /proc/PID/task/TID/schedstat: at 15,000 req/s on
/// one CPU, 210-270 ms per 5 s with the writer at the normal policy, 50-80 ms with this, the same as the bare
/// proxy's.) Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE of 20: without them the writer stays at the
/// normal policy throughout (`writerPriorityIsAdaptive`).
///
/// ## Backpressure: spill, then count (no silent loss, no blocking)
/// 1. The in-memory queue holds up to `queueCapacity` records.
/// 2. When it is full, `enqueue` puts the record on an overflow list (up to `overflowCapacity` more) and wakes the
///    writer, which appends the overflow to the spill file (JSON lines, a sequential append: far cheaper than
///    indexed inserts) before its next database batch.
/// 3. When the database cannot take a batch (another connection holds the write lock past the busy timeout, the
///    disk is full, …), the batch goes to the spill file too, and the writer retries the database after a short
///    backoff.
/// 4. When the database is healthy and the queue is short, the writer re-imports the spill file in chunks; the import
///    offset commits in the same transaction as the rows (see `SpillFile`), so a crash neither loses nor duplicates.
///    Records left in the spill file at exit are imported by the next process.
/// 5. Only when the overflow list is also full (the writer thread is stalled inside one database call for longer than
///    it takes to fill both lists) or the spill file cannot be written, a record is dropped. It is counted in
///    `droppedRecords` (export it as a metric) and logged; it never blocks the request.
///
/// Counters, for metrics: `enqueuedRecords` (every call), `writtenRecords` (rows committed, including re-imported
/// ones), `spilledRecords` (records that went through the spill file), `droppedRecords`, `queueDepth` (records in
/// memory, not yet written) and `spillPendingRecords`. At rest, for this process:
/// `enqueued == written(this process's records) + dropped + spill pending`.
///
/// ## Retention
/// `retentionDays` (store.retention_days) and `groupRetentionDays` (per-group overrides) are applied by the writer
/// thread at start and then hourly. A record older than its retention is deleted with its bodies. A record in
/// several groups with overrides keeps the longest of them; a record in no group with an override uses the default.
/// With no default, records outside overridden groups are kept forever. Changing the policy (`setRetention`)
/// applies to old records too. Each run deletes in transactions of 5,000 rows, interleaved with the batches.
///
/// One `AuditLog` per database file: it owns the spill file. `Store` connections may be opened beside it.
public final class AuditLog: Sendable {
    public let path: String
    public let spillPath: String
    public let queueCapacity: Int
    public let overflowCapacity: Int
    let shared: AuditShared
    private let thread: Locked<pthread_t?>

    /// Opens (or creates) the database, re-imports any spill file left by an earlier process, and starts the writer.
    /// - Parameters:
    ///   - path: the SQLite file (`store.sqlite`).
    ///   - queueCapacity: records held in memory before the overflow list takes over.
    ///   - spillPath: the spill file; nil means `path + "-spill.jsonl"`.
    ///   - retentionDays: `store.retention_days`; nil keeps records forever.
    ///   - groupRetentionDays: per-group overrides of `retentionDays`.
    ///   - overflowCapacity: records held in the overflow list on their way to the spill file; nil means
    ///     `queueCapacity`.
    ///   - batchSize: the queue length that wakes the writer before its interval is up.
    ///   - batchIntervalMs: the longest a record waits in memory while the database is healthy.
    ///   - backlogRecords: the queue length at which the writer leaves its background priority; nil means a
    ///     batch and a quarter (one batch wakes it: a quarter more queued means it did not get the CPU in time;
    ///     two batches let it starve longer on a saturated CPU and then write a longer burst).
    ///   - busyTimeoutMs: how long a batch waits for another connection's write lock before it is spilled.
    ///   - pruneIntervalSeconds: how often retention runs.
    public init(
        path: String,
        queueCapacity: Int = 65536,
        spillPath: String? = nil,
        retentionDays: Int? = nil,
        groupRetentionDays: [String: Int] = [:],
        overflowCapacity: Int? = nil,
        batchSize: Int = 512,
        batchIntervalMs: Int = 50,
        backlogRecords: Int? = nil,
        busyTimeoutMs: Int = 100,
        pruneIntervalSeconds: Int = 3600
    ) throws {
        self.path = path
        self.spillPath = spillPath ?? path + "-spill.jsonl"
        self.queueCapacity = max(1, queueCapacity)
        self.overflowCapacity = max(0, overflowCapacity ?? queueCapacity)
        let configuration = AuditShared.Configuration(
            queueCapacity: self.queueCapacity,
            overflowCapacity: self.overflowCapacity,
            batchSize: max(1, batchSize),
            batchIntervalNs: Int64(max(1, batchIntervalMs)) * 1_000_000,
            backlogRecords: max(1, backlogRecords ?? (batchSize > Int.max / 2 ? Int.max : batchSize + max(1, batchSize / 4))),
            busyTimeoutMs: Int32(clamping: max(0, busyTimeoutMs)),
            pruneIntervalNs: Int64(max(1, pruneIntervalSeconds)) * 1_000_000_000
        )
        shared = AuditShared(
            configuration: configuration,
            retention: RetentionPolicy(defaultDays: retentionDays, groupDays: groupRetentionDays)
        )
        // Open everything on this thread, so that a bad path fails here and not in the writer.
        let writer = try AuditWriter(path: path, spillPath: self.spillPath, shared: shared)
        var tid = pthread_t()
        let context = Unmanaged.passRetained(writer).toOpaque()
        let rc = pthread_create(&tid, nil, auditWriterMain, context)
        guard rc == 0 else {
            Unmanaged<AuditWriter>.fromOpaque(context).release()
            throw IOError(errno: rc, function: "pthread_create audit writer")
        }
        thread = Locked(tid)
    }

    deinit { close() }

    // MARK: The hot path

    /// Queues a record for the writer. Never blocks on I/O; see the type's backpressure policy.
    public func enqueue(_ record: consuming AuditRecord) {
        let configuration = shared.configuration
        // Moved, not copied, into the queue: a copy would retain, and later release, each of its strings.
        var pending: AuditRecord? = consume record
        let outcome: EnqueueOutcome = shared.queue.withLock { state in
            shared.enqueued.add(1, ordering: .relaxed)
            if state.closed { return .dropped }
            if state.records.count < configuration.queueCapacity {
                state.records.append(pending.take()!)
                let count = state.records.count
                if count == state.raiseWriterAt {
                    state.raiseWriterAt += configuration.backlogRecords
                    return .backlog
                }
                return count == configuration.batchSize ? .wake : .queued
            }
            if state.overflow.count < configuration.overflowCapacity {
                state.overflow.append(pending.take()!)
                return state.overflow.count == 1 ? .wake : .queued
            }
            return .dropped
        }
        switch outcome {
        case .queued:
            shared.inMemory.add(1, ordering: .relaxed)
        case .wake:
            shared.inMemory.add(1, ordering: .relaxed)
            shared.wake.signal()
        case .backlog:
            shared.inMemory.add(1, ordering: .relaxed)
            shared.wake.signal()
            if shared.raiseWriter() { shared.writerRaises.add(1, ordering: .relaxed) }
        case .dropped:
            shared.recordDropped(1)
        }
    }

    private enum EnqueueOutcome { case queued, wake, backlog, dropped }

    // MARK: Counters

    public var enqueuedRecords: Int { shared.enqueued.load(ordering: .relaxed) }
    public var writtenRecords: Int { shared.written.load(ordering: .relaxed) }
    public var spilledRecords: Int { shared.spilled.load(ordering: .relaxed) }
    public var droppedRecords: Int { shared.dropped.load(ordering: .relaxed) }
    /// Records in memory that are neither written nor spilled yet.
    public var queueDepth: Int { shared.inMemory.load(ordering: .relaxed) }
    /// Records in the spill file waiting to be re-imported (this process's and earlier ones').
    public var spillPendingRecords: Int { shared.spillPending.load(ordering: .relaxed) }
    /// Records deleted by retention since start.
    public var prunedRecords: Int { shared.pruned.load(ordering: .relaxed) }
    /// Database transactions that failed (busy past the timeout, or erroring): a failed batch went to the spill file,
    /// a failed import is retried.
    public var failedBatches: Int { shared.failedBatches.load(ordering: .relaxed) }
    /// Whether the writer moves between SCHED_IDLE and SCHED_OTHER (see the type's notes); known once it started.
    public var writerPriorityIsAdaptive: Bool { shared.writerAdaptive.load(ordering: .acquiring) }
    /// Times a producer raised the writer because records backed up (see the type's notes): a metric.
    public var writerRaises: Int { shared.writerRaises.load(ordering: .relaxed) }
    /// The writer thread's scheduling policy now; nil before it started or after it exited.
    public var writerScheduling: ThreadScheduling? {
        let tid = shared.writerThreadID.load(ordering: .acquiring)
        return tid == 0 || shared.writerExited ? nil : ThreadScheduling.current(thread: tid)
    }

    // MARK: Control

    /// Blocks until every record enqueued before the call is committed to the database (including records that went
    /// through the spill file) or dropped, or until the timeout.
    /// - Parameter timeoutMs: the longest wait; the database may be locked by another process.
    /// - Returns: true when everything reached the database; false on timeout (the records are then still in memory
    ///   or in the spill file, and `close()` leaves them in the spill file for the next start).
    @discardableResult
    public func flush(timeoutMs: Int = 30_000) -> Bool {
        let target = shared.queue.withLock { _ in shared.enqueued.load(ordering: .relaxed) }
        shared.raiseWriter()
        return shared.waitUntilSettled(target, timeoutMs: timeoutMs, flush: true)
    }

    /// Flushes, then stops the writer thread and closes the database. Records enqueued afterwards are dropped and
    /// counted. Whatever the database could not take in time stays in the spill file. Safe to call twice.
    /// - Parameter timeoutMs: passed to `flush`.
    public func close(timeoutMs: Int = 30_000) {
        let tid: pthread_t? = thread.withLock { tid in
            defer { tid = nil }
            return tid
        }
        guard let tid else { return }
        flush(timeoutMs: timeoutMs)
        shared.queue.withLock { $0.closed = true }
        shared.stopRequested.store(true, ordering: .releasing)
        shared.wake.signal()
        pthread_join(tid, nil)
    }

    /// Replaces the retention policy (on config reload); the writer applies it at its next prune.
    public func setRetention(defaultDays: Int?, groupDays: [String: Int]) {
        shared.retention.withLock { $0 = RetentionPolicy(defaultDays: defaultDays, groupDays: groupDays) }
    }

    /// Runs retention now on the writer thread and waits for it.
    /// - Returns: how many records it deleted, or nil on timeout.
    @discardableResult
    public func pruneNow(timeoutMs: Int = 30_000) -> Int? {
        let before = shared.pruned.load(ordering: .acquiring)
        let ticket = shared.pruneRequests.add(1, ordering: .acquiringAndReleasing).newValue
        shared.wake.signal()
        let deadline = UTCTime.monotonicNs() + Int64(timeoutMs) * 1_000_000
        return shared.progress.withLock { () -> Int? in
            while shared.prunesDone.load(ordering: .acquiring) < ticket {
                let now = UTCTime.monotonicNs()
                if now >= deadline { return nil }
                shared.progress.wait(untilMonotonicNs: min(deadline, now + 20_000_000))
            }
            return shared.pruned.load(ordering: .acquiring) - before
        }
    }
}

/// Which records retention deletes: see `AuditLog`.
public struct RetentionPolicy: Sendable, Equatable {
    public var defaultDays: Int?
    public var groupDays: [String: Int]

    public init(defaultDays: Int?, groupDays: [String: Int] = [:]) {
        self.defaultDays = defaultDays.flatMap { $0 > 0 ? $0 : nil }
        self.groupDays = groupDays.filter { $0.value > 0 }
    }

    public var isEmpty: Bool { defaultDays == nil && groupDays.isEmpty }
}

/// What the producers and the writer thread share.
final class AuditShared: Sendable {
    struct Configuration: Sendable {
        var queueCapacity: Int
        var overflowCapacity: Int
        var batchSize: Int
        var batchIntervalNs: Int64
        var backlogRecords: Int
        var busyTimeoutMs: Int32
        var pruneIntervalNs: Int64
    }

    struct QueueState {
        var records: [AuditRecord] = []
        var overflow: [AuditRecord] = []
        var closed = false
        /// The queue length at which the producer raises the writer's priority next (see `AuditLog`).
        var raiseWriterAt = 0
    }

    let configuration: Configuration
    let queue: Locked<QueueState>
    let retention: Locked<RetentionPolicy>
    /// Wakes the writer: a full batch, an overflow, a flush, a prune, a stop.
    let wake = Condition()
    /// The writer broadcasts it after every cycle; `flush` and `pruneNow` wait on it.
    let progress = Condition()

    let enqueued = Atomic<Int>(0)
    let written = Atomic<Int>(0)
    let spilled = Atomic<Int>(0)
    let dropped = Atomic<Int>(0)
    let inMemory = Atomic<Int>(0)
    let spillPending = Atomic<Int>(0)
    let pruned = Atomic<Int>(0)
    let failedBatches = Atomic<Int>(0)
    /// This process's records that reached the database or were dropped: `flush` waits for it to reach its target.
    let settled = Atomic<Int>(0)
    /// Flushes waiting: while nonzero the writer imports the spill file without waiting for a quiet queue.
    let flushWaiters = Atomic<Int>(0)
    let pruneRequests = Atomic<Int>(0)
    let prunesDone = Atomic<Int>(0)
    let stopRequested = Atomic<Bool>(false)

    init(configuration: Configuration, retention: RetentionPolicy) {
        self.configuration = configuration
        var state = QueueState()
        state.records.reserveCapacity(min(configuration.queueCapacity, 4096))
        state.raiseWriterAt = configuration.backlogRecords
        queue = Locked(state)
        self.retention = Locked(retention)
    }

    /// The writer's kernel thread id, once it runs; whether it moves between policies (see `AuditLog`).
    let writerThreadID = Atomic<Int32>(0)
    let writerAdaptive = Atomic<Bool>(false)
    /// Producers' raises at backlog marks that moved the writer off SCHED_IDLE (flushes not counted).
    let writerRaises = Atomic<Int>(0)

    /// Moves the writer to the normal policy: records back up, or someone waits for them. False when it was
    /// already there (or never leaves it).
    @discardableResult
    func raiseWriter() -> Bool {
        let tid = writerThreadID.load(ordering: .acquiring)
        guard tid != 0, writerAdaptive.load(ordering: .acquiring), ThreadScheduling.current(thread: tid) == .idle else {
            return false
        }
        return ThreadScheduling.set(.normal, thread: tid)
    }

    func recordDropped(_ count: Int) {
        dropped.add(count, ordering: .relaxed)
        settled.add(count, ordering: .releasing)
        let total = dropped.load(ordering: .relaxed)
        // Log the first drop and then every 10,000th, not every one.
        if total == count || total / 10_000 != (total - count) / 10_000 {
            Log.error("audit log: \(total) records dropped (queue, overflow and spill file all full or failing)")
        }
    }

    func waitUntilSettled(_ target: Int, timeoutMs: Int, flush: Bool) -> Bool {
        if flush { flushWaiters.add(1, ordering: .relaxed) }
        defer {
            if flush {
                flushWaiters.subtract(1, ordering: .relaxed)
                // The writer stays at the normal priority while a flush waits: wake it to drop back.
                wake.signal()
            }
        }
        wake.signal()
        let deadline = UTCTime.monotonicNs() + Int64(max(0, timeoutMs)) * 1_000_000
        return progress.withLock {
            while settled.load(ordering: .acquiring) < target {
                let now = UTCTime.monotonicNs()
                if now >= deadline || stopRequested.load(ordering: .relaxed) && writerExited { return false }
                progress.wait(untilMonotonicNs: min(deadline, now + 20_000_000))
            }
            return true
        }
    }

    let exited = Atomic<Bool>(false)
    var writerExited: Bool { exited.load(ordering: .acquiring) }
}

/// The writer thread's entry: a free function, so that it inherits no actor isolation.
private func auditWriterMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let writer = Unmanaged<AuditWriter>.fromOpaque(context!).takeRetainedValue()
    writer.run()
    return nil
}
