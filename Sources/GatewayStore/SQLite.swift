#if canImport(Glibc)
import Glibc
#endif
import CSQLite

/// A failed SQLite call: the result code, SQLite's message and the call that failed.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public let context: String

    /// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock; worth retrying later.
    public var isBusy: Bool {
        let primary = code & 0xff
        return primary == SQLITE_BUSY || primary == SQLITE_LOCKED
    }

    /// SQLITE_CONSTRAINT: a UNIQUE or PRIMARY KEY clash.
    public var isConstraint: Bool { code & 0xff == SQLITE_CONSTRAINT }

    public var description: String { "sqlite: \(context): \(message) (code \(code))" }
}

/// SQLITE_TRANSIENT is a macro Swift cannot import: it tells SQLite to copy a bound value at once.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// SQLite's process-wide settings, applied once before the first connection opens. Memory statistics are off:
/// they take a global mutex on every allocation (about 900 instructions per audit row, measured with callgrind),
/// and nothing here reads them or sets a heap limit.
private let sqliteConfigured: Bool = CSQLite_sqlite3_config_memstatus(0) == SQLITE_OK

/// One SQLite connection. It is used by one thread at a time (the writer thread owns one, `Store` guards its own
/// with a mutex), so it is opened with SQLITE_OPEN_NOMUTEX. This file is the only one that calls the C API.
final class SQLiteConnection {
    let handle: OpaquePointer
    private var closed = false

    /// Opens or creates the database file.
    /// - Parameters:
    ///   - path: the database file; created if missing.
    ///   - busyTimeoutMs: how long a call waits for another connection's lock before failing with SQLITE_BUSY.
    ///   - create: false fails when the file does not exist (for `gateway report`).
    init(path: String, busyTimeoutMs: Int32, create: Bool = true) throws {
        _ = sqliteConfigured
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: message, context: "open \(path)")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMs)
    }

    deinit { close() }

    func close() {
        if closed { return }
        closed = true
        sqlite3_close_v2(handle)
    }

    func setBusyTimeout(_ ms: Int32) { sqlite3_busy_timeout(handle, ms) }

    /// Runs one or more statements that return no rows of interest.
    func exec(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(errorMessage)
            throw SQLiteError(code: rc, message: message, context: String(sql.prefix(60)))
        }
    }

    func prepare(_ sql: String) throws -> SQLiteStatement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw error(rc, "prepare \(sql.prefix(60))")
        }
        return SQLiteStatement(statement, connection: self)
    }

    /// The first column of the first row of a query, as text (for PRAGMA reads).
    func scalarText(_ sql: String) throws -> String? {
        let statement = try prepare(sql)
        return try statement.step() ? statement.optionalText(0) : nil
    }

    func scalarInt(_ sql: String) throws -> Int64? {
        let statement = try prepare(sql)
        return try statement.step() ? statement.optionalInt64(0) : nil
    }

    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    var changes: Int { Int(sqlite3_changes(handle)) }
    var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), context: context)
    }

    /// Runs `body` inside BEGIN IMMEDIATE … COMMIT, rolling back when it throws.
    /// IMMEDIATE takes the write lock up front, so a busy database fails here and not halfway through a batch.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try exec("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try exec("COMMIT")
            return result
        } catch {
            if isInTransaction { try? exec("ROLLBACK") }
            throw error
        }
    }
}

/// A prepared statement. Parameters are 1-based, as in SQLite; columns are 0-based.
final class SQLiteStatement {
    let handle: OpaquePointer
    private unowned let connection: SQLiteConnection

    init(_ handle: OpaquePointer, connection: SQLiteConnection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    /// Clears the previous run: resets the statement and unbinds every parameter.
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(handle, index, value) }
    func bind(_ index: Int32, _ value: Int) { sqlite3_bind_int64(handle, index, Int64(value)) }
    func bind(_ index: Int32, _ value: Bool) { sqlite3_bind_int64(handle, index, value ? 1 : 0) }
    func bindNull(_ index: Int32) { sqlite3_bind_null(handle, index) }

    func bind(_ index: Int32, _ value: Int64?) {
        if let value { bind(index, value) } else { bindNull(index) }
    }

    func bind(_ index: Int32, _ value: String?) {
        guard var value else { return bindNull(index) }
        _ = value.withUTF8 { bytes in
            if bytes.isEmpty {
                // An empty buffer may have no base address, which SQLite would read as NULL.
                sqlite3_bind_text(handle, index, "", 0, nil)
            } else {
                sqlite3_bind_text(handle, index, bytes.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }, Int32(bytes.count), sqliteTransient)
            }
        }
    }

    /// Binds text without copying it (SQLITE_STATIC): the bytes must stay valid and unchanged until the statement
    /// has run. The audit writer binds every row this way from memory it owns, which saves SQLite a malloc, a copy
    /// and a free per text column.
    func bindStatic(_ index: Int32, _ bytes: UnsafeRawBufferPointer) {
        // A NULL pointer would bind NULL: an empty text still needs an address.
        let base = bytes.baseAddress ?? UnsafeRawPointer(SQLiteStatement.emptyText.utf8Start)
        sqlite3_bind_text(handle, index, base.assumingMemoryBound(to: CChar.self), Int32(bytes.count), nil)
    }

    private static let emptyText: StaticString = ""

    /// Steps once. Returns true when a row is ready, false when the statement is done.
    @discardableResult
    func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw connection.error(rc, "step \(String(cString: sqlite3_sql(handle)).prefix(60))")
    }

    /// Steps to completion, for statements that return no rows, then resets.
    func run() throws {
        defer { reset() }
        while try step() {}
    }

    /// `run()` without unbinding, for a statement whose every parameter is bound again before each run: clearing
    /// them would be wasted work (the audit insert binds 25 per row).
    func runKeepingBindings() throws {
        defer { sqlite3_reset(handle) }
        while try step() {}
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }
    func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    func text(_ column: Int32) -> String { optionalText(column) ?? "" }

    func optionalText(_ column: Int32) -> String? {
        guard let pointer = sqlite3_column_text(handle, column) else { return nil }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }
}
