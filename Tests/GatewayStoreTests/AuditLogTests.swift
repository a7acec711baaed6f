import Foundation
import Testing
@testable import GatewayStore

@Suite struct AuditLogTests {
    @Test func concurrentProducersGiveExactlyNRowsWithEveryField() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let log = try AuditLog(path: path)
        let threads = 4
        let perThread = 2000
        onThreads(threads) { thread in
            for index in 0..<perThread { log.enqueue(sampleRecord(index, thread: thread)) }
        }
        #expect(log.flush())
        #expect(log.enqueuedRecords == threads * perThread)
        #expect(log.writtenRecords == threads * perThread)
        #expect(log.droppedRecords == 0)
        #expect(log.queueDepth == 0)

        let store = try Store(path: path)
        #expect(try store.auditCount() == threads * perThread)
        let rows = try store.logs(limit: 10_000, includeBodies: true)
        #expect(rows.count == threads * perThread)
        var expected: [String: AuditRecord] = [:]
        for thread in 0..<threads {
            for index in 0..<perThread {
                let record = sampleRecord(index, thread: thread)
                expected[record.requestID] = record
            }
        }
        var mismatches = 0
        for row in rows {
            guard var want = expected.removeValue(forKey: row.requestID) else { mismatches += 1; continue }
            want.startNs = row.startNs  // sampleRecord reads the clock; compare the rest exactly
            want.endNs = row.startNs + 5_000_000
            if row != want {
                mismatches += 1
                if mismatches < 3 { Issue.record("mismatch:\n\(row)\n\(want)") }
            }
        }
        #expect(mismatches == 0)
        #expect(expected.isEmpty)
        // A nil error code and nil bodies stay nil; set ones round-trip with quotes, escapes and non-ASCII.
        let plain = try #require(rows.first { $0.requestID == "req-0-1" })
        #expect(plain.errorCode == nil && plain.requestBody == nil && plain.keyID == "key_1")
        let rejected = try #require(rows.first { $0.requestID == "req-2-33" })
        #expect(rejected.errorCode == "rate_limit_exceeded" && rejected.status == 429)
        let withBody = try #require(rows.first { $0.requestID == "req-3-3" })
        #expect(withBody.responseBody == "{\"id\":\"x\",\"usage\":{}}\n\tok ✓")
        log.close()
    }

    @Test func runsOfPlainRecordsShareOneInsertAndKeepEveryField() throws {
        // Records in at most one group and without tags go 16 to an INSERT; the others, one by one, in between.
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let log = try AuditLog(path: path)
        var sent: [String: AuditRecord] = [:]
        for index in 0..<200 {
            var record = sampleRecord(index)
            if index % 37 != 0 {
                record.tags = ""
                record.groups = index % 3 == 0 ? [] : ["team-b"]
            }
            sent[record.requestID] = record
            log.enqueue(record)
        }
        #expect(log.flush())
        let store = try Store(path: path)
        let rows = try store.logs(limit: 1000, includeBodies: true)
        #expect(rows.count == sent.count)
        for row in rows { #expect(row == sent[row.requestID], "\(row.requestID)") }
        let groups = Dictionary(uniqueKeysWithValues: try store.usage(by: .group).map { ($0.value, $0.requests) })
        for name in ["team-a", "interns", "team-b"] {
            #expect(groups[name] == sent.values.filter { $0.groups.contains(name) }.count, "\(name)")
        }
        #expect(groups[""] == sent.values.filter(\.groups.isEmpty).count)
        let tags = Dictionary(uniqueKeysWithValues: try store.usage(by: .tag).map { ($0.value, $0.requests) })
        #expect(tags["env=prod"] == sent.values.filter { $0.tags.contains("env=prod") }.count)
        log.close()
    }

    @Test func runsOfEveryLengthBetweenSideRowRecordsKeepEveryField() throws {
        // Runs of 0 ... 33 plain records, each followed by a tagged one: every split of a run into INSERTs of 16, 8,
        // 4, 2 and 1 rows, with the one-by-one path in between.
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let log = try AuditLog(path: path, batchSize: 1_000_000, batchIntervalMs: 10_000)
        var sent: [String: AuditRecord] = [:]
        var index = 0
        for run in 0...33 {
            for position in 0...run {
                var record = sampleRecord(index)
                if position < run {
                    record.tags = ""
                    record.groups = index % 2 == 0 ? [] : ["team-b"]
                } else {
                    record.tags = "env=prod,run=\(run)"
                }
                sent[record.requestID] = record
                log.enqueue(record)
                index += 1
            }
        }
        #expect(log.flush())
        let store = try Store(path: path)
        let rows = try store.logs(limit: 10_000, includeBodies: true)
        #expect(rows.count == sent.count)
        for row in rows { #expect(row == sent[row.requestID], "\(row.requestID)") }
        let tags = Dictionary(uniqueKeysWithValues: try store.usage(by: .tag).map { ($0.value, $0.requests) })
        #expect(tags["env=prod"] == sent.values.filter { $0.tags.contains("env=prod") }.count)
        log.close()
    }

    @Test func flushWaitsForEverythingEnqueuedBefore() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        // A long interval: without flush the writer would sit on these records for 10 s.
        let log = try AuditLog(path: path, batchSize: 1_000_000, batchIntervalMs: 10_000)
        let store = try Store(path: path)
        for index in 0..<10 { log.enqueue(sampleRecord(index)) }
        #expect(log.flush(timeoutMs: 5000))
        #expect(try store.auditCount() == 10)
        // Flushing with nothing new returns at once.
        #expect(log.flush(timeoutMs: 100))
        for index in 10..<25 { log.enqueue(sampleRecord(index)) }
        #expect(log.flush(timeoutMs: 5000))
        #expect(try store.auditCount() == 25)
        #expect(log.writtenRecords == 25)
        log.close()
    }

    @Test func closeThenReopenKeepsTheDataInWALMode() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        do {
            let log = try AuditLog(path: path)
            for index in 0..<100 { log.enqueue(sampleRecord(index)) }
            log.close()  // close flushes
            #expect(log.writtenRecords == 100)
            // After close, records are refused and counted, not lost silently.
            log.enqueue(sampleRecord(100))
            #expect(log.droppedRecords == 1)
            log.close()  // twice is fine
        }
        let reopened = try AuditLog(path: path)
        for index in 200..<250 { reopened.enqueue(sampleRecord(index)) }
        reopened.close()
        let store = try Store(path: path)
        #expect(try store.auditCount() == 150)
        #expect(try store.journalMode() == "wal")
    }

    @Test func aSchema1FileGainsTheAttemptLogColumn() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/old.db"
        do {
            // The audit table as schema 1 made it: no attempt_log.
            let db = try SQLiteConnection(path: path, busyTimeoutMs: 1000)
            try db.exec(Schema.statements.replacingOccurrences(of: "            attempt_log TEXT,\n", with: ""))
            try db.exec("PRAGMA user_version = 1")
            let old = AuditWriter.insertSQL(rows: 1)
            #expect(old.contains("attempt_log"))
            db.close()
        }
        let log = try AuditLog(path: path)
        var record = sampleRecord(1)
        record.attempts = 3
        record.attemptLog = "a/m 500 2ms; b/m connect_error 1ms"
        log.enqueue(record)
        log.enqueue(sampleRecord(2))
        log.close()
        let rows = try Store(path: path).logs(limit: 10)
        #expect(rows.count == 2)
        #expect(rows.first { $0.requestID == record.requestID }?.attemptLog == record.attemptLog)
        #expect(rows.first { $0.requestID != record.requestID }?.attemptLog == nil)
    }

    @Test func badPathFailsInInit() {
        #expect(throws: (any Error).self) { try AuditLog(path: "/nonexistent-dir/x/audit.db") }
    }

    @Test func spillFileLeftByAnEarlierRunIsImportedOnceAtStart() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let spillPath = dir + "/audit.spill"
        // What a crashed process leaves: a header, 3 records, and a torn last line.
        var json = JSONWriter()
        json.raw("{\"spill\":1}")
        json.newline()
        for index in 0..<3 {
            sampleRecord(index, thread: 9).writeJSON(to: &json)
            json.newline()
        }
        json.raw("{\"request_id\":\"torn")
        try Data(json.bytes).write(to: URL(fileURLWithPath: spillPath))

        let log = try AuditLog(path: path, spillPath: spillPath)
        #expect(log.flush(timeoutMs: 5000))
        // The earlier run's records are not this run's: flush has nothing to wait for; give the writer a moment.
        // It counts the spill file as drained just after the import commits, so wait for both.
        let store = try Store(path: path)
        for _ in 0..<200 where try store.auditCount() < 3 || log.spillPendingRecords != 0 { usleep(10_000) }
        #expect(try store.auditCount() == 3)
        #expect(log.spillPendingRecords == 0)
        log.close()

        // A second start imports nothing again.
        let again = try AuditLog(path: path, spillPath: spillPath)
        usleep(200_000)
        again.close()
        #expect(try store.auditCount() == 3)
        #expect(try store.logs(limit: 10).map(\.requestID).sorted() == ["req-9-0", "req-9-1", "req-9-2"])
    }

    /// A crash after an import committed but before the file was restarted: the stored (generation, offset) says how
    /// far the file got, so the next start imports only the rest, with no duplicates.
    @Test func spillResumesAtTheCommittedOffset() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let spillPath = dir + "/audit.spill"
        var json = JSONWriter()
        json.raw("{\"spill\":4}")
        json.newline()
        var offsets: [Int] = []
        for index in 0..<5 {
            sampleRecord(index, thread: 7).writeJSON(to: &json)
            json.newline()
            offsets.append(json.bytes.count)
        }
        try Data(json.bytes).write(to: URL(fileURLWithPath: spillPath))
        // The first two records were imported by the crashed process.
        _ = try Store(path: path)
        let db = try SQLiteConnection(path: path, busyTimeoutMs: 1000)
        try db.exec("INSERT INTO spill_state (id, generation, offset) VALUES (1, 4, \(offsets[1]))")
        db.close()

        let log = try AuditLog(path: path, spillPath: spillPath)
        let store = try Store(path: path)
        for _ in 0..<200 where try store.auditCount() < 3 { usleep(10_000) }
        usleep(50_000)
        log.close()
        #expect(try store.logs(limit: 10).map(\.requestID).sorted() == ["req-7-2", "req-7-3", "req-7-4"])
    }

    @Test func reportOnAMissingFileFails() {
        #expect(throws: SQLiteError.self) { try Store(path: "/tmp/does-not-exist-\(UUID()).db", createIfMissing: false) }
    }
}
