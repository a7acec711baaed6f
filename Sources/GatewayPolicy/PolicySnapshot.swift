// The policy in force: keys, groups and model access, compiled once per config load, reload or
// admin change, and read without locks by every reactor thread.
import GatewayConfig

/// The answer to "may this key use this model?".
public enum Access: Sendable, Equatable {
    case allowed
    /// 403 `model_not_allowed`: no pattern of the key's groups matches the name, whether or not it exists.
    case notAllowed
    /// 404 `model_not_found`: a pattern matches the name, but no model carries it.
    case notFound
}

/// An immutable view of keys and groups. Swap the whole object to change policy; the counters
/// (`PolicyCounters`) are shared between generations so counts survive.
public final class PolicySnapshot: Sendable {
    public let counters: PolicyCounters
    /// Every key that can authenticate (revoked keys and config keys without a secret are left out).
    public let keys: [KeyPolicy]
    /// The groups in force: the config's, with the API's replacing those of the same name.
    public let groups: [GroupSettings]
    /// The config's model names, by config model index.
    public let modelNames: [String]
    /// Each model's price, by config model index (nil: free), for `costMicroUSD(usage:price:)`.
    public let prices: [Price?]
    private let byHash: [KeyHash: Int]
    private let byID: [String: Int]

    /// - Parameters:
    ///   - config: the configuration (models, groups and config keys).
    ///   - apiKeys: the keys made through the admin API, from the store.
    ///   - apiGroups: the groups made or changed through the admin API; they win over config groups
    ///     of the same name.
    ///   - environment: resolves `key_env`.
    ///   - counters: the shared counters; cells for new keys and groups are made here.
    public init(
        config: GatewayConfiguration,
        apiKeys: [KeyRecord],
        apiGroups: [GroupSettings],
        environment: [String: String],
        counters: PolicyCounters
    ) {
        self.counters = counters
        var groups = config.groups
        for group in apiGroups {
            if let i = groups.firstIndex(where: { $0.name == group.name }) { groups[i] = group } else { groups.append(group) }
        }
        self.groups = groups
        let groupByName = Dictionary(groups.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        modelNames = config.models.map(\.name)
        prices = config.models.map(\.price)

        var records = config.keys.compactMap { KeyRecord(config: $0, environment: environment) }
        records += apiKeys
        var keys: [KeyPolicy] = []
        var byHash: [KeyHash: Int] = [:]
        var byID: [String: Int] = [:]
        for record in records where !record.revoked {
            // A digest or id seen twice keeps its first owner: config keys come first, then the API's.
            guard byHash[record.hash] == nil, byID[record.id] == nil else { continue }
            var keyGroups: [GroupSettings] = []
            for name in record.groups {
                guard let group = groupByName[name], !keyGroups.contains(where: { $0.name == name }) else { continue }
                keyGroups.append(group)
                if keyGroups.count == 63 { break }
            }
            var cells = [counters.cell(keyID: record.id)]
            cells += keyGroups.map { counters.cell(group: $0.name) }
            byHash[record.hash] = keys.count
            byID[record.id] = keys.count
            keys.append(KeyPolicy(record: record, groups: keyGroups, cells: cells, modelNames: modelNames))
        }
        self.keys = keys
        self.byHash = byHash
        self.byID = byID
    }

    /// The key a client presented, or nil when it is unknown, expired or revoked (all 401).
    /// One SHA-256 of the presented bytes, one dictionary probe, and a constant-time compare of the
    /// digests; nothing is allocated.
    /// - Parameters:
    ///   - bearer: the key's bytes, from `Authorization: Bearer` or `x-api-key`.
    ///   - nowSeconds: wall-clock seconds, for expiry.
    @inline(__always)
    public func authenticate(bearer: UnsafeRawBufferPointer, nowSeconds: Int64) -> KeyPolicy? {
        guard bearer.count > 0 else { return nil }
        let digest = KeyHash(of: bearer)
        guard let index = byHash[digest] else { return nil }
        let key = keys[index]
        guard KeyHash.constantTimeEquals(digest, key.hash) else { return nil }
        if let expires = key.expires, nowSeconds >= expires { return nil }
        return key
    }

    /// Whether `key` may use the model the request names.
    /// - Parameters:
    ///   - modelIndex: the config model index when a model carries the name (the proxy resolved it), else nil.
    ///   - modelName: the name's bytes, used only when `modelIndex` is nil.
    @inline(__always)
    public func access(_ key: KeyPolicy, modelIndex: Int?, modelName: UnsafeRawBufferPointer) -> Access {
        if let modelIndex {
            guard modelIndex >= 0, modelIndex < key.allowed.count else { return .notAllowed }
            // An alias is allowed by the model's name or by its own (checked only on the refusal path).
            return key.allowed[modelIndex] || key.patternsMatch(modelName) ? .allowed : .notAllowed
        }
        return key.patternsMatch(modelName) ? .notFound : .notAllowed
    }

    /// The config model indexes `key` may use, for `GET /v1/models`.
    public func allowedModels(_ key: KeyPolicy) -> [Int] { key.allowedModelIndexes }

    /// A key by id (admin views); nil for unknown or revoked ids.
    public func key(id: String) -> KeyPolicy? { byID[id].map { keys[$0] } }
}
