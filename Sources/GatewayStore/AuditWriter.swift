import Synchronization
import GatewayIO

/// The writer thread's side of `AuditLog`: its own connection, prepared statements and spill file.
/// Nothing here is touched by any other thread; what is shared lives in `AuditShared`.
final class AuditWriter: @unchecked Sendable {
    private let shared: AuditShared
    private let configuration: AuditShared.Configuration
    private let db: SQLiteConnection
    private let insertAudit: SQLiteStatement
    /// The INSERTs of 1, 2, 4 ... `rowsPerInsert` rows (element k has 2^k rows), for runs of records that need no
    /// side-table rows: a run of n takes one statement per bit of n.
    private let insertAuditRows: [SQLiteStatement]
    private let insertGroup: SQLiteStatement
    private let insertTag: SQLiteStatement
    private let saveSpillState: SQLiteStatement
    private let widenBlock: SQLiteStatement
    /// The `audit_blocks` row being gathered for the rows inserted last: its block and the bounds of their start.
    private var block: (number: Int64, minStartNs: Int64, maxStartNs: Int64)?
    private let spill: SpillFile
    /// The text of the row being inserted, bound in place.
    private let rowText = RowText()
    /// Swapped with the shared queue each cycle, so that neither side reallocates in steady state.
    private var spareRecords: [AuditRecord] = []
    private var spareOverflow: [AuditRecord] = []
    /// While the database failed recently, batches go straight to the spill file until this monotonic time.
    private var databaseRetryAtNs: Int64 = 0
    private var nextPruneAtNs: Int64 = 0
    /// After a failed spill read, the next try waits until this monotonic time.
    private var spillRetryAtNs: Int64 = 0
    /// Spill write errors are logged at most every 10 s (drops are counted and logged by `recordDropped`).
    private var nextSpillErrorLogNs: Int64 = 0
    private var pruneInProgress = false
    private var pruneStatementsReady = false

    /// Records per transaction: large enough to amortize the commit, small enough to check the overflow often.
    static let transactionRecords = 4096
    static let importChunkRecords = 2048
    static let pruneBatchRows = 5000
    static let pruneBatchesPerCycle = 20
    /// Rows per multi-row INSERT: one statement run for many rows saves SQLite's per-statement work (opening the
    /// cursors, halting, resetting) on all but one of them; about 2,800 instructions per row measured at 16, and
    /// 350 more at 64 (256 saves another 110, for statements four times the size). A power of two (see
    /// `insertAuditRows`).
    static let rowsPerInsert = 64
    static let columns = 26

    static func insertSQL(rows: Int) -> String {
        let values = (0..<rows).map { row in
            "(" + (1...columns).map { "?\(row * columns + $0)" }.joined(separator: ", ") + ")"
        }
        return """
            INSERT INTO audit (request_id, key_id, key_name, groups, tags, client_address, start_ns, end_ns,
                total_latency_us, upstream_latency_us, overhead_us, ttfb_us, requested_model, deployment, attempts,
                status, error_code, prompt_tokens, completion_tokens, cost_micro_usd, streamed, bytes_in, bytes_out,
                request_body, response_body, attempt_log)
            VALUES \(values.joined(separator: ",\n"))
            """
    }

    init(path: String, spillPath: String, shared: AuditShared) throws {
        self.shared = shared
        configuration = shared.configuration
        db = try SQLiteConnection(path: path, busyTimeoutMs: 5000)
        try Schema.prepare(db)
        db.setBusyTimeout(configuration.busyTimeoutMs)
        insertAudit = try db.prepare(AuditWriter.insertSQL(rows: 1))
        var insertAuditRows = [insertAudit]
        while insertAuditRows.count <= AuditWriter.rowsPerInsert.trailingZeroBitCount {
            insertAuditRows.append(try db.prepare(AuditWriter.insertSQL(rows: 1 << insertAuditRows.count)))
        }
        self.insertAuditRows = insertAuditRows
        insertGroup = try db.prepare("INSERT OR IGNORE INTO audit_groups (audit_id, grp) VALUES (?1, ?2)")
        insertTag = try db.prepare("INSERT OR IGNORE INTO audit_tags (audit_id, tag) VALUES (?1, ?2)")
        saveSpillState = try db.prepare("INSERT OR REPLACE INTO spill_state (id, generation, offset) VALUES (1, ?1, ?2)")
        widenBlock = try db.prepare("""
            INSERT INTO audit_blocks (block, min_start_ns, max_start_ns) VALUES (?1, ?2, ?3)
            ON CONFLICT (block) DO UPDATE SET min_start_ns = min(min_start_ns, excluded.min_start_ns),
                max_start_ns = max(max_start_ns, excluded.max_start_ns)
            """)

        let stored = try db.prepare("SELECT generation, offset FROM spill_state WHERE id = 1")
        let storedState: (Int64, Int64)? = try stored.step() ? (stored.int64(0), stored.int64(1)) : nil
        spill = try SpillFile(path: spillPath, storedGeneration: storedState?.0, storedOffset: storedState?.1 ?? 0)
        shared.spillPending.store(spill.pendingRecords, ordering: .relaxed)
        if spill.pendingRecords > 0 {
            Log.info("audit log: \(spill.pendingRecords) records in \(spillPath) from an earlier run, re-importing")
        }
        spareRecords.reserveCapacity(min(configuration.queueCapacity, 4096))
    }

    // MARK: The loop

    func run() {
        startPriority()
        nextPruneAtNs = UTCTime.monotonicNs()
        var prunesSeen = 0
        while true {
            let stopping = shared.stopRequested.load(ordering: .acquiring)
            choosePriority(stopping: stopping)
            let now = UTCTime.monotonicNs()
            let databaseHealthy = now >= databaseRetryAtNs
            let importReady = databaseHealthy && spillImportWanted()
            let pruneRequested = shared.pruneRequests.load(ordering: .acquiring) > prunesSeen
            if !stopping && !importReady && !pruneRequested && !pruneInProgress {
                var deadline = now + configuration.batchIntervalNs
                if !databaseHealthy && spill.hasPending { deadline = min(deadline, databaseRetryAtNs) }
                shared.wake.waitForSignal(untilMonotonicNs: deadline)
            }

            // Take everything queued; leave the producers empty arrays with capacity.
            shared.queue.withLock { state in
                swap(&state.records, &spareRecords)
                swap(&state.overflow, &spareOverflow)
                state.raiseWriterAt = configuration.backlogRecords
            }
            if !spareOverflow.isEmpty {
                // The queue was full: the excess goes to the spill file first, it is the cheap write.
                spillRecords(spareOverflow[...])
                spareOverflow.removeAll(keepingCapacity: true)
            }
            if !spareRecords.isEmpty {
                writeOrSpill(spareRecords)
                spareRecords.removeAll(keepingCapacity: true)
            }

            if stopping {
                break
            }
            importSpillIfQuiet()

            let requests = shared.pruneRequests.load(ordering: .acquiring)
            if requests > prunesSeen || UTCTime.monotonicNs() >= nextPruneAtNs || pruneInProgress {
                let complete = pruneOnce()
                if complete {
                    nextPruneAtNs = UTCTime.monotonicNs() + configuration.pruneIntervalNs
                    if requests > prunesSeen {
                        prunesSeen = requests
                        shared.prunesDone.store(requests, ordering: .releasing)
                    }
                }
            }
            shared.progress.withLock { shared.progress.broadcast() }
        }
        finish()
    }

    // MARK: CPU priority

    /// Publishes the thread id and finds out whether the writer may move between policies: it can always drop to
    /// SCHED_IDLE, but coming back needs a privilege (see `AuditLog`). Without it the writer never drops.
    private func startPriority() {
        let adaptive = ThreadScheduling.canLeaveIdle
        if !adaptive {
            Log.info("audit log: the writer keeps the normal CPU priority (leaving SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE 20)")
        }
        // In this order: whoever sees the thread id also sees whether it adapts.
        shared.writerAdaptive.store(adaptive, ordering: .releasing)
        shared.writerThreadID.store(ThreadScheduling.currentThreadID, ordering: .releasing)
    }

    /// Background (SCHED_IDLE) while caught up; normal while records back up, someone waits, or it is stopping.
    /// A producer that raised it meanwhile wins within `backlogRecords` more records (it raises again at each mark).
    private func choosePriority(stopping: Bool) {
        guard shared.writerAdaptive.load(ordering: .relaxed) else { return }
        let behind = stopping || shared.flushWaiters.load(ordering: .relaxed) > 0
            || shared.inMemory.load(ordering: .relaxed) >= configuration.backlogRecords
        let wanted: ThreadScheduling = behind ? .normal : .idle
        if ThreadScheduling.current() != wanted { ThreadScheduling.set(wanted) }
    }

    private func finish() {
        shared.exited.store(true, ordering: .releasing)
        shared.progress.withLock { shared.progress.broadcast() }
    }

    // MARK: Batches

    /// Writes a batch in transactions of `transactionRecords`, or spills what the database cannot take now.
    /// Between transactions it moves any overflow to the spill file, so that the overflow list never waits behind
    /// a long batch.
    private func writeOrSpill(_ records: [AuditRecord]) {
        var start = 0
        while start < records.count {
            if UTCTime.monotonicNs() < databaseRetryAtNs {
                spillRecords(records[start...])
                return
            }
            let end = min(records.count, start + AuditWriter.transactionRecords)
            do {
                try db.transaction {
                    try insert(records[start..<end])
                }
            } catch {
                databaseFailed(error)
                spillRecords(records[start...])
                return
            }
            let count = end - start
            shared.written.add(count, ordering: .relaxed)
            shared.inMemory.subtract(count, ordering: .relaxed)
            shared.settled.add(count, ordering: .releasing)
            start = end
            if start < records.count { spillOverflowNow() }
        }
    }

    /// Takes the overflow list, if any, and appends it to the spill file.
    private func spillOverflowNow() {
        shared.queue.withLock { state in
            if !state.overflow.isEmpty { swap(&state.overflow, &spareOverflow) }
        }
        if !spareOverflow.isEmpty {
            spillRecords(spareOverflow[...])
            spareOverflow.removeAll(keepingCapacity: true)
        }
    }

    /// Appends records to the spill file; when even that fails they are dropped and counted.
    private func spillRecords(_ records: ArraySlice<AuditRecord>) {
        do {
            try spill.append(records)
            shared.spilled.add(records.count, ordering: .relaxed)
            shared.spillPending.add(records.count, ordering: .relaxed)
        } catch {
            let now = UTCTime.monotonicNs()
            if now >= nextSpillErrorLogNs {
                Log.error("audit log: cannot write the spill file \(spill.path): \(error)")
                nextSpillErrorLogNs = now + 10_000_000_000
            }
            shared.recordDropped(records.count)
        }
        shared.inMemory.subtract(records.count, ordering: .relaxed)
    }

    private func databaseFailed(_ error: any Error) {
        shared.failedBatches.add(1, ordering: .relaxed)
        let busy = (error as? SQLiteError)?.isBusy ?? false
        // A lock held by another connection usually clears quickly; a failing disk does not.
        databaseRetryAtNs = UTCTime.monotonicNs() + (busy ? 100_000_000 : 1_000_000_000)
        if !busy { Log.error("audit log: \(error); spilling to \(spill.path)") }
    }

    /// Inserts records in order: each run of up to `rowsPerInsert` records that need no side-table rows in as few
    /// multi-row statements as its length has bits, the others one by one.
    private func insert(_ records: ArraySlice<AuditRecord>) throws {
        block = nil
        // Through a pointer: handing `records[i]` to a function copies the record, a retain and a release per string.
        try records.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            var index = 0
            while index < buffer.count {
                var end = index
                while end < buffer.count, end - index < AuditWriter.rowsPerInsert, AuditWriter.isPlain(base + end) { end += 1 }
                if end == index {
                    try insert(base + index)
                    index += 1
                    continue
                }
                while index < end {
                    let bit = Int.bitWidth - 1 - (end - index).leadingZeroBitCount
                    let statement = insertAuditRows[bit]
                    let rows = index..<(index + 1 << bit)
                    var bytes = 0
                    for i in rows { bytes += AuditWriter.textBytes(base + i) }
                    rowText.begin(reserving: bytes)
                    for i in rows {
                        bindRow(statement, base + i, offset: Int32((i - index) * AuditWriter.columns))
                    }
                    try statement.runKeepingBindings()
                    // One writer, inside one transaction: the rows of a statement took consecutive ids.
                    let firstID = db.lastInsertRowID - Int64(rows.count - 1)
                    for i in rows { try noteBlock(id: firstID + Int64(i - index), startNs: (base + i).pointee.startNs) }
                    index = rows.upperBound
                }
            }
        }
        try flushBlock()
    }

    /// Widens the gathered block by one row, writing out the previous block when the row starts a new one.
    @inline(__always)
    private func noteBlock(id: Int64, startNs: Int64) throws {
        let number = id >> Schema.blockShift
        if let current = block, current.number == number {
            block = (number, min(current.minStartNs, startNs), max(current.maxStartNs, startNs))
            return
        }
        try flushBlock()
        block = (number, startNs, startNs)
    }

    private func flushBlock() throws {
        guard let current = block else { return }
        block = nil
        widenBlock.bind(1, current.number)
        widenBlock.bind(2, current.minStartNs)
        widenBlock.bind(3, current.maxStartNs)
        try widenBlock.run()
    }

    /// One record, with its side-table rows.
    private func insert(_ record: UnsafePointer<AuditRecord>) throws {
        rowText.begin(reserving: AuditWriter.textBytes(record))
        bindRow(insertAudit, record, offset: 0)
        try insertAudit.runKeepingBindings()
        let rowID = db.lastInsertRowID
        try noteBlock(id: rowID, startNs: record.pointee.startNs)
        guard let side = AuditWriter.sideRows(record.pointee) else { return }
        for group in side.groups {
            insertGroup.bind(1, rowID)
            insertGroup.bindStatic(2, rowText.add(group))
            try insertGroup.run()
        }
        for tag in side.tags {
            insertTag.bind(1, rowID)
            insertTag.bind(2, tag)
            try insertTag.run()
        }
    }

    /// Whether a record needs no side-table rows (`sideRows` is nil), without building them.
    @inline(__always)
    private static func isPlain(_ record: UnsafePointer<AuditRecord>) -> Bool {
        guard record.pointee.tags.isEmpty else { return false }
        let groups = record.pointee.groups
        guard groups.count > 1 else { return true }
        var named = 0
        for group in groups where !group.isEmpty { named += 1 }
        return named < 2
    }

    /// The `audit_groups` and `audit_tags` rows a record needs, or nil for none (see `Schema`): groups only when it
    /// is in several.
    private static func sideRows(_ record: AuditRecord) -> (groups: [String], tags: [String])? {
        var groups: [String] = []
        if record.groups.count > 1 {
            groups = record.groups.filter { !$0.isEmpty }
            if groups.count < 2 { groups = [] }
        }
        if groups.isEmpty && record.tags.isEmpty { return nil }
        return (groups, record.tags.isEmpty ? [] : record.tagPairs)
    }

    /// The bytes of a record's text columns in `rowText`, and of its separate group rows.
    private static func textBytes(_ r: UnsafePointer<AuditRecord>) -> Int {
        let groupsBytes = RowText.joinedCount(r.pointee.groups)
        return r.pointee.requestID.utf8.count + (r.pointee.keyID?.utf8.count ?? 0) + (r.pointee.keyName?.utf8.count ?? 0)
            + (r.pointee.groups.count > 1 ? 2 : 1) * groupsBytes + r.pointee.tags.utf8.count + r.pointee.clientAddress.utf8.count
            + r.pointee.requestedModel.utf8.count + r.pointee.deployment.utf8.count + (r.pointee.errorCode?.utf8.count ?? 0)
    }

    /// Binds a record's 26 columns as parameters `offset + 1 ...`, its text from `rowText` (reserved by the caller).
    private func bindRow(_ s: SQLiteStatement, _ r: UnsafePointer<AuditRecord>, offset o: Int32) {
        let text = rowText
        s.bindStatic(o + 1, text.add(r.pointee.requestID))
        bindStatic(s, o + 2, r.pointee.keyID)
        bindStatic(s, o + 3, r.pointee.keyName)
        s.bindStatic(o + 4, text.add(joining: r.pointee.groups, separator: UInt8(ascii: ",")))
        s.bindStatic(o + 5, text.add(r.pointee.tags))
        s.bindStatic(o + 6, text.add(r.pointee.clientAddress))
        s.bind(o + 7, r.pointee.startNs)
        s.bind(o + 8, r.pointee.endNs)
        s.bind(o + 9, r.pointee.totalLatencyUs)
        s.bind(o + 10, r.pointee.upstreamLatencyUs)
        s.bind(o + 11, r.pointee.overheadUs)
        s.bind(o + 12, r.pointee.ttfbUs)
        s.bindStatic(o + 13, text.add(r.pointee.requestedModel))
        s.bindStatic(o + 14, text.add(r.pointee.deployment))
        s.bind(o + 15, r.pointee.attempts)
        s.bind(o + 16, r.pointee.status)
        bindStatic(s, o + 17, r.pointee.errorCode)
        s.bind(o + 18, r.pointee.promptTokens)
        s.bind(o + 19, r.pointee.completionTokens)
        s.bind(o + 20, r.pointee.costMicroUSD)
        s.bind(o + 21, r.pointee.streamed)
        s.bind(o + 22, r.pointee.bytesIn)
        s.bind(o + 23, r.pointee.bytesOut)
        s.bind(o + 24, r.pointee.requestBody)
        s.bind(o + 25, r.pointee.responseBody)
        s.bind(o + 26, r.pointee.attemptLog)
    }

    private func bindStatic(_ statement: SQLiteStatement, _ index: Int32, _ value: String?) {
        if let value { statement.bindStatic(index, rowText.add(value)) } else { statement.bindNull(index) }
    }

    // MARK: Spill import

    /// Re-imports one chunk of the spill file when the database is healthy and the queue is quiet (or a flush waits).
    private func importSpillIfQuiet() {
        guard UTCTime.monotonicNs() >= databaseRetryAtNs, spillImportWanted() else { return }
        // BEGIN IMMEDIATE first: a busy database fails before the file is read.
        let chunk: SpillFile.Chunk
        do {
            chunk = try db.transaction {
                let chunk = spill.read(maxRecords: AuditWriter.importChunkRecords)
                try insert(chunk.records[...])
                try bindAndSaveSpillState(offset: chunk.endOffset)
                return chunk
            }
        } catch {
            databaseFailed(error)
            return
        }
        if chunk.lines == 0 {
            // Nothing readable although the file is longer than the offset: an I/O error. Do not spin on it.
            Log.error("audit log: cannot read \(spill.path) at offset \(spill.offset); retrying in 1 s")
            spillRetryAtNs = UTCTime.monotonicNs() + 1_000_000_000
            return
        }
        spill.commit(chunk)
        if chunk.corrupt > 0 {
            Log.warning("audit log: skipped \(chunk.corrupt) unreadable lines in \(spill.path)")
        }
        shared.written.add(chunk.records.count, ordering: .relaxed)
        shared.spillPending.store(spill.pendingRecords, ordering: .relaxed)
        shared.settled.add(chunk.currentRunRecords, ordering: .releasing)
        // A restarted file has a new generation, which the stored state does not match: no state write needed.
        do {
            if try spill.restartIfDrained() { shared.spillPending.store(0, ordering: .relaxed) }
        } catch {
            Log.error("audit log: \(error)")
        }
    }

    /// Whether to import now: records wait in the spill file, and the queue is quiet (fresh records first) or a
    /// flush is waiting for them.
    private func spillImportWanted() -> Bool {
        guard spill.hasPending, UTCTime.monotonicNs() >= spillRetryAtNs else { return false }
        return shared.inMemory.load(ordering: .relaxed) < configuration.batchSize
            || shared.flushWaiters.load(ordering: .relaxed) > 0
    }

    private func bindAndSaveSpillState(offset: Int64) throws {
        saveSpillState.bind(1, spill.generation)
        saveSpillState.bind(2, offset)
        try saveSpillState.run()
    }

    // MARK: Retention

    /// Deletes up to `pruneBatchesPerCycle` batches of expired records.
    /// - Returns: true when nothing expired is left (or the database was busy and the next cycle retries).
    private func pruneOnce() -> Bool {
        let policy = shared.retention.withLock { $0 }
        if policy.isEmpty { pruneInProgress = false; return true }
        let nowNs = UTCTime.nowNs()
        let day = UTCTime.secondsPerDay * UTCTime.nanosecondsPerSecond
        let minimumDays = ([policy.defaultDays].compactMap { $0 } + Array(policy.groupDays.values)).min()!
        do {
            if !pruneStatementsReady {
                try db.exec("""
                    CREATE TEMP TABLE IF NOT EXISTS retention_groups (grp TEXT PRIMARY KEY, days INTEGER NOT NULL);
                    CREATE TEMP TABLE IF NOT EXISTS prune_ids (id INTEGER PRIMARY KEY);
                    """)
                pruneStatementsReady = true
            }
            try db.exec("DELETE FROM temp.retention_groups")
            let addGroup = try db.prepare("INSERT INTO temp.retention_groups (grp, days) VALUES (?1, ?2)")
            for (group, days) in policy.groupDays {
                addGroup.bind(1, group)
                addGroup.bind(2, days)
                try addGroup.run()
            }
            // A record expires after the longest override among its groups, else the default (NULL: never).
            let select = try db.prepare("""
                INSERT INTO temp.prune_ids (id)
                SELECT a.id FROM audit a
                WHERE a.id <= \(Schema.idRange(since: "-9223372036854775808", until: "?1").high)
                  AND a.start_ns < ?1
                  AND a.start_ns < ?2 - COALESCE(
                      (SELECT MAX(r.days) FROM audit_groups g JOIN temp.retention_groups r ON r.grp = g.grp
                       WHERE g.audit_id = a.id AND instr(a.groups, ',') > 0),
                      (SELECT r.days FROM temp.retention_groups r WHERE r.grp = a.groups),
                      ?3) * \(day)
                LIMIT ?4
                """)
            for _ in 0..<AuditWriter.pruneBatchesPerCycle {
                let deleted: Int = try db.transaction {
                    select.bind(1, nowNs - Int64(minimumDays) * day)
                    select.bind(2, nowNs)
                    select.bind(3, policy.defaultDays.map(Int64.init))
                    select.bind(4, AuditWriter.pruneBatchRows)
                    try select.run()
                    let count = db.changes
                    if count > 0 {
                        try db.exec("""
                            DELETE FROM audit_groups WHERE audit_id IN (SELECT id FROM temp.prune_ids);
                            DELETE FROM audit_tags WHERE audit_id IN (SELECT id FROM temp.prune_ids);
                            DELETE FROM audit WHERE id IN (SELECT id FROM temp.prune_ids);
                            DELETE FROM audit_blocks
                            WHERE block < COALESCE((SELECT MIN(id) FROM audit) >> \(Schema.blockShift), 9223372036854775807);
                            """)
                    }
                    try db.exec("DELETE FROM temp.prune_ids")
                    return count
                }
                shared.pruned.add(deleted, ordering: .releasing)
                if deleted < AuditWriter.pruneBatchRows {
                    pruneInProgress = false
                    return true
                }
            }
            pruneInProgress = true
            return false
        } catch {
            let busy = (error as? SQLiteError)?.isBusy ?? false
            if !busy { Log.error("audit log retention: \(error)") }
            pruneInProgress = false
            // A requested prune must not wait forever on a busy database: report it done, the hourly run retries.
            return true
        }
    }
}
