import GatewayConfig

/// What the admin API needs from the rest of the gateway. The composition root implements it over the
/// policy (keys, groups, limits, budgets) and the store (persistence, usage, logs), so this module
/// depends on neither.
///
/// Threads: `isReady` is called on the admin listener's thread and must be cheap. Everything else is
/// called on the admin worker thread, one call at a time (so a check-then-act sequence of calls made by
/// one admin request is not interleaved with another admin request), and may block.
///
/// Errors: throw `AdminError` to choose the status, code and message the caller sees (a group that does
/// not exist → `AdminError.invalid(…, param: "groups")`, a key defined in the config file that cannot be
/// revoked → `AdminError.conflict(…)`). Any other error becomes a 500 with its description.
public protocol AdminBackend: AnyObject, Sendable {
    /// True when the listeners are bound and a configuration is loaded (`GET /ready`).
    var isReady: Bool { get }

    /// The Prometheus text exposition (`GET /metrics`), e.g. `MetricsRegistry.render()`.
    func metricsText() -> String

    /// Creates a key and persists it. The secret is returned here once and never again.
    func createKey(_ request: AdminKeyRequest) throws -> AdminCreatedKey
    /// Every key, without secrets or hashes (the type has no field for either).
    func listKeys() throws -> [AdminKeyInfo]
    /// Revokes a key at once. - Returns: false when no key has this id.
    func revokeKey(id: String) throws -> Bool

    func listGroups() throws -> [AdminGroup]
    func getGroup(name: String) throws -> AdminGroup?
    /// Creates or replaces a group, and persists it.
    func putGroup(_ group: AdminGroup) throws
    /// - Returns: false when no group has this name.
    func deleteGroup(name: String) throws -> Bool

    /// Chargeback (`GET /admin/usage`): a JSON document, such as `gateway report --format json` prints.
    func usageJSON(_ query: AdminUsageQuery) throws -> String
    /// Audit records (`GET /admin/logs`), newest first: a JSON document.
    func logsJSON(_ query: AdminLogQuery) throws -> String

    /// Reloads the configuration as SIGHUP does. Throw `AdminError.invalidConfig` when it does not
    /// validate (the running one stays). - Returns: a JSON document describing what was loaded.
    func reload() throws -> String
}

/// An error the backend reports to the admin caller.
public struct AdminError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    /// The request field at fault, when there is one ("groups", "limits.rpm").
    public var param: String?

    public init(status: Int, code: String, message: String, param: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.param = param
    }

    public var description: String { "\(status) \(code): \(message)" }

    /// 400 `invalid_request`: a field's value is wrong.
    public static func invalid(_ message: String, param: String? = nil) -> AdminError {
        AdminError(status: 400, code: "invalid_request", message: message, param: param)
    }

    /// 404 `not_found`.
    public static func notFound(_ message: String) -> AdminError {
        AdminError(status: 404, code: "not_found", message: message)
    }

    /// 409 `conflict`: the thing exists already, or cannot change in that way.
    public static func conflict(_ message: String) -> AdminError {
        AdminError(status: 409, code: "conflict", message: message)
    }

    /// 400 `invalid_config`: a reload refused; `message` lists the problems.
    public static func invalidConfig(_ message: String) -> AdminError {
        AdminError(status: 400, code: "invalid_config", message: message)
    }

    /// 503 `unavailable`: the store or another dependency cannot serve now.
    public static func unavailable(_ message: String) -> AdminError {
        AdminError(status: 503, code: "unavailable", message: message)
    }

    /// The OpenAI-style error `type` for a status.
    var type: String {
        switch status {
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 409: "conflict_error"
        case 500...: "api_error"
        default: "invalid_request_error"
        }
    }
}

/// `POST /admin/keys`, validated.
public struct AdminKeyRequest: Sendable, Equatable {
    public var name: String
    /// At least one, no duplicates. Whether each exists is for the backend to check.
    public var groups: [String]
    public var limits: Limits?
    public var budget: Budget?
    /// In the future when given.
    public var expires: AdminInstant?

    public init(name: String, groups: [String], limits: Limits? = nil, budget: Budget? = nil, expires: AdminInstant? = nil) {
        self.name = name
        self.groups = groups
        self.limits = limits
        self.budget = budget
        self.expires = expires
    }
}

/// A key as the admin API shows it. It has no field for a secret or a hash, so none can leak.
public struct AdminKeyInfo: Sendable, Equatable {
    public var id: String
    public var name: String
    public var groups: [String]
    public var limits: Limits?
    public var budget: Budget?
    /// As configured or requested ("2027-01-01" or an RFC 3339 time).
    public var expires: String?
    public var createdAt: Int64?
    public var revoked: Bool
    /// "config" for keys from the config file, "api" for keys made through the admin API.
    public var source: String
    /// A few characters to tell keys apart ("sk-…7f3a"), never enough to use.
    public var hint: String?

    public init(
        id: String, name: String, groups: [String], limits: Limits? = nil, budget: Budget? = nil, expires: String? = nil,
        createdAt: Int64? = nil, revoked: Bool = false, source: String = "api", hint: String? = nil
    ) {
        self.id = id
        self.name = name
        self.groups = groups
        self.limits = limits
        self.budget = budget
        self.expires = expires
        self.createdAt = createdAt
        self.revoked = revoked
        self.source = source
        self.hint = hint
    }
}

/// A created key: its description and, this once, its secret.
public struct AdminCreatedKey: Sendable, Equatable {
    public var key: String
    public var info: AdminKeyInfo

    public init(key: String, info: AdminKeyInfo) {
        self.key = key
        self.info = info
    }
}

/// A group, as read from and written to the admin API.
public struct AdminGroup: Sendable, Equatable {
    public var name: String
    /// Model name patterns; `*` matches any run of characters.
    public var models: [String]
    public var limits: Limits?
    public var budget: Budget?
    /// Store request and response bodies with the audit records; nil means the default (off).
    public var logBodies: Bool?
    /// Overrides `store.retention_days` for this group's records.
    public var retentionDays: Int?
    /// Output only: "config" or "api". Ignored on input.
    public var source: String?

    public init(
        name: String, models: [String], limits: Limits? = nil, budget: Budget? = nil, logBodies: Bool? = nil,
        retentionDays: Int? = nil, source: String? = nil
    ) {
        self.name = name
        self.models = models
        self.limits = limits
        self.budget = budget
        self.logBodies = logBodies
        self.retentionDays = retentionDays
        self.source = source
    }
}

public enum AdminUsageGrouping: String, Sendable, CaseIterable {
    case group, key, model, tag
}

/// `GET /admin/usage?by=&since=&until=`. The range is [since, until); either end may be open.
public struct AdminUsageQuery: Sendable, Equatable {
    public var by: AdminUsageGrouping
    public var since: AdminInstant?
    public var until: AdminInstant?

    public init(by: AdminUsageGrouping, since: AdminInstant? = nil, until: AdminInstant? = nil) {
        self.by = by
        self.since = since
        self.until = until
    }
}

/// `GET /admin/logs?limit=&key=&model=&status=&since=&until=`: filters that all apply.
public struct AdminLogQuery: Sendable, Equatable {
    public static let defaultLimit = 100
    public static let maxLimit = 1000

    /// 1 ... `maxLimit`.
    public var limit: Int
    /// A key's id or name.
    public var key: String?
    public var model: String?
    /// An HTTP status, 100 ... 599.
    public var status: Int?
    public var since: AdminInstant?
    public var until: AdminInstant?

    public init(
        limit: Int = AdminLogQuery.defaultLimit, key: String? = nil, model: String? = nil, status: Int? = nil,
        since: AdminInstant? = nil, until: AdminInstant? = nil
    ) {
        self.limit = limit
        self.key = key
        self.model = model
        self.status = status
        self.since = since
        self.until = until
    }
}
