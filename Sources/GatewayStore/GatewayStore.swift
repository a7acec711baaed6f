// The JSON writer and reader moved to their own target; users of the store keep seeing them through this import.
@_exported import GatewayJSON

/// # GatewayStore
///
/// The gateway's persistence, off the hot path. SQLite (WAL mode) through Debian's libsqlite3; no Foundation.
///
/// - `AuditLog` (AuditLog.swift, AuditWriter.swift, SpillFile.swift): reactor threads `enqueue` one `AuditRecord`
///   per client request; one writer thread batches them into SQLite. Backpressure spills to a JSON-lines file that is
///   re-imported later, drops are counted, nothing blocks a request. Retention prunes in the background.
///   `flush()` on SIGTERM, `close()` on exit.
/// - `Store` (Store.swift, Reports.swift): its own connection, for the admin thread and startup:
///   - keys and groups created through the admin API (`insertKey`, `listKeys`, `revokeKey`, `upsertGroup`,
///     `deleteGroup`, `listGroups`);
///   - `spendSince` to rebuild budget counters at startup;
///   - `usage(by:since:until:)` and `logs(...)` for `gateway report`, `GET /admin/usage` and `GET /admin/logs`,
///     with `renderUsage` (table, CSV, JSON) and `renderLogsJSON`.
/// - Schema.swift: the tables; SQLite.swift: the only file that calls the SQLite C API.
/// - UTCTime.swift: UTC calendar math, in place of Foundation. The JSON writer and reader live in GatewayJSON,
///   re-exported here so that the store's users see them as before.
///
/// Wiring, in short:
/// ```swift
/// let audit = try AuditLog(path: config.store.sqlite, retentionDays: days, groupRetentionDays: overrides)
/// let store = try Store(path: config.store.sqlite)
/// let spent = try store.spendSince(unixSeconds: UTCTime.startOfMonth(now))   // seed budgets
/// // reactor thread, per request:
/// audit.enqueue(record)
/// // metrics scrape:
/// audit.enqueuedRecords, audit.writtenRecords, audit.spilledRecords, audit.droppedRecords, audit.queueDepth
/// // SIGTERM:
/// audit.close()
/// ```
public enum GatewayStoreModule {
    /// The schema version this build writes (`PRAGMA user_version`).
    public static var schemaVersion: Int64 { Schema.version }
}
