#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GatewayAdmin
import GatewayConfig
import GatewayIO
import GatewayMetrics
import GatewayPolicy
import GatewayStore
import Synchronization

/// The control plane: the store, the audit log, the policy's shared counters and the metrics, and the one
/// place that builds a new `RuntimeConfig` (config file + keys and groups made through the admin API) and
/// hands it to every reactor thread. It is the admin API's backend. Nothing here runs on the request path.
public final class GatewayControl: AdminBackend, @unchecked Sendable {
    let configPath: String?
    let environment: [String: String]
    let counters = PolicyCounters()
    let metrics: MetricsRegistry
    /// Keys, groups and reports; nil for a bare proxy.
    let store: Store?
    let audit: AuditLog?
    private let state: Mutex<State>
    private let ready = Atomic<Bool>(false)

    private struct State {
        var configuration: GatewayConfiguration
        var runtime: RuntimeConfig
    }

    /// Every thread's context: appended while the server starts, before any thread runs, then only read.
    nonisolated(unsafe) private var contexts: [LoopContext] = []

    public var runtime: RuntimeConfig { state.withLock { $0.runtime } }

    /// Opens the store (when the configuration needs one), rebuilds spend from it, and compiles the
    /// configuration.
    public init(configuration: GatewayConfiguration, configPath: String?, environment: [String: String]) throws {
        self.configPath = configPath
        self.environment = environment
        let authRequired = !configuration.keys.isEmpty || !configuration.groups.isEmpty || configuration.admin != nil
        if let path = configuration.store.sqlite, authRequired || configuration.store.configured {
            store = try Store(path: path)
            audit = try AuditLog(
                path: path, retentionDays: configuration.store.retentionDays,
                groupRetentionDays: GatewayControl.groupRetention(configuration.groups))
        } else {
            store = nil
            audit = nil
        }
        metrics = MetricsRegistry(labels: MetricsLabels())
        let runtime = try GatewayControl.compile(
            configuration, store: store, counters: counters, environment: environment, metrics: metrics)
        state = Mutex(State(configuration: configuration, runtime: runtime))
        if let audit {
            metrics.setAuditSource {
                AuditMetrics(
                    queueDepth: audit.queueDepth, spilled: UInt64(audit.spilledRecords), dropped: UInt64(audit.droppedRecords),
                    writerRaises: UInt64(audit.writerRaises))
            }
        }
        try seedSpend(runtime.policy)
    }

    /// Builds the runtime configuration: the policy (config keys and groups, then the admin API's), the
    /// metric label ids, the routes.
    private static func compile(
        _ configuration: GatewayConfiguration, store: Store?, counters: PolicyCounters, environment: [String: String],
        metrics: MetricsRegistry, previous: RuntimeConfig? = nil
    ) throws -> RuntimeConfig {
        let apiKeys = try store?.listKeys(includeRevoked: false).compactMap(keyRecord) ?? []
        let apiGroups = try store?.listGroups().compactMap { groupSettings($0.json) } ?? []
        let policy = PolicySnapshot(
            config: configuration, apiKeys: apiKeys, apiGroups: apiGroups, environment: environment, counters: counters)
        let names = RuntimeConfig.metricNames(configuration, policy: policy)
        let labels = metrics.labels.merging(models: names.models, groups: names.groups, deployments: names.deployments)
        metrics.updateLabels(labels)
        return try RuntimeConfig(configuration, policy: policy, labels: labels, previous: previous)
    }

    /// Budgets count from the start of their period: what the store recorded since then comes back.
    private func seedSpend(_ policy: PolicySnapshot) throws {
        guard let store else { return }
        let now = Int64(Clock.realtimeNs() / 1_000_000_000)
        for period in [BudgetPeriod.daily, .monthly, .total] {
            let start = BudgetWindow.periodStart(period, nowSeconds: now)
            let spend = try store.spendSince(unixSeconds: start)
            for key in policy.keys where key.budgetPeriod == period {
                if let microUSD = spend.byKey[key.id] { counters.seedSpend(keyID: key.id, microUSD: microUSD, periodStart: start) }
            }
            for group in policy.groups where group.budget?.period == period {
                if let microUSD = spend.byGroup[group.name] {
                    counters.seedSpend(group: group.name, microUSD: microUSD, periodStart: start)
                }
            }
        }
    }

    static func groupRetention(_ groups: [GroupSettings]) -> [String: Int] {
        Dictionary(groups.compactMap { group in group.retentionDays.map { (group.name, $0) } }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: Threads

    func makeContext(loop: EventLoop) -> LoopContext {
        // Metrics are read through the admin listener: without one, a bare proxy records none.
        let scraped = state.withLock { $0.configuration.admin != nil }
        let threadMetrics = scraped ? metrics.makeThreadMetrics(for: loop) : nil
        let context = LoopContext(loop: loop, config: runtime, audit: audit, metrics: threadMetrics)
        contexts.append(context)
        return context
    }

    func markReady() { ready.store(true, ordering: .releasing) }

    /// Hands a new configuration to every thread; requests in flight finish under the old one.
    private func distribute(_ runtime: RuntimeConfig) {
        state.withLock { $0.runtime = runtime }
        for context in contexts {
            nonisolated(unsafe) let context = context
            context.loop.execute { _ in context.apply(runtime) }
        }
    }

    /// Rebuilds the policy after the admin API changed keys or groups.
    private func recompile() throws {
        let configuration = state.withLock { $0.configuration }
        let runtime = try GatewayControl.compile(
            configuration, store: store, counters: counters, environment: environment, metrics: metrics,
            previous: self.runtime)
        distribute(runtime)
    }

    /// Re-reads the configuration file (SIGHUP, `POST /admin/reload`). A file that does not validate is
    /// refused and the running configuration stays.
    @discardableResult
    public func reloadFromFile() throws -> GatewayConfiguration {
        guard let configPath else { throw AdminError.invalidConfig("this gateway was started without a configuration file") }
        let configuration: GatewayConfiguration
        do {
            configuration = try GatewayConfiguration.load(path: configPath, environment: environment)
        } catch {
            throw AdminError.invalidConfig(error.description)
        }
        let runtime = try GatewayControl.compile(
            configuration, store: store, counters: counters, environment: environment, metrics: metrics,
            previous: self.runtime)
        state.withLock { $0.configuration = configuration }
        audit?.setRetention(defaultDays: configuration.store.retentionDays, groupDays: GatewayControl.groupRetention(configuration.groups))
        distribute(runtime)
        try seedSpend(runtime.policy)
        return configuration
    }

    /// Flushes the audit log (shutdown).
    func close() {
        audit?.close()
    }

    // MARK: AdminBackend

    public var isReady: Bool { ready.load(ordering: .acquiring) }

    public func metricsText() -> String { metrics.render() }

    private func requireStore() throws -> Store {
        guard let store else { throw AdminError.unavailable("no store is configured") }
        return store
    }

    public func createKey(_ request: AdminKeyRequest) throws -> AdminCreatedKey {
        let store = try requireStore()
        let groups = runtime.policy.groups.map(\.name)
        for group in request.groups where !groups.contains(group) {
            throw AdminError.invalid("no group named '\(group)'", param: "groups")
        }
        var random = SystemRandomNumberGenerator()
        let secret = "sk-gw-" + (0..<4).map { _ in
            let hex = String(random.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        let stored = StoredKey(
            name: request.name, keySHA256: KeyHash(of: secret).hex, groups: request.groups,
            limitsJSON: request.limits.map(GatewayControl.json), budgetJSON: request.budget.map(GatewayControl.json),
            expires: request.expires?.text)
        try store.insertKey(stored)
        try recompile()
        return AdminCreatedKey(key: secret, info: GatewayControl.info(stored))
    }

    public func listKeys() throws -> [AdminKeyInfo] {
        let configuration = state.withLock { $0.configuration }
        var keys = configuration.keys.map {
            AdminKeyInfo(id: "cfg-\($0.name)", name: $0.name, groups: $0.groups, limits: $0.limits, budget: $0.budget,
                         expires: $0.expires, source: "config")
        }
        keys += try store?.listKeys().map(GatewayControl.info) ?? []
        return keys
    }

    public func revokeKey(id: String) throws -> Bool {
        if id.hasPrefix("cfg-") { throw AdminError.conflict("keys from the configuration file are revoked by editing it") }
        let store = try requireStore()
        guard try store.revokeKey(id: id) else { return false }
        try recompile()
        return true
    }

    public func listGroups() throws -> [AdminGroup] {
        runtime.policy.groups.map(GatewayControl.adminGroup)
    }

    public func getGroup(name: String) throws -> AdminGroup? {
        runtime.policy.groups.first { $0.name == name }.map(GatewayControl.adminGroup)
    }

    public func putGroup(_ group: AdminGroup) throws {
        let store = try requireStore()
        let models = state.withLock { $0.configuration.models.map(\.name) }
        if group.models.isEmpty { throw AdminError.invalid("a group needs at least one model pattern", param: "models") }
        for pattern in group.models where !models.contains(where: { globMatch(pattern: pattern, name: $0) }) {
            Log.warning("admin: group \(group.name): the pattern \"\(pattern)\" matches no model")
        }
        let settings = GroupSettings(
            name: group.name, models: group.models, budget: group.budget, limits: group.limits,
            logBodies: group.logBodies ?? false, retentionDays: group.retentionDays)
        try store.upsertGroup(name: group.name, json: GatewayControl.json(settings))
        try recompile()
    }

    public func deleteGroup(name: String) throws -> Bool {
        let store = try requireStore()
        guard try store.deleteGroup(name: name) else {
            if state.withLock({ $0.configuration.groups.contains { $0.name == name } }) {
                throw AdminError.conflict("groups from the configuration file are deleted by editing it")
            }
            return false
        }
        try recompile()
        return true
    }

    public func usageJSON(_ query: AdminUsageQuery) throws -> String {
        let store = try requireStore()
        _ = audit?.flush()
        let dimension = UsageDimension(rawValue: query.by.rawValue) ?? .group
        let rows = try store.usage(by: dimension, since: query.since?.unixSeconds, until: query.until?.unixSeconds)
        return renderUsage(rows, format: .json, by: dimension, since: query.since?.unixSeconds, until: query.until?.unixSeconds)
    }

    public func logsJSON(_ query: AdminLogQuery) throws -> String {
        let store = try requireStore()
        _ = audit?.flush()
        let records = try store.logs(
            limit: query.limit, key: query.key, model: query.model, status: query.status.map { .exact($0) },
            since: query.since?.unixSeconds, until: query.until?.unixSeconds)
        return renderLogsJSON(records)
    }

    public func reload() throws -> String {
        let configuration = try reloadFromFile()
        return "{\"reloaded\":true,\"providers\":\(configuration.providers.count),\"models\":\(configuration.models.count)," +
            "\"groups\":\(configuration.groups.count),\"keys\":\(configuration.keys.count)}"
    }

    // MARK: Conversions between the admin API, the store and the policy

    static func json(_ limits: Limits) -> String {
        var fields: [String] = []
        if let rpm = limits.rpm { fields.append("\"rpm\":\(rpm)") }
        if let tpm = limits.tpm { fields.append("\"tpm\":\(tpm)") }
        if let concurrency = limits.concurrency { fields.append("\"concurrency\":\(concurrency)") }
        return "{" + fields.joined(separator: ",") + "}"
    }

    static func json(_ budget: Budget) -> String {
        "{\"usd\":\(budget.usd),\"period\":\"\(budget.period.rawValue)\"}"
    }

    static func json(_ group: GroupSettings) -> String {
        let object: [String: Any] = [
            "name": group.name, "models": group.models, "log_bodies": group.logBodies,
            "limits": group.limits.map { decode(json($0)) } ?? NSNull(),
            "budget": group.budget.map { decode(json($0)) } ?? NSNull(),
            "retention_days": group.retentionDays ?? NSNull(),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func decode(_ text: String) -> Any {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) ?? NSNull()
    }

    static func limits(_ object: Any?) -> Limits? {
        guard let object = object as? [String: Any] else { return nil }
        return Limits(rpm: object["rpm"] as? Int, tpm: object["tpm"] as? Int, concurrency: object["concurrency"] as? Int)
    }

    static func budget(_ object: Any?) -> Budget? {
        guard let object = object as? [String: Any], let usd = (object["usd"] as? NSNumber)?.doubleValue,
              let period = (object["period"] as? String).flatMap(BudgetPeriod.init(rawValue:)) else { return nil }
        return Budget(usd: usd, period: period)
    }

    static func groupSettings(_ text: String) -> GroupSettings? {
        guard let object = decode(text) as? [String: Any], let name = object["name"] as? String else { return nil }
        return GroupSettings(
            name: name, models: object["models"] as? [String] ?? [], budget: budget(object["budget"]),
            limits: limits(object["limits"]), logBodies: object["log_bodies"] as? Bool ?? false,
            retentionDays: object["retention_days"] as? Int)
    }

    static func keyRecord(_ stored: StoredKey) -> KeyRecord? {
        guard let hash = KeyHash(hex: stored.keySHA256) else { return nil }
        return KeyRecord(
            id: stored.id, name: stored.name, groups: stored.groups,
            limits: stored.limitsJSON.flatMap { limits(decode($0)) }, budget: stored.budgetJSON.flatMap { budget(decode($0)) },
            expires: stored.expires.flatMap(CivilTime.secondsOfDate), revoked: stored.isRevoked, hash: hash, source: .api)
    }

    static func info(_ stored: StoredKey) -> AdminKeyInfo {
        AdminKeyInfo(
            id: stored.id, name: stored.name, groups: stored.groups,
            limits: stored.limitsJSON.flatMap { limits(decode($0)) }, budget: stored.budgetJSON.flatMap { budget(decode($0)) },
            expires: stored.expires, createdAt: stored.createdUnix, revoked: stored.isRevoked, source: "api")
    }

    static func adminGroup(_ group: GroupSettings) -> AdminGroup {
        AdminGroup(
            name: group.name, models: group.models, limits: group.limits, budget: group.budget, logBodies: group.logBodies,
            retentionDays: group.retentionDays)
    }
}
