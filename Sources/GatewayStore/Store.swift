/// The store's read side and its admin-side writes: keys and groups made through the admin API, spend rebuilt at
/// startup, and the usage and logs reports. It has its own SQLite connection (WAL: it reads while the audit writer
/// writes) behind a mutex; every call is synchronous and meant for the admin thread or startup, never a reactor.
public final class Store: Sendable {
    public let path: String
    private let connection: Locked<SQLiteConnection>

    /// Opens (or creates) the database and its tables.
    /// - Parameters:
    ///   - path: the SQLite file, the same as the `AuditLog`'s.
    ///   - busyTimeoutMs: how long a write waits for the audit writer's transaction.
    ///   - createIfMissing: false throws when the file does not exist, so that `gateway report` with a wrong path
    ///     says so instead of reporting an empty new database.
    public init(path: String, busyTimeoutMs: Int = 5000, createIfMissing: Bool = true) throws {
        self.path = path
        let db = try SQLiteConnection(path: path, busyTimeoutMs: Int32(clamping: busyTimeoutMs), create: createIfMissing)
        try Schema.prepare(db)
        connection = Locked(db)
    }

    func withConnection<T: Sendable>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try connection.withLock { db in try body(db) }
    }

    /// `PRAGMA journal_mode` of this connection: `wal` once the store is open.
    public func journalMode() throws -> String {
        try withConnection { try $0.scalarText("PRAGMA journal_mode") ?? "" }
    }

    // MARK: Keys

    /// Inserts a key created by the admin API.
    /// - Throws: `SQLiteError` with `isConstraint` when the id or the key hash exists already;
    ///   `StoreError.invalidJSON` when the limits or budget are not JSON.
    public func insertKey(_ key: StoredKey) throws {
        if let limits = key.limitsJSON, JSONValue.parse(limits) == nil { throw StoreError.invalidJSON(field: "limits") }
        if let budget = key.budgetJSON, JSONValue.parse(budget) == nil { throw StoreError.invalidJSON(field: "budget") }
        try withConnection { db in
            let statement = try db.prepare("""
                INSERT INTO api_keys (id, name, key_sha256, groups, limits, budget, expires, created, revoked)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                """)
            statement.bind(1, key.id)
            statement.bind(2, key.name)
            statement.bind(3, key.keySHA256.lowercased())
            statement.bind(4, StoredKey.groupsJSON(key.groups))
            statement.bind(5, key.limitsJSON)
            statement.bind(6, key.budgetJSON)
            statement.bind(7, key.expires)
            statement.bind(8, key.createdUnix)
            statement.bind(9, key.revokedUnix)
            try statement.run()
        }
    }

    /// Every stored key, oldest first.
    /// - Parameter includeRevoked: false leaves revoked keys out.
    public func listKeys(includeRevoked: Bool = true) throws -> [StoredKey] {
        try withConnection { db in
            let statement = try db.prepare("""
                SELECT id, name, key_sha256, groups, limits, budget, expires, created, revoked FROM api_keys
                \(includeRevoked ? "" : "WHERE revoked IS NULL") ORDER BY created, id
                """)
            var keys: [StoredKey] = []
            while try statement.step() {
                keys.append(StoredKey(
                    id: statement.text(0),
                    name: statement.text(1),
                    keySHA256: statement.text(2),
                    groups: StoredKey.parseGroups(statement.text(3)),
                    limitsJSON: statement.optionalText(4),
                    budgetJSON: statement.optionalText(5),
                    expires: statement.optionalText(6),
                    createdUnix: statement.int64(7),
                    revokedUnix: statement.optionalInt64(8)
                ))
            }
            return keys
        }
    }

    /// Marks a key revoked (kept for the audit trail, never deleted).
    /// - Returns: false when no unrevoked key has this id.
    @discardableResult
    public func revokeKey(id: String, atUnix: Int64 = UTCTime.nowNs() / UTCTime.nanosecondsPerSecond) throws -> Bool {
        try withConnection { db in
            let statement = try db.prepare("UPDATE api_keys SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL")
            statement.bind(1, id)
            statement.bind(2, atUnix)
            try statement.run()
            return db.changes > 0
        }
    }

    // MARK: Groups

    /// Creates or replaces a group's settings, as JSON text written by the admin API.
    /// - Throws: `StoreError.invalidJSON` when `json` does not parse.
    public func upsertGroup(name: String, json: String) throws {
        guard JSONValue.parse(json) != nil else { throw StoreError.invalidJSON(field: "group \(name)") }
        try withConnection { db in
            let statement = try db.prepare("""
                INSERT INTO api_groups (name, json, updated) VALUES (?1, ?2, ?3)
                ON CONFLICT (name) DO UPDATE SET json = excluded.json, updated = excluded.updated
                """)
            statement.bind(1, name)
            statement.bind(2, json)
            statement.bind(3, UTCTime.nowNs() / UTCTime.nanosecondsPerSecond)
            try statement.run()
        }
    }

    /// - Returns: false when no such group was stored.
    @discardableResult
    public func deleteGroup(name: String) throws -> Bool {
        try withConnection { db in
            let statement = try db.prepare("DELETE FROM api_groups WHERE name = ?1")
            statement.bind(1, name)
            try statement.run()
            return db.changes > 0
        }
    }

    /// Every stored group, by name.
    public func listGroups() throws -> [StoredGroup] {
        try withConnection { db in
            let statement = try db.prepare("SELECT name, json, updated FROM api_groups ORDER BY name")
            var groups: [StoredGroup] = []
            while try statement.step() {
                groups.append(StoredGroup(name: statement.text(0), json: statement.text(1), updatedUnix: statement.int64(2)))
            }
            return groups
        }
    }
}

public enum StoreError: Error, CustomStringConvertible, Sendable {
    case invalidJSON(field: String)

    public var description: String {
        switch self {
        case let .invalidJSON(field): return "\(field): not valid JSON"
        }
    }
}

/// A key made through the admin API. Only the SHA-256 of the secret is stored.
public struct StoredKey: Sendable, Equatable {
    public var id: String
    public var name: String
    /// Lowercase hex.
    public var keySHA256: String
    public var groups: [String]
    /// The key's limits and budget as JSON text, in the admin API's shape (`{"rpm":10}`, `{"usd":5,"period":"daily"}`).
    public var limitsJSON: String?
    public var budgetJSON: String?
    /// The expiry as given (`2027-01-01` or RFC 3339); nil never expires.
    public var expires: String?
    public var createdUnix: Int64
    public var revokedUnix: Int64?

    public init(
        id: String = StoredKey.newID(),
        name: String,
        keySHA256: String,
        groups: [String],
        limitsJSON: String? = nil,
        budgetJSON: String? = nil,
        expires: String? = nil,
        createdUnix: Int64 = UTCTime.nowNs() / UTCTime.nanosecondsPerSecond,
        revokedUnix: Int64? = nil
    ) {
        self.id = id
        self.name = name
        self.keySHA256 = keySHA256
        self.groups = groups
        self.limitsJSON = limitsJSON
        self.budgetJSON = budgetJSON
        self.expires = expires
        self.createdUnix = createdUnix
        self.revokedUnix = revokedUnix
    }

    public var isRevoked: Bool { revokedUnix != nil }

    /// `key_` and 16 random lowercase hex digits.
    public static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return "key_" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func groupsJSON(_ groups: [String]) -> String {
        var json = JSONWriter()
        json.beginArray()
        for group in groups { json.string(group) }
        json.endArray()
        return json.text
    }

    static func parseGroups(_ text: String) -> [String] {
        JSONValue.parse(text)?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    /// The key as the admin API lists it: never the hash.
    public func writeJSON(to json: inout JSONWriter) {
        json.beginObject()
        json.field("id", id)
        json.field("name", name)
        json.key("groups")
        json.raw(StoredKey.groupsJSON(groups))
        json.key("limits")
        if let limitsJSON { json.raw(limitsJSON) } else { json.null() }
        json.key("budget")
        if let budgetJSON { json.raw(budgetJSON) } else { json.null() }
        json.field("expires", expires)
        json.field("created", createdUnix)
        json.field("revoked", revokedUnix != nil)
        if let revokedUnix { json.field("revoked_at", revokedUnix) }
        json.endObject()
    }
}

/// `{"data":[key, …]}`, without hashes, for `GET /admin/keys`.
public func renderKeysJSON(_ keys: [StoredKey]) -> String {
    var json = JSONWriter()
    json.beginObject()
    json.key("data")
    json.beginArray()
    for key in keys { key.writeJSON(to: &json) }
    json.endArray()
    json.endObject()
    return json.text
}

/// A group made or changed through the admin API.
public struct StoredGroup: Sendable, Equatable {
    public var name: String
    /// The group's settings as the admin API wrote them.
    public var json: String
    public var updatedUnix: Int64

    public init(name: String, json: String, updatedUnix: Int64) {
        self.name = name
        self.json = json
        self.updatedUnix = updatedUnix
    }
}
