import Foundation
import Testing
@testable import GatewayStore

@Suite struct RetentionTests {
    @Test func pruneRemovesOldRecordsWithTheirBodiesAndKeepsNewOnes() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let now = UTCTime.nowNs()
        let log = try AuditLog(path: path, retentionDays: 30, groupRetentionDays: ["legal": 365, "short": 7])
        func record(_ id: String, ageDays: Int64, groups: [String]) -> AuditRecord {
            var record = sampleRecord(1, startNs: now - ageDays * nsPerDay, body: true)
            record.requestID = id
            record.groups = groups
            return record
        }
        log.enqueue(record("old-default", ageDays: 40, groups: ["team"]))
        log.enqueue(record("old-nogroup", ageDays: 40, groups: []))
        log.enqueue(record("new-default", ageDays: 10, groups: ["team"]))
        log.enqueue(record("old-legal", ageDays: 200, groups: ["team", "legal"]))
        log.enqueue(record("ancient-legal", ageDays: 400, groups: ["legal"]))
        log.enqueue(record("short-expired", ageDays: 8, groups: ["short"]))
        log.enqueue(record("short-kept", ageDays: 6, groups: ["short"]))
        // In both groups: the longest retention wins.
        log.enqueue(record("short-and-legal", ageDays: 8, groups: ["short", "legal"]))
        #expect(log.flush())
        // The start-up prune may already have run after the first batch; either way 4 records go.
        log.pruneNow()
        #expect(log.prunedRecords == 4)
        let store = try Store(path: path)
        let left = try store.logs(limit: 100).map(\.requestID).sorted()
        #expect(left == ["new-default", "old-legal", "short-and-legal", "short-kept"])
        // Side tables and bodies went with the rows.
        let orphans = try store.withConnection {
            try $0.scalarInt("SELECT COUNT(*) FROM audit_groups WHERE audit_id NOT IN (SELECT id FROM audit)")
        }
        #expect(orphans == 0)
        let bodies = try store.withConnection { try $0.scalarInt("SELECT COUNT(request_body) FROM audit") }
        #expect(bodies == 4)

        // A shorter policy on reload applies to what is stored already.
        log.setRetention(defaultDays: 7, groupDays: [:])
        #expect(log.pruneNow() == 3)
        #expect(try store.logs(limit: 100).map(\.requestID) == ["short-kept"])
        #expect(log.prunedRecords == 7)
        log.close()
    }

    @Test func noPolicyKeepsEverythingAndStartupPrunes() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let now = UTCTime.nowNs()
        do {
            let log = try AuditLog(path: path)
            for index in 0..<10 { log.enqueue(sampleRecord(index, startNs: now - Int64(index) * 10 * nsPerDay)) }
            log.close()
            #expect(log.prunedRecords == 0)
        }
        // Restarted with a 25-day retention: the start-up prune removes ages 30…90 days.
        let log = try AuditLog(path: path, retentionDays: 25)
        let store = try Store(path: path)
        for _ in 0..<200 where try store.auditCount() > 3 { usleep(10_000) }
        #expect(try store.auditCount() == 3)
        log.close()
    }
}
