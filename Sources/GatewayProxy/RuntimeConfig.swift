#if canImport(Glibc)
import Glibc
#endif
import GatewayConfig
import GatewayHTTP
import GatewayIO
import GatewayMetrics
import GatewayPolicy

/// The configuration compiled for the hot path: header lines pre-rendered as bytes, models found by
/// hashing the request's bytes, durations in nanoseconds. Immutable and shared by every reactor thread;
/// a reload builds a new one and each thread swaps it in.
public final class RuntimeConfig: Sendable {
    public let source: GatewayConfiguration
    public let providers: [ProviderRoute]
    public let models: [ModelRoute]
    private let modelIndex: [UInt64: Int]
    public let maxBodyBytes: Int
    public let headerTimeoutNs: UInt64
    public let idleTimeoutNs: UInt64
    public let connectTimeoutNs: UInt64
    public let responseTimeoutNs: UInt64
    public let drainTimeoutNs: UInt64
    /// The body of `GET /v1/models`.
    public let modelListBody: [UInt8]
    /// Keys, groups and access. Shared counters live in `policy.counters`.
    public let policy: PolicySnapshot
    /// False in "open mode": a config with no keys, no groups and no admin API proxies without
    /// authentication (for bare-proxy benchmarks); the gateway says so at startup.
    public let authRequired: Bool
    /// Metric label ids of groups, by name (models and deployments carry theirs).
    public let groupMetricIDs: [String: Int]

    /// The label names a configuration brings to the metrics (models, groups, deployments), in order.
    public static func metricNames(_ config: GatewayConfiguration, policy: PolicySnapshot?) -> (models: [String], groups: [String], deployments: [String]) {
        let groups = (policy?.groups ?? config.groups).map(\.name)
        var deployments: [String] = []
        for model in config.models {
            for deployment in model.deployments {
                let label = "\(deployment.provider)/\(deployment.model)"
                if !deployments.contains(label) { deployments.append(label) }
            }
        }
        return (config.models.map(\.name), groups, deployments)
    }

    /// - Parameters:
    ///   - policy: the policy built from the same configuration (model indexes must agree); nil builds one
    ///     with no API keys and fresh counters.
    ///   - labels: the metric label ids to record with; names it lacks record as "none".
    ///   - previous: the configuration this one replaces; deployments it shares (same model, provider, upstream
    ///     model and cooldown settings) keep their health, so a reload does not forget a deployment is down.
    public init(
        _ config: GatewayConfiguration, policy: PolicySnapshot? = nil, labels: MetricsLabels = MetricsLabels(),
        previous: RuntimeConfig? = nil
    ) throws {
        try RuntimeConfig.refuseUnsupportedStores(config.store)
        source = config
        self.policy = policy ?? PolicySnapshot(
            config: config, apiKeys: [], apiGroups: [], environment: [:], counters: PolicyCounters())
        authRequired = !config.keys.isEmpty || !config.groups.isEmpty || config.admin != nil
        var providers: [ProviderRoute] = []
        for provider in config.providers {
            providers.append(try ProviderRoute(provider))
        }
        self.providers = providers
        var models: [ModelRoute] = []
        var index: [UInt64: Int] = [:]
        let modelIndexes = Dictionary(config.models.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
        for model in config.models {
            let oldModel = previous?.source.models.first { $0.name == model.name }
            let deployments = model.deployments.map { deployment -> DeploymentRoute in
                let providerIndex = config.providers.firstIndex { $0.name == deployment.provider }!
                let label = "\(deployment.provider)/\(deployment.model)"
                var health = DeploymentHealth(model.cooldown)
                if let oldModel, oldModel.cooldown == model.cooldown,
                   let old = previous?.model(named: model.name)?.deployments.first(where: { $0.label == Array(label.utf8) }) {
                    health = old.health
                }
                return DeploymentRoute(
                    providerIndex: providerIndex,
                    upstreamModel: Array(deployment.model.utf8),
                    labelText: label,
                    weight: deployment.weight,
                    metricsID: labels.deploymentID(label),
                    health: health)
            }
            let route = ModelRoute(
                index: models.count, name: Array(model.name.utf8), deployments: deployments, price: model.price,
                metricsID: labels.modelID(model.name), strategy: model.routing, retry: RetryRoute(model.retry),
                fallbacks: model.fallbacks.compactMap { modelIndexes[$0] })
            for name in [model.name] + model.aliases {
                let hash = Array(name.utf8).withUnsafeBytes { RuntimeConfig.hash($0) }
                precondition(index[hash] == nil, "model name hash collision: \(name)")
                index[hash] = models.count
            }
            models.append(route)
        }
        self.models = models
        self.modelIndex = index
        groupMetricIDs = Dictionary(
            self.policy.groups.map { ($0.name, labels.groupID($0.name)) }, uniquingKeysWith: { first, _ in first })
        let timeouts = config.server.timeouts
        maxBodyBytes = config.server.maxBodyBytes
        headerTimeoutNs = UInt64(timeouts.headerMs) * 1_000_000
        idleTimeoutNs = UInt64(timeouts.idleMs) * 1_000_000
        connectTimeoutNs = UInt64(timeouts.upstreamConnectMs) * 1_000_000
        responseTimeoutNs = UInt64(timeouts.upstreamResponseMs) * 1_000_000
        drainTimeoutNs = UInt64(timeouts.drainMs) * 1_000_000
        var list = "{\"object\":\"list\",\"data\":["
        list += config.models.flatMap { [$0.name] + $0.aliases }
            .map { "{\"id\":\"\($0)\",\"object\":\"model\",\"created\":0,\"owned_by\":\"gateway\"}" }
            .joined(separator: ",")
        list += "]}"
        modelListBody = Array(list.utf8)
    }

    /// The `GET /v1/models` body for a key: only the models it may use.
    public func modelList(for key: KeyPolicy) -> [UInt8] {
        var list = "{\"object\":\"list\",\"data\":["
        list += policy.allowedModels(key).flatMap { [source.models[$0].name] + source.models[$0].aliases }.map {
            "{\"id\":\"\($0)\",\"object\":\"model\",\"created\":0,\"owned_by\":\"gateway\"}"
        }.joined(separator: ",")
        list += "]}"
        return Array(list.utf8)
    }

    /// The model a request names (by its name or an alias), found from its bytes without making a String.
    @inline(__always)
    public func model(named bytes: UnsafeRawBufferPointer) -> ModelRoute? {
        guard let index = modelIndex[RuntimeConfig.hash(bytes)] else { return nil }
        let model = models[index]
        if RuntimeConfig.same(model.name, bytes) { return model }
        // An alias: rare, so its name is only compared here.
        return source.models[index].aliases.contains { RuntimeConfig.same(Array($0.utf8), bytes) } ? model : nil
    }

    func model(named name: String) -> ModelRoute? {
        Array(name.utf8).withUnsafeBytes { model(named: $0) }
    }

    @inline(__always)
    private static func same(_ name: [UInt8], _ bytes: UnsafeRawBufferPointer) -> Bool {
        name.withUnsafeBytes { name in
            name.count == bytes.count && (name.count == 0 || memcmp(name.baseAddress!, bytes.baseAddress!, name.count) == 0)
        }
    }

    /// FNV-1a over the bytes.
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return hash
    }
}

/// A provider, ready to be written into request heads. A class, like `DeploymentRoute`: a request reads it through
/// one reference instead of copying its arrays (a retain and a release per field).
public final class ProviderRoute: Sendable {
    public let name: String
    public let kind: ProviderKind
    public let address: SocketAddress
    public let maxConnections: Int
    /// "host: HOST:PORT\r\n"
    public let hostLine: [UInt8]
    /// "authorization: Bearer KEY\r\n" (or x-api-key for Anthropic), or empty. Never logged.
    public let credentialLines: [UInt8]
    /// The path prefix of base_url ("/v1"), which replaces the client's "/v1".
    public let basePath: [UInt8]
    /// `query` ("api-version=..."), added to every request target; empty for none.
    public let query: [UInt8]
    /// `api_key_header`, lowercase; empty when the key goes in the kind's standard header.
    public let keyHeaderName: [UInt8]
    /// https: the client context (CAs, verification, ALPN) every thread's connections share; nil for http.
    public let tls: TLSContext?
    /// The name for SNI and the certificate check: base_url's host.
    public let tlsHost: String
    /// `protocol: h2` or `h2c`: requests share HTTP/2 connections (`UpstreamH2Connection`).
    public let http2: Bool

    struct ProviderError: Error, CustomStringConvertible {
        let description: String
    }

    init(_ settings: ProviderSettings) throws {
        name = settings.name
        kind = settings.kind
        maxConnections = settings.maxConnections
        tlsHost = settings.host
        http2 = settings.upstreamProtocol != .h1
        if settings.tls {
            do {
                tls = try TLSContext.client(
                    caFile: settings.caFile, verifyPeer: !settings.insecureSkipVerify,
                    alpn: settings.upstreamProtocol == .h2 ? [.h2] : [.http11])
            } catch {
                let field = settings.caFile == nil ? "base_url" : "ca_file"
                throw ProviderError(description: "providers[\(settings.name)].\(field): \(error)")
            }
        } else {
            tls = nil
        }
        address = try Resolver.resolve(host: settings.host, port: settings.port)
        let defaultPort = settings.tls ? 443 : 80
        let hostText = settings.host.contains(":") ? "[\(settings.host)]" : settings.host
        hostLine = Array("host: \(hostText)\(settings.port == defaultPort ? "" : ":\(settings.port)")\r\n".utf8)
        switch (settings.kind, settings.apiKey) {
        case (_, nil):
            credentialLines = []
        case (_, let key?) where settings.apiKeyHeader != nil:
            credentialLines = Array("\(settings.apiKeyHeader!): \(key)\r\n".utf8)
        case (.openai, let key?):
            credentialLines = Array("authorization: Bearer \(key)\r\n".utf8)
        case (.anthropic, let key?):
            credentialLines = Array("x-api-key: \(key)\r\n".utf8)
        }
        basePath = Array(settings.basePath.utf8)
        query = Array((settings.query ?? "").utf8)
        keyHeaderName = Array((settings.apiKeyHeader ?? "").utf8)
    }
}

/// A deployment ready for the request path. A class: requests (and the audit records that name it) hold it by one
/// reference, not by copying its arrays (a struct of arrays costs a retain and release per field at every assignment).
public final class DeploymentRoute: Sendable {
    public let providerIndex: Int
    public let upstreamModel: [UInt8]
    /// "provider/model", for x-gateway-deployment.
    public let label: [UInt8]
    /// The same as a String, for the audit record: made once here, not per request.
    public let labelText: String
    public let weight: Int
    public let metricsID: Int
    /// Shared by every thread (and kept across reloads while the deployment stays).
    public let health: DeploymentHealth

    init(providerIndex: Int, upstreamModel: [UInt8], labelText: String, weight: Int, metricsID: Int, health: DeploymentHealth) {
        self.providerIndex = providerIndex
        self.upstreamModel = upstreamModel
        label = Array(labelText.utf8)
        self.labelText = labelText
        self.weight = weight
        self.metricsID = metricsID
        self.health = health
    }
}

/// `models[].retry`, in the units the request path uses.
public struct RetryRoute: Sendable {
    public let attempts: Int
    /// A bit per `RetryCondition` (by its position in `allCases`).
    private let conditions: UInt8
    public let backoffNs: UInt64
    public let maxBackoffNs: UInt64
    public let retryAfterMaxNs: UInt64

    init(_ policy: RetryPolicy) {
        attempts = policy.attempts
        conditions = RetryCondition.allCases.enumerated().reduce(0) { mask, item in
            policy.on.contains(item.element) ? mask | 1 << item.offset : mask
        }
        backoffNs = UInt64(policy.backoffMs) * 1_000_000
        maxBackoffNs = UInt64(policy.maxBackoffMs) * 1_000_000
        retryAfterMaxNs = UInt64(policy.retryAfterMaxMs) * 1_000_000
    }

    @inline(__always)
    public func retries(_ condition: RetryCondition) -> Bool {
        conditions & 1 << RetryCondition.allCases.firstIndex(of: condition)! != 0
    }
}

/// A model ready for the request path (a class, for the same reason as `DeploymentRoute`).
public final class ModelRoute: Sendable {
    /// The model's index in the configuration (and in the policy's tables).
    public let index: Int
    public let name: [UInt8]
    public let deployments: [DeploymentRoute]
    public let price: Price?
    public let metricsID: Int
    public let strategy: RoutingStrategy
    public let retry: RetryRoute
    /// Indexes of the models to try, in order, once this one's deployments have failed.
    public let fallbacks: [Int]

    init(index: Int, name: [UInt8], deployments: [DeploymentRoute], price: Price?, metricsID: Int,
         strategy: RoutingStrategy, retry: RetryRoute, fallbacks: [Int]) {
        self.index = index
        self.name = name
        self.deployments = deployments
        self.price = price
        self.metricsID = metricsID
        self.strategy = strategy
        self.retry = retry
        self.fallbacks = fallbacks
    }
}

extension RuntimeConfig {
    /// DESIGN.md's schema has `store.postgres` and `store.redis` for replicas; this build has neither client. Run
    /// without them, the gateway would write no audit record (no SQLite file either) and keep its counters per
    /// process: refused by name instead, so that `gateway check`, start-up and reload all say so.
    static func refuseUnsupportedStores(_ store: StoreSettings) throws {
        var problems: [ConfigError.Problem] = []
        if store.postgres != nil {
            problems.append(.init(field: "store.postgres", message:
                "PostgreSQL is not supported by this build: audit records would go nowhere; use store.sqlite (the embedded default)"))
        }
        if store.redis != nil {
            problems.append(.init(field: "store.redis", message:
                "Redis is not supported by this build: rate-limit and budget counters would not be shared; remove it and run one replica"))
        }
        if !problems.isEmpty { throw ConfigError(problems: problems) }
    }
}
