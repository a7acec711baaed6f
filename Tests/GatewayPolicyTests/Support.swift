// Shared fixtures: a small configuration and byte helpers.
import GatewayConfig
import GatewayPolicy

enum Fixture {
    static let provider = ProviderSettings(
        name: "mock", baseURL: "http://127.0.0.1:9000/v1", tls: false, host: "127.0.0.1", port: 9000, basePath: "/v1")

    static func model(_ name: String, price: Price? = nil) -> ModelSettings {
        ModelSettings(name: name, price: price, deployments: [DeploymentSettings(provider: "mock", model: name)])
    }

    /// Models by index: 0 gpt-4o-mini, 1 gpt-4o, 2 embed-small, 3 claude-haiku.
    static let models = [
        model("gpt-4o-mini", price: Price(inputPerMTok: 0.15, outputPerMTok: 0.60)),
        model("gpt-4o"),
        model("embed-small"),
        model("claude-haiku"),
    ]

    static func config(groups: [GroupSettings] = [], keys: [KeySettings] = []) -> GatewayConfiguration {
        GatewayConfiguration(providers: [provider], models: models, groups: groups, keys: keys)
    }

    static func snapshot(
        groups: [GroupSettings] = [],
        keys: [KeySettings] = [],
        apiKeys: [KeyRecord] = [],
        apiGroups: [GroupSettings] = [],
        environment: [String: String] = [:],
        counters: PolicyCounters = PolicyCounters()
    ) -> PolicySnapshot {
        PolicySnapshot(
            config: config(groups: groups, keys: keys), apiKeys: apiKeys, apiGroups: apiGroups,
            environment: environment, counters: counters)
    }

    /// 2026-03-15 12:00:00 UTC.
    static let noon: Int64 = CivilTime.days(year: 2026, month: 3, day: 15) * 86_400 + 12 * 3600
    /// An arbitrary monotonic origin, far from zero.
    static let t0: UInt64 = 5_000_000_000_000
    static let second: UInt64 = 1_000_000_000
}

extension PolicySnapshot {
    func authenticate(_ key: String, now: Int64 = Fixture.noon) -> KeyPolicy? {
        var key = key
        return key.withUTF8 { authenticate(bearer: UnsafeRawBufferPointer($0), nowSeconds: now) }
    }

    func access(_ key: KeyPolicy, _ name: String) -> Access {
        let index = modelNames.firstIndex(of: name)
        var name = name
        return name.withUTF8 { access(key, modelIndex: index, modelName: UnsafeRawBufferPointer($0)) }
    }
}

extension Admission {
    var ticket: Ticket? {
        if case .admitted(let ticket) = self { return ticket }
        return nil
    }

    var rejection: Rejection? {
        if case .rejected(let reason) = self { return reason }
        return nil
    }
}

extension Rejection {
    var retryAfter: Int? {
        if case .rateLimit(let seconds, _) = self { return seconds }
        return nil
    }

    var which: String {
        switch self {
        case .rateLimit(_, let which): which
        case .budget(let which): which
        }
    }

    var isBudget: Bool {
        if case .budget = self { return true }
        return false
    }
}
