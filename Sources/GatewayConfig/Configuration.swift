// The gateway's configuration, as read from YAML (schema: DESIGN.md, "Configuration (YAML)").
// These are plain values: a parsed configuration is an immutable snapshot that reload swaps as a whole.
// Parsing and validation live in ConfigParser.swift; defaults live here, next to the fields they fill.
import Foundation
import Yams

/// A whole, validated configuration.
public struct GatewayConfiguration: Sendable, Equatable {
    public var server: ServerSettings
    public var admin: AdminSettings?
    public var store: StoreSettings
    public var providers: [ProviderSettings]
    public var models: [ModelSettings]
    public var groups: [GroupSettings]
    public var keys: [KeySettings]
    /// Doubtful but valid settings, each naming its field (a group pattern that matches no model).
    public var warnings: [ConfigError.Problem] = []

    public init(
        server: ServerSettings = ServerSettings(),
        admin: AdminSettings? = nil,
        store: StoreSettings = StoreSettings(),
        providers: [ProviderSettings],
        models: [ModelSettings],
        groups: [GroupSettings] = [],
        keys: [KeySettings] = []
    ) {
        self.server = server
        self.admin = admin
        self.store = store
        self.providers = providers
        self.models = models
        self.groups = groups
        self.keys = keys
    }

    /// Parses and validates; throws ConfigError listing EVERY problem found, each naming its field path,
    /// so `gateway check` can report them all in one run.
    /// `environment` resolves `api_key_env` and `admin.key_env`; a variable that is unset is not an error.
    public static func parse(
        yaml: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigError) -> GatewayConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError(problems: [.init(field: "(yaml)", message: ConfigParser.describeYAMLError(error))])
        }
        let parser = ConfigParser(environment: environment)
        var configuration = parser.configuration(from: root)
        guard parser.problems.isEmpty else { throw ConfigError(problems: parser.problems) }
        configuration.warnings = parser.warnings
        return configuration
    }

    /// Reads and parses the file at `path`; an unreadable file is a ConfigError whose field is the path.
    public static func load(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigError) -> GatewayConfiguration {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigError(problems: [.init(field: path, message: "no such file")])
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(problems: [.init(field: path, message: "cannot read: \(error.localizedDescription)")])
        }
        return try parse(yaml: text, environment: environment)
    }

    // Linear scans: configurations hold tens of entries, and hot paths build their own tables.
    public func provider(named name: String) -> ProviderSettings? { providers.first { $0.name == name } }
    public func model(named name: String) -> ModelSettings? { models.first { $0.name == name } }
    public func group(named name: String) -> GroupSettings? { groups.first { $0.name == name } }
}

/// Every problem of a configuration, not just the first, each tied to the field it is about.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Problem: Sendable, Equatable {
        /// A path such as "providers[0].base_url"; "(yaml)" for syntax errors, "(root)" for the document itself.
        public var field: String
        public var message: String

        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }

    public var problems: [Problem]

    public init(problems: [Problem]) { self.problems = problems }

    /// One line per problem: "<field>: <message>".
    public var description: String {
        problems.map { "\($0.field): \($0.message)" }.joined(separator: "\n")
    }
}

// MARK: - server, admin, store

public struct ServerSettings: Sendable, Equatable {
    public var listen: [ListenAddress]
    /// nil means "one per core"; the caller decides, since it knows the machine.
    public var threads: Int?
    public var tls: TLSFiles?
    public var maxBodyBytes: Int
    public var timeouts: Timeouts

    public init(
        listen: [ListenAddress] = [ListenAddress(tls: false, hostPort: "127.0.0.1:8080")],
        threads: Int? = nil,
        tls: TLSFiles? = nil,
        maxBodyBytes: Int = 32 * 1024 * 1024,
        timeouts: Timeouts = Timeouts()
    ) {
        self.listen = listen
        self.threads = threads
        self.tls = tls
        self.maxBodyBytes = maxBodyBytes
        self.timeouts = timeouts
    }
}

/// A listener: "tls://0.0.0.0:8443" becomes (tls: true, hostPort: "0.0.0.0:8443").
/// IPv6 hosts keep their brackets ("[::1]:8080"); port 0 asks the kernel for a free port.
public struct ListenAddress: Sendable, Equatable {
    public var tls: Bool
    public var hostPort: String

    public init(tls: Bool, hostPort: String) {
        self.tls = tls
        self.hostPort = hostPort
    }
}

public struct TLSFiles: Sendable, Equatable {
    public var cert: String
    public var key: String

    public init(cert: String, key: String) {
        self.cert = cert
        self.key = key
    }
}

/// All in milliseconds.
public struct Timeouts: Sendable, Equatable {
    public var headerMs: Int
    public var idleMs: Int
    public var upstreamConnectMs: Int
    public var upstreamResponseMs: Int
    public var drainMs: Int

    public init(
        headerMs: Int = 10_000,
        idleMs: Int = 60_000,
        upstreamConnectMs: Int = 2_000,
        upstreamResponseMs: Int = 600_000,
        drainMs: Int = 30_000
    ) {
        self.headerMs = headerMs
        self.idleMs = idleMs
        self.upstreamConnectMs = upstreamConnectMs
        self.upstreamResponseMs = upstreamResponseMs
        self.drainMs = drainMs
    }
}

public struct AdminSettings: Sendable, Equatable {
    /// "host:port" without a scheme; defaults to "127.0.0.1:8081".
    public var listen: String
    public var keyEnv: String?
    /// The bearer key, read from `keyEnv`; nil when the variable is unset or empty.
    public var key: String?

    public init(listen: String = "127.0.0.1:8081", keyEnv: String? = nil, key: String? = nil) {
        self.listen = listen
        self.keyEnv = keyEnv
        self.key = key
    }
}

/// Where audit records, keys and groups persist. SQLite is the embedded default;
/// PostgreSQL and Redis are for several replicas.
public struct StoreSettings: Sendable, Equatable {
    public var sqlite: String?
    public var postgres: String?
    public var redis: String?
    /// Audit records older than this are pruned in the background; nil keeps them.
    public var retentionDays: Int?
    /// True when the file has a `store` section. Without one, a gateway in open mode (no keys, groups or
    /// admin API) keeps no audit log: it is a bare proxy.
    public var configured: Bool

    public init(
        sqlite: String? = "gateway.db", postgres: String? = nil, redis: String? = nil, retentionDays: Int? = nil,
        configured: Bool = false
    ) {
        self.sqlite = sqlite
        self.postgres = postgres
        self.redis = redis
        self.retentionDays = retentionDays
        self.configured = configured
    }
}

// MARK: - providers and models

/// The API shape an upstream speaks: "openai" covers any OpenAI-compatible server.
public enum ProviderKind: String, Sendable, CaseIterable {
    case openai, anthropic
}

/// How the gateway talks to an upstream: HTTP/1.1, HTTP/2 over TLS, or cleartext HTTP/2.
public enum UpstreamProtocol: String, Sendable, CaseIterable {
    case h1, h2, h2c
}

public struct ProviderSettings: Sendable, Equatable {
    public var name: String
    public var kind: ProviderKind
    /// Normalized: lowercase scheme, no trailing slash ("http://127.0.0.1:9000/v1").
    public var baseURL: String
    /// true for https.
    public var tls: Bool
    /// Without brackets, even for IPv6 ("::1"), ready for getaddrinfo.
    public var host: String
    /// Explicit, or 80/443 by scheme.
    public var port: Int
    /// The URL's path prefix without a trailing slash: "/v1", or "" for none.
    public var basePath: String
    public var apiKeyEnv: String?
    /// Read from `apiKeyEnv`; nil when the variable is unset or empty (some local servers need no key).
    public var apiKey: String?
    public var upstreamProtocol: UpstreamProtocol
    public var maxConnections: Int
    /// An active probe of the provider; nil: health is learned from real requests only.
    public var healthCheck: HealthCheck?
    /// The header that carries the key as it is (Azure-style `api-key`); nil: `Authorization: Bearer` for
    /// openai, `x-api-key` for anthropic.
    public var apiKeyHeader: String?
    /// A query string added to every upstream request (Azure-style `api-version=2024-10-21`), without the '?'.
    public var query: String?
    /// https only: the PEM CA bundle that verifies the upstream; nil: the system's CAs.
    public var caFile: String?
    /// https only: accept any certificate and host name (logged as a warning at load).
    public var insecureSkipVerify = false

    public init(
        name: String,
        kind: ProviderKind = .openai,
        baseURL: String,
        tls: Bool,
        host: String,
        port: Int,
        basePath: String,
        apiKeyEnv: String? = nil,
        apiKey: String? = nil,
        upstreamProtocol: UpstreamProtocol = .h1,
        maxConnections: Int = 64
    ) {
        self.name = name
        self.kind = kind
        self.baseURL = baseURL
        self.tls = tls
        self.host = host
        self.port = port
        self.basePath = basePath
        self.apiKeyEnv = apiKeyEnv
        self.apiKey = apiKey
        self.upstreamProtocol = upstreamProtocol
        self.maxConnections = maxConnections
    }
}

/// How a model picks among its deployments.
public enum RoutingStrategy: String, Sendable, CaseIterable {
    case weighted, least_busy, latency, ordered
}

/// `providers[].health_check`: `GET path` every `interval_ms`; a failure or a 5xx cools every deployment of the
/// provider down, a success ends the cooldown.
public struct HealthCheck: Sendable, Equatable {
    /// The absolute request path, e.g. "/v1/models".
    public var path: String
    public var intervalMs: Int
    public var timeoutMs: Int

    public init(path: String, intervalMs: Int = 10_000, timeoutMs: Int = 2_000) {
        self.path = path
        self.intervalMs = intervalMs
        self.timeoutMs = timeoutMs
    }
}

/// An upstream outcome that may be retried on another deployment (`models[].retry.on`).
public enum RetryCondition: String, Sendable, CaseIterable {
    /// Refused, unreachable, or no connection within the connect timeout.
    case connect_error
    /// No response head within the response timeout.
    case timeout
    /// The connection broke before the response head.
    case reset
    case status_429 = "429"
    case status_5xx = "5xx"
}

/// `models[].retry`: how hard a request tries before it fails. Attempts count every upstream request,
/// across deployments and fallback models.
public struct RetryPolicy: Sendable, Equatable {
    public var attempts = 3
    public var on = Set(RetryCondition.allCases)
    /// The first backoff; each later one doubles, with full jitter, up to `maxBackoffMs`.
    public var backoffMs = 25
    public var maxBackoffMs = 1_000
    /// An upstream's `retry-after` is honoured up to this; a longer one moves on to the next deployment at once.
    public var retryAfterMaxMs = 2_000

    public init() {}
}

/// `models[].cooldown`: a deployment with `failures` retryable failures within `window_ms` is skipped for
/// `duration_ms`, then tried again with one request (half-open).
public struct CooldownPolicy: Sendable, Equatable {
    public var failures = 3
    public var windowMs = 30_000
    public var durationMs = 30_000

    public init() {}
}

/// USD per million tokens.
public struct Price: Sendable, Equatable {
    public var inputPerMTok: Double
    public var outputPerMTok: Double

    public init(inputPerMTok: Double, outputPerMTok: Double) {
        self.inputPerMTok = inputPerMTok
        self.outputPerMTok = outputPerMTok
    }
}

/// One place a model can be served: a provider and the model id that provider knows it by.
public struct DeploymentSettings: Sendable, Equatable {
    public var provider: String
    /// The upstream model id; the request's `model` is rewritten to it (aliasing).
    public var model: String
    public var weight: Int

    public init(provider: String, model: String, weight: Int = 1) {
        self.provider = provider
        self.model = model
        self.weight = weight
    }
}

public struct ModelSettings: Sendable, Equatable {
    /// The name clients ask for.
    public var name: String
    public var price: Price?
    public var routing: RoutingStrategy
    public var deployments: [DeploymentSettings]
    /// Other models to try, in order, when every deployment of this one fails.
    public var fallbacks: [String]
    /// Other names clients may use for this model (same deployments, price and access by the model's name).
    public var aliases: [String] = []
    public var retry = RetryPolicy()
    public var cooldown = CooldownPolicy()

    public init(
        name: String,
        price: Price? = nil,
        routing: RoutingStrategy = .weighted,
        deployments: [DeploymentSettings],
        fallbacks: [String] = []
    ) {
        self.name = name
        self.price = price
        self.routing = routing
        self.deployments = deployments
        self.fallbacks = fallbacks
    }
}

// MARK: - groups and keys

public enum BudgetPeriod: String, Sendable, CaseIterable {
    case daily, monthly, total
}

public struct Budget: Sendable, Equatable {
    public var usd: Double
    public var period: BudgetPeriod

    public init(usd: Double, period: BudgetPeriod) {
        self.usd = usd
        self.period = period
    }
}

/// nil means "no limit" for that dimension.
public struct Limits: Sendable, Equatable {
    public var rpm: Int?
    public var tpm: Int?
    public var concurrency: Int?

    public init(rpm: Int? = nil, tpm: Int? = nil, concurrency: Int? = nil) {
        self.rpm = rpm
        self.tpm = tpm
        self.concurrency = concurrency
    }
}

public struct GroupSettings: Sendable, Equatable {
    public var name: String
    /// Glob patterns ('*' only) over model names; see `globMatch`.
    public var models: [String]
    public var budget: Budget?
    public var limits: Limits?
    /// Store request and response bodies with the audit records of this group's keys.
    public var logBodies: Bool
    /// Overrides `store.retention_days` for this group's records.
    public var retentionDays: Int?

    public init(
        name: String, models: [String] = [], budget: Budget? = nil, limits: Limits? = nil, logBodies: Bool = false,
        retentionDays: Int? = nil
    ) {
        self.name = name
        self.models = models
        self.budget = budget
        self.limits = limits
        self.logBodies = logBodies
        self.retentionDays = retentionDays
    }
}

/// Where a key's secret comes from. Config files should carry hashes, not keys.
public enum KeySource: Sendable, Equatable {
    /// `key_sha256`: lowercase hex of the SHA-256 of the key.
    case sha256Hex(String)
    /// `key_env`: the name of the variable holding the key (resolved by the caller).
    case environment(String)
    /// `key`: the key itself, for tests.
    case plain(String)
}

public struct KeySettings: Sendable, Equatable {
    public var name: String
    public var source: KeySource
    public var groups: [String]
    public var limits: Limits?
    public var budget: Budget?
    /// "YYYY-MM-DD", checked to be a real calendar date.
    public var expires: String?

    public init(
        name: String,
        source: KeySource,
        groups: [String] = [],
        limits: Limits? = nil,
        budget: Budget? = nil,
        expires: String? = nil
    ) {
        self.name = name
        self.source = source
        self.groups = groups
        self.limits = limits
        self.budget = budget
        self.expires = expires
    }
}
