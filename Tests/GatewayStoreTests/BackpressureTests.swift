import Foundation
import Testing
@testable import GatewayStore

/// The queue-full and database-busy paths: records go to the spill file and back, and what cannot be kept is counted.
@Suite struct BackpressureTests {
    /// Another connection holds the write lock (as a long report export or a migration might), so the writer cannot
    /// commit. A tiny queue overflows at once. Every record must still end in the database.
    @Test func lockedDatabaseAndTinyQueueLoseNothing() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let log = try AuditLog(path: path, queueCapacity: 64, overflowCapacity: 100_000, batchSize: 32,
                               batchIntervalMs: 5, busyTimeoutMs: 20)
        let blocker = try SQLiteConnection(path: path, busyTimeoutMs: 1000)
        try blocker.exec("BEGIN IMMEDIATE")

        let threads = 4
        let perThread = 5000
        onThreads(threads) { thread in
            for index in 0..<perThread {
                log.enqueue(sampleRecord(index, thread: thread))
                if index % 500 == 0 { usleep(1000) }
            }
        }
        usleep(100_000)
        // Nothing can be in the database yet: it all went to the spill file (or waits in memory).
        #expect(log.writtenRecords == 0)
        #expect(log.spilledRecords > 0)
        #expect(log.failedBatches > 0)
        let spilledWhileLocked = log.spilledRecords
        print("backpressure: while locked: enqueued \(log.enqueuedRecords), spilled \(spilledWhileLocked), in memory \(log.queueDepth), dropped \(log.droppedRecords)")

        try blocker.exec("COMMIT")
        #expect(log.flush(timeoutMs: 20_000))
        let total = threads * perThread
        #expect(log.enqueuedRecords == total)
        #expect(log.droppedRecords == 0)
        #expect(log.writtenRecords == total)
        #expect(log.spillPendingRecords == 0)
        #expect(log.queueDepth == 0)
        let store = try Store(path: path)
        #expect(try store.auditCount() == total)
        // No duplicates: every request id once.
        let distinct = try store.withConnection { try $0.scalarInt("SELECT COUNT(DISTINCT request_id) FROM audit") }
        #expect(distinct == Int64(total))
        // The spill file was drained and restarted (only its header is left).
        let size = (try? FileManager.default.attributesOfItem(atPath: log.spillPath)[.size] as? Int) ?? -1
        #expect(size < 32)
        print("backpressure: after unlock: written \(log.writtenRecords), spilled \(log.spilledRecords), failed batches \(log.failedBatches)")
        log.close()
        blocker.close()
    }

    /// When the queue, the overflow list and the writer are all stuck, records are dropped and counted, and the
    /// counters add up: enqueued = written + dropped.
    @Test func overflowBeyondBothListsIsCountedNotSilent() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        // The spill file's directory does not exist, so spilling fails as well.
        let log = try AuditLog(path: path, queueCapacity: 16, spillPath: dir + "/missing/spill.jsonl",
                               overflowCapacity: 16, batchSize: 8, batchIntervalMs: 5, busyTimeoutMs: 50)
        let blocker = try SQLiteConnection(path: path, busyTimeoutMs: 1000)
        try blocker.exec("BEGIN IMMEDIATE")
        for index in 0..<5000 { log.enqueue(sampleRecord(index)) }
        try blocker.exec("COMMIT")
        #expect(log.flush(timeoutMs: 10_000))
        #expect(log.enqueuedRecords == 5000)
        #expect(log.droppedRecords > 0)
        #expect(log.writtenRecords + log.droppedRecords == 5000)
        let store = try Store(path: path)
        #expect(try store.auditCount() == log.writtenRecords)
        print("backpressure (no spill possible): written \(log.writtenRecords), dropped \(log.droppedRecords)")
        log.close()
        blocker.close()
    }

    /// Records still in memory or the spill file when the database stays locked past close() are kept in the spill
    /// file and imported by the next process.
    @Test func closeWhileLockedLeavesTheSpillForTheNextStart() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let blocker = try SQLiteConnection(path: path, busyTimeoutMs: 1000)
        do {
            let log = try AuditLog(path: path, batchIntervalMs: 5, busyTimeoutMs: 20)
            try blocker.exec("BEGIN IMMEDIATE")
            for index in 0..<1000 { log.enqueue(sampleRecord(index)) }
            log.close(timeoutMs: 300)
            #expect(log.writtenRecords == 0)
            #expect(log.spilledRecords == 1000)
            #expect(log.droppedRecords == 0)
            try blocker.exec("COMMIT")
        }
        let next = try AuditLog(path: path)
        let store = try Store(path: path)
        for _ in 0..<300 where try store.auditCount() < 1000 { usleep(10_000) }
        #expect(try store.auditCount() == 1000)
        #expect(next.writtenRecords == 1000)
        next.close()
        blocker.close()
    }
}
