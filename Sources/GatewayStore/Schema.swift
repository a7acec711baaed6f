import GatewayIO

/// The store's tables. Every connection runs `Schema.prepare` on open; each statement is idempotent.
///
/// - `audit`: one row per client request, and no index: an index is a B-tree insert per request on the writer
///   thread (about 3,900 of the 14,600 instructions SQLite spends per row, scripts/bench-sqlite-insert-cost.sh).
///   Time ranges go through `audit_blocks` instead, a block range index (as PostgreSQL's BRIN): for each block of
///   4,096 consecutive ids, the earliest and latest `start_ns` in it. Ids follow the order in which records were
///   written, which is close to start order, so a time range maps to a short id range (`idRange`), read by rowid.
///   The writer keeps the blocks up to date in the transaction that inserts the rows; a block's bounds may be wider
///   than its rows after retention, never narrower. The key and model indexes of schema 1 and the `start_ns` index
///   of schema 2 are dropped.
///   `groups` and `tags` keep the record's text for `logs()`;
///   `audit_groups` and `audit_tags` hold one row per group and per `k=v` pair so that spend and usage per group or
///   per tag are plain SQL aggregates (a record in two groups counts toward both). A record in a single group (the
///   common case) has no `audit_groups` rows: its `groups` column is that group's name, and the queries read it
///   there (`Schema.recordGroups`), which saves the writer a second INSERT per request. Records written before
///   that have rows for their single group too; the queries ignore those. Bodies are the last columns, so scans
///   over the other columns rarely touch their overflow pages.
/// - `api_keys` and `api_groups`: what the admin API created; the config file's keys and groups are not stored.
/// - `spill_state`: which spill file generation has been re-imported how far, committed in the same transaction as
///   the imported rows, so that a crash neither loses nor duplicates spilled records.
enum Schema {
    /// 2: `audit.attempt_log` (the failed attempts before the final one, when a request failed over).
    /// 3: `audit_blocks` replaces the `start_ns` index.
    static let version: Int64 = 3
    /// Ids per `audit_blocks` row, as a shift: block = id >> blockShift.
    static let blockShift = 12

    static let statements = """
        CREATE TABLE IF NOT EXISTS audit (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            key_id TEXT,
            key_name TEXT,
            groups TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '',
            client_address TEXT NOT NULL DEFAULT '',
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            total_latency_us INTEGER NOT NULL,
            upstream_latency_us INTEGER NOT NULL,
            overhead_us INTEGER NOT NULL,
            ttfb_us INTEGER NOT NULL,
            requested_model TEXT NOT NULL DEFAULT '',
            deployment TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL,
            status INTEGER NOT NULL,
            error_code TEXT,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost_micro_usd INTEGER NOT NULL,
            streamed INTEGER NOT NULL,
            bytes_in INTEGER NOT NULL,
            bytes_out INTEGER NOT NULL,
            attempt_log TEXT,
            request_body TEXT,
            response_body TEXT
        );
        CREATE TABLE IF NOT EXISTS audit_blocks (
            block INTEGER PRIMARY KEY,
            min_start_ns INTEGER NOT NULL,
            max_start_ns INTEGER NOT NULL
        );
        DROP INDEX IF EXISTS audit_key;
        DROP INDEX IF EXISTS audit_model;
        CREATE TABLE IF NOT EXISTS audit_groups (
            audit_id INTEGER NOT NULL,
            grp TEXT NOT NULL,
            PRIMARY KEY (audit_id, grp)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS audit_tags (
            audit_id INTEGER NOT NULL,
            tag TEXT NOT NULL,
            PRIMARY KEY (audit_id, tag)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            key_sha256 TEXT NOT NULL UNIQUE,
            groups TEXT NOT NULL DEFAULT '[]',
            limits TEXT,
            budget TEXT,
            expires TEXT,
            created INTEGER NOT NULL,
            revoked INTEGER
        );
        CREATE TABLE IF NOT EXISTS api_groups (
            name TEXT PRIMARY KEY,
            json TEXT NOT NULL,
            updated INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS spill_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            generation INTEGER NOT NULL,
            offset INTEGER NOT NULL
        );
        """

    /// A FROM clause with one row per (record `a`, group `g`) in column `grp`: from `audit_groups` for records in
    /// several groups (their `groups` column holds a comma), else the `groups` column itself ('' for none).
    /// Group names never contain a comma.
    static let recordGroups = """
        audit a LEFT JOIN audit_groups g ON g.audit_id = a.id AND instr(a.groups, ',') > 0
        """
    /// The group of a row of `recordGroups`.
    static let recordGroup = "COALESCE(g.grp, a.groups)"

    /// Switches the file to WAL (a persistent property of the file) and creates what is missing.
    /// - synchronous=NORMAL: in WAL mode a commit is durable against a process crash, and against a power loss all but
    ///   the last transactions survive; it saves an fsync per batch.
    static func prepare(_ db: SQLiteConnection) throws {
        _ = try db.scalarText("PRAGMA journal_mode=WAL")
        try db.exec("PRAGMA synchronous=NORMAL")
        let current = try db.scalarInt("PRAGMA user_version") ?? 0
        if current > version {
            throw SQLiteError(code: 0, message: "the database has schema version \(current), newer than this gateway's \(version)", context: "schema")
        }
        try db.exec(statements)
        if try current < 2 && !hasColumn(db, table: "audit", column: "attempt_log") {
            // A file of schema 1: the column goes at the end (the INSERT names its columns).
            try db.exec("ALTER TABLE audit ADD COLUMN attempt_log TEXT")
        }
        if current < version {
            // The blocks of the rows already there, once, in one transaction that also sets the version: another
            // connection opening the file at the same time waits for it, then finds the version current.
            try db.transaction {
                guard try (db.scalarInt("PRAGMA user_version") ?? 0) < version else { return }
                // About half a second per million rows, once. MAX(id) is a bound on the rows read at no cost.
                let lastID = try db.scalarInt("SELECT MAX(id) FROM audit") ?? 0
                if lastID > 0 { Log.info("audit store: upgrading to schema \(version): block ranges for up to \(lastID) audit rows") }
                try db.exec("""
                    DROP INDEX IF EXISTS audit_start;
                    INSERT OR REPLACE INTO audit_blocks (block, min_start_ns, max_start_ns)
                        SELECT id >> \(blockShift), MIN(start_ns), MAX(start_ns) FROM audit GROUP BY 1;
                    PRAGMA user_version = \(version);
                    """)
            }
        }
    }

    /// SQL for the bounds of an id range that holds every `audit` row whose `start_ns` is in [`since`, `until`), given
    /// as SQL expressions (parameters): a superset, so the query keeps its own `start_ns` conditions.
    /// An empty range (no block overlaps) comes out as 0...-1.
    static func idRange(since: String, until: String) -> (low: String, high: String) {
        (
            "(SELECT COALESCE(MIN(block), 0) FROM audit_blocks WHERE max_start_ns >= \(since) AND min_start_ns < \(until)) << \(blockShift)",
            "(((SELECT COALESCE(MAX(block), -1) FROM audit_blocks WHERE max_start_ns >= \(since) AND min_start_ns < \(until)) + 1) << \(blockShift)) - 1"
        )
    }

    private static func hasColumn(_ db: SQLiteConnection, table: String, column: String) throws -> Bool {
        let info = try db.prepare("PRAGMA table_info(\(table))")
        while try info.step() {
            if info.text(1) == column { return true }
        }
        return false
    }
}
