import Foundation
import Testing
@testable import GatewayStore

/// The audit table has no time index: time ranges go through `audit_blocks` (see `Schema`). These tests check the
/// reports against a plain scan of what was written, with records that start out of order across many blocks.
@Suite struct AuditBlocksTests {
    /// 10,000 records (three blocks of 4,096 ids), mostly in start order, with stragglers: every 97th in the first
    /// and the last block started an hour before its neighbours (a long request that finished late), and every 389th
    /// a minute after. The middle block has no early straggler, so that its bounds are tight at its first id. All but one in 50
    /// need no side-table rows, so that most are written by the multi-row INSERTs and block edges fall inside them.
    private static func records() -> [AuditRecord] {
        let base: Int64 = 1_750_000_000 * 1_000_000_000
        return (0..<10_000).map { i in
            var start = base + Int64(i) * 1_000_000_000
            if i % 97 == 0 && (i < 3_000 || i > 9_000) { start -= 3_600 * 1_000_000_000 }
            if i % 389 == 0 { start += 60 * 1_000_000_000 }
            if i % 1000 == 500 { start = base + Int64(i - 1) * 1_000_000_000 }  // a tie with its neighbour
            var record = sampleRecord(i, startNs: start, body: false)
            if i % 50 != 0 {
                record.tags = ""
                record.groups = ["team-b"]
            }
            return record
        }
    }

    private static func write(_ records: [AuditRecord], to path: String) throws {
        let log = try AuditLog(path: path)
        for record in records { log.enqueue(record) }
        #expect(log.flush())
        log.close()
    }

    /// Newest first as `logs` promises: by start, then by the order of writing (the id).
    private static func newestFirst(_ records: [AuditRecord]) -> [AuditRecord] {
        records.enumerated().sorted { a, b in
            a.element.startNs != b.element.startNs ? a.element.startNs > b.element.startNs : a.offset > b.offset
        }.map(\.element)
    }

    @Test func logsUsageAndSpendMatchAFullScan() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let written = AuditBlocksTests.records()
        try AuditBlocksTests.write(written, to: path)
        let store = try Store(path: path)
        let blocks = try store.withConnection { try $0.scalarInt("SELECT COUNT(*) FROM audit_blocks") }
        #expect(blocks == 3)
        // Every block's bounds hold its rows' starts (they may be wider, never narrower).
        let narrower = try store.withConnection {
            try $0.scalarInt("""
                SELECT COUNT(*) FROM (SELECT id >> \(Schema.blockShift) AS block, MIN(start_ns) AS low,
                    MAX(start_ns) AS high FROM audit GROUP BY 1) r
                LEFT JOIN audit_blocks b USING (block)
                WHERE b.block IS NULL OR b.min_start_ns > r.low OR b.max_start_ns < r.high
                """)
        }
        #expect(narrower == 0)
        let indexes = try store.withConnection {
            try $0.scalarInt("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit'")
        }
        #expect(indexes == 0)

        let all = AuditBlocksTests.newestFirst(written)
        #expect(try store.logs(limit: 50).map(\.requestID) == all.prefix(50).map(\.requestID))
        #expect(try store.logs(limit: 10_000).map(\.requestID) == all.map(\.requestID))

        // Windows that cut through blocks, with and without a filter.
        let base = written[0].startNs / 1_000_000_000
        // One-second windows at the records with the first and last ids of a block (ids start at 1).
        let edges = [4_094, 4_095, 4_096, 8_190, 8_191, 8_192].map { (base + Int64($0), base + Int64($0) + 1) }
        for (since, until) in [(base + 100, base + 200), (base + 4_000, base + 4_200), (base - 3_600, base + 10),
                               (base + 9_990, base + 20_000)] + edges {
            let inWindow = all.filter { $0.startNs >= since * 1_000_000_000 && $0.startNs < until * 1_000_000_000 }
            #expect(try store.logs(limit: 30, since: since, until: until).map(\.requestID)
                    == inWindow.prefix(30).map(\.requestID))
            let keyed = inWindow.filter { $0.keyID == "key_1" }
            #expect(try store.logs(limit: 7, key: "key_1", since: since, until: until).map(\.requestID)
                    == keyed.prefix(7).map(\.requestID))

            var expected: [String: (requests: Int, cost: Int64)] = [:]
            for record in inWindow {
                let key = record.keyID ?? ""
                expected[key, default: (0, 0)].requests += 1
                expected[key, default: (0, 0)].cost += record.costMicroUSD
            }
            let usage = try store.usage(by: .key, since: since, until: until)
            #expect(usage.count == expected.count)
            for row in usage {
                #expect(row.requests == expected[row.value]?.requests)
                #expect(row.costMicroUSD == expected[row.value]?.cost)
            }
        }

        // A straggler from an hour back is found by a range that ends before its neighbours start.
        let straggler = written[9_894]  // 9894 = 97 * 102
        let found = try store.logs(limit: 5, since: straggler.startNs / 1_000_000_000,
                                   until: straggler.startNs / 1_000_000_000 + 1)
        #expect(found.map(\.requestID).contains(straggler.requestID))

        let since = base + 5_000
        var spend: [String: Int64] = [:]
        for record in written where record.startNs >= since * 1_000_000_000 {
            if let key = record.keyID { spend[key, default: 0] += record.costMicroUSD }
        }
        #expect(try store.spendSince(unixSeconds: since).byKey == spend)
    }

    /// A file of schema 2 (a `start_ns` index, no blocks) is upgraded when opened: the index goes, its rows get
    /// blocks, and new rows continue from there.
    @Test func upgradesASchema2File() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let old = try SQLiteConnection(path: path, busyTimeoutMs: 1000)
        try old.exec("""
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, key_id TEXT, key_name TEXT,
                groups TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '', client_address TEXT NOT NULL DEFAULT '',
                start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, total_latency_us INTEGER NOT NULL,
                upstream_latency_us INTEGER NOT NULL, overhead_us INTEGER NOT NULL, ttfb_us INTEGER NOT NULL,
                requested_model TEXT NOT NULL DEFAULT '', deployment TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL,
                status INTEGER NOT NULL, error_code TEXT, prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL, cost_micro_usd INTEGER NOT NULL, streamed INTEGER NOT NULL,
                bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, request_body TEXT, response_body TEXT,
                attempt_log TEXT);
            CREATE INDEX audit_start ON audit(start_ns);
            PRAGMA user_version = 2;
            """)
        // 5,000 rows over two blocks, written newest first: the worst order for a block's bounds.
        try old.exec("BEGIN")
        for i in 0..<5_000 {
            try old.exec("""
                INSERT INTO audit (request_id, key_id, start_ns, end_ns, total_latency_us, upstream_latency_us,
                    overhead_us, ttfb_us, attempts, status, prompt_tokens, completion_tokens, cost_micro_usd, streamed,
                    bytes_in, bytes_out)
                VALUES ('old-\(i)', 'key_old', \(Int64(10_000 - i) * 1_000_000_000), 0, 0, 0, 0, 0, 1, 200, 1, 1, 10,
                    0, 0, 0)
                """)
        }
        try old.exec("COMMIT")
        old.close()

        let store = try Store(path: path)
        let state = try store.withConnection { db in
            (try db.scalarInt("PRAGMA user_version"),
             try db.scalarInt("SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit_start'"),
             try db.scalarInt("SELECT COUNT(*) FROM audit_blocks"))
        }
        #expect(state.0 == Schema.version && state.1 == 0 && state.2 == 2)
        #expect(try store.logs(limit: 3).map(\.requestID) == ["old-0", "old-1", "old-2"])
        #expect(try store.logs(limit: 2, since: 5_500, until: 5_502).map(\.requestID) == ["old-4499", "old-4500"])
        #expect(try store.spendSince(unixSeconds: 9_001).byKey == ["key_old": 10 * 1_000])

        // New rows: ids go on from the old ones, and their starts are newer than all of them.
        try AuditBlocksTests.write([sampleRecord(1, startNs: 20_000 * 1_000_000_000, body: false)], to: path)
        #expect(try store.logs(limit: 2).map(\.requestID) == ["req-0-1", "old-0"])
        #expect(try store.usage(by: .key, since: 9_996).map(\.requests).reduce(0, +) == 6)
    }
}
