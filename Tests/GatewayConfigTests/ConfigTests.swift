import Foundation
import Testing

@testable import GatewayConfig

/// The problems a config produces (empty when it parses), so each test can assert the exact field paths.
private func problems(_ yaml: String, environment: [String: String] = [:]) -> [ConfigError.Problem] {
    do {
        _ = try GatewayConfiguration.parse(yaml: yaml, environment: environment)
        return []
    } catch {
        return error.problems
    }
}

private func fields(_ yaml: String) -> [String] { problems(yaml).map(\.field) }

/// The smallest valid config; invalid cases append to or vary it.
private let minimal = """
    providers:
      - {name: mock, base_url: "http://127.0.0.1:9000/v1"}
    models:
      - {name: m, deployments: [{provider: mock}]}
    """

private let full = """
    server:
      listen: ["127.0.0.1:8080", "tls://0.0.0.0:8443", "http://[::1]:8081"]
      threads: 2
      tls: {cert: server.pem, key: server.key}
      max_body_bytes: 1048576
      timeouts: {header_ms: 5000, idle_ms: 30000, upstream_connect_ms: 1000, upstream_response_ms: 90000, drain_ms: 15000}
    admin:
      listen: 127.0.0.1:8081
      key_env: GATEWAY_ADMIN_KEY
    store:
      postgres: postgres://user@127.0.0.1/gateway
      redis: redis://127.0.0.1:6379
    providers:
      - name: mock
        kind: openai
        base_url: http://127.0.0.1:9000/v1/
        api_key_env: MOCK_API_KEY
        protocol: h2c
        max_connections: 8
      - name: claude
        kind: anthropic
        base_url: https://[2001:db8::1]:8443
        api_key_env: UNSET_KEY
        protocol: h2
      - name: named
        base_url: https://api.example.com
    models:
      - name: gpt-4o-mini
        price: {input_per_mtok: 0.15, output_per_mtok: 1}
        routing: least_busy
        deployments:
          - {provider: mock, model: gpt-4o-mini-2024, weight: 3}
          - {provider: named}
        fallbacks: [claude-haiku]
      - name: claude-haiku
        routing: ordered
        deployments: [{provider: claude}]
    groups:
      - name: interns
        models: ["gpt-4o-mini", "embed-*"]
        budget: {usd: 15, period: monthly}
        limits: {rpm: 60, tpm: 100000, concurrency: 4}
      - name: staff
        models: ["*"]
    keys:
      - name: alice
        key_sha256: "\(String(repeating: "AB", count: 32))"
        groups: [interns, staff]
        limits: {rpm: 10}
        budget: {usd: 5.5, period: daily}
        expires: 2027-01-01
      - name: bob
        key_env: BOB_KEY
        expires: "2028-02-29"
      - name: test
        key: sk-test
    """

@Suite struct ValidConfigs {
    @Test func fullConfigParsesWithEveryField() throws {
        let env = ["GATEWAY_ADMIN_KEY": "admin-secret", "MOCK_API_KEY": "sk-mock"]
        let c = try GatewayConfiguration.parse(yaml: full, environment: env)

        #expect(c.server.listen == [
            ListenAddress(tls: false, hostPort: "127.0.0.1:8080"),
            ListenAddress(tls: true, hostPort: "0.0.0.0:8443"),
            ListenAddress(tls: false, hostPort: "[::1]:8081"),
        ])
        #expect(c.server.threads == 2)
        #expect(c.server.tls == TLSFiles(cert: "server.pem", key: "server.key"))
        #expect(c.server.maxBodyBytes == 1_048_576)
        #expect(c.server.timeouts == Timeouts(
            headerMs: 5000, idleMs: 30000, upstreamConnectMs: 1000, upstreamResponseMs: 90000, drainMs: 15000))
        #expect(c.admin == AdminSettings(listen: "127.0.0.1:8081", keyEnv: "GATEWAY_ADMIN_KEY", key: "admin-secret"))
        #expect(c.store == StoreSettings(
            sqlite: nil, postgres: "postgres://user@127.0.0.1/gateway", redis: "redis://127.0.0.1:6379", configured: true))
        // "embed-*" matches no model yet.
        #expect(c.warnings.map(\.field) == ["groups[0].models[1]"])

        #expect(c.providers.count == 3)
        let mock = try #require(c.provider(named: "mock"))
        #expect(mock == ProviderSettings(
            name: "mock", kind: .openai, baseURL: "http://127.0.0.1:9000/v1", tls: false,
            host: "127.0.0.1", port: 9000, basePath: "/v1", apiKeyEnv: "MOCK_API_KEY", apiKey: "sk-mock",
            upstreamProtocol: .h2c, maxConnections: 8))
        let claude = try #require(c.provider(named: "claude"))
        #expect(claude.kind == .anthropic)
        #expect(claude.tls && claude.host == "2001:db8::1" && claude.port == 8443 && claude.basePath == "")
        #expect(claude.apiKeyEnv == "UNSET_KEY" && claude.apiKey == nil)
        #expect(claude.upstreamProtocol == .h2)
        let named = try #require(c.provider(named: "named"))
        #expect(named.host == "api.example.com" && named.port == 443 && named.baseURL == "https://api.example.com")

        let mini = try #require(c.model(named: "gpt-4o-mini"))
        #expect(mini.price == Price(inputPerMTok: 0.15, outputPerMTok: 1))
        #expect(mini.routing == .least_busy)
        #expect(mini.deployments == [
            DeploymentSettings(provider: "mock", model: "gpt-4o-mini-2024", weight: 3),
            DeploymentSettings(provider: "named", model: "gpt-4o-mini", weight: 1),
        ])
        #expect(mini.fallbacks == ["claude-haiku"])
        #expect(c.model(named: "claude-haiku")?.routing == .ordered)
        #expect(c.model(named: "nope") == nil)

        #expect(c.groups == [
            GroupSettings(
                name: "interns", models: ["gpt-4o-mini", "embed-*"], budget: Budget(usd: 15, period: .monthly),
                limits: Limits(rpm: 60, tpm: 100_000, concurrency: 4)),
            GroupSettings(name: "staff", models: ["*"]),
        ])
        #expect(c.keys == [
            KeySettings(
                name: "alice", source: .sha256Hex(String(repeating: "ab", count: 32)), groups: ["interns", "staff"],
                limits: Limits(rpm: 10), budget: Budget(usd: 5.5, period: .daily), expires: "2027-01-01"),
            KeySettings(name: "bob", source: .environment("BOB_KEY"), expires: "2028-02-29"),
            KeySettings(name: "test", source: .plain("sk-test")),
        ])
    }

    @Test func defaultsAreApplied() throws {
        let c = try GatewayConfiguration.parse(yaml: minimal, environment: [:])
        #expect(c.server.listen == [ListenAddress(tls: false, hostPort: "127.0.0.1:8080")])
        #expect(c.server.threads == nil)
        #expect(c.server.tls == nil)
        #expect(c.server.maxBodyBytes == 33_554_432)
        #expect(c.server.timeouts == Timeouts(
            headerMs: 10000, idleMs: 60000, upstreamConnectMs: 2000, upstreamResponseMs: 600000, drainMs: 30000))
        #expect(c.admin == nil)
        #expect(c.store == StoreSettings(sqlite: "gateway.db", postgres: nil, redis: nil))
        let p = try #require(c.providers.first)
        #expect(p.kind == .openai && p.upstreamProtocol == .h1 && p.maxConnections == 64)
        #expect(p.apiKeyEnv == nil && p.apiKey == nil)
        let m = try #require(c.models.first)
        #expect(m.price == nil && m.routing == .weighted && m.fallbacks.isEmpty)
        #expect(m.deployments == [DeploymentSettings(provider: "mock", model: "m", weight: 1)])
        #expect(c.groups.isEmpty && c.keys.isEmpty)
    }

    @Test func partialSectionsKeepTheOtherDefaults() throws {
        let c = try GatewayConfiguration.parse(yaml: """
            server: {listen: "0.0.0.0:0", timeouts: {idle_ms: 5}}
            admin: {}
            store: {redis: "rediss://cache:6380"}
            \(minimal)
            """, environment: [:])
        #expect(c.server.listen == [ListenAddress(tls: false, hostPort: "0.0.0.0:0")])
        #expect(c.server.timeouts.idleMs == 5 && c.server.timeouts.headerMs == 10000)
        #expect(c.admin == AdminSettings(listen: "127.0.0.1:8081", keyEnv: nil, key: nil))
        #expect(c.store == StoreSettings(sqlite: "gateway.db", postgres: nil, redis: "rediss://cache:6380", configured: true))
    }

    @Test func baseURLForms() throws {
        let c = try GatewayConfiguration.parse(yaml: """
            providers:
              - {name: a, base_url: "http://localhost"}
              - {name: b, base_url: "HTTPS://host.internal/"}
              - {name: c, base_url: "http://10.0.0.1:8000/openai/v1//"}
              - {name: d, base_url: "http://[::1]"}
            models:
              - {name: m, deployments: [{provider: a}]}
            """, environment: [:])
        let p = c.providers.map { [$0.baseURL, $0.host, "\($0.port)", $0.basePath, "\($0.tls)"] }
        #expect(p == [
            ["http://localhost", "localhost", "80", "", "false"],
            ["https://host.internal", "host.internal", "443", "", "true"],
            ["http://10.0.0.1:8000/openai/v1", "10.0.0.1", "8000", "/openai/v1", "false"],
            ["http://[::1]", "::1", "80", "", "false"],
        ])
    }

    @Test func yamlAnchorsAndMergeKeys() throws {
        let c = try GatewayConfiguration.parse(yaml: """
            providers:
              - &base {name: one, base_url: "http://127.0.0.1:9000", max_connections: 4}
              - {<<: *base, name: two}
            models:
              - {name: m, deployments: [{provider: two}]}
            """, environment: [:])
        #expect(c.providers.map(\.name) == ["one", "two"])
        #expect(c.providers.map(\.maxConnections) == [4, 4])
    }

    @Test func emptyEnvironmentValueIsUnset() throws {
        let c = try GatewayConfiguration.parse(yaml: """
            providers:
              - {name: mock, base_url: "http://h:1", api_key_env: K}
            models:
              - {name: m, deployments: [{provider: mock}]}
            """, environment: ["K": ""])
        #expect(c.providers[0].apiKey == nil)
    }

    @Test func exampleFileParses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let c = try GatewayConfiguration.load(
            path: root.appendingPathComponent("gateway.example.yaml").path, environment: [:])
        #expect(c.server.listen == [ListenAddress(tls: false, hostPort: "127.0.0.1:8080")])
        #expect(c.server.threads == nil)
        #expect(c.provider(named: "mock")?.baseURL == "http://127.0.0.1:9000/v1")
        #expect(c.provider(named: "mock-anthropic")?.kind == .anthropic)
        #expect(c.model(named: "gpt-4o-mini")?.deployments.first?.provider == "mock")
        #expect(c.model(named: "gpt-4o")?.deployments == [
            DeploymentSettings(provider: "mock", model: "gpt-4o-2024-08-06", weight: 1)
        ])
        #expect(c.model(named: "claude-3-5-haiku")?.deployments.first?.provider == "mock-anthropic")
        #expect(c.admin == nil && c.groups.isEmpty && c.keys.isEmpty)
    }
}

@Suite struct InvalidConfigs {
    @Test func unknownField() {
        let yaml = minimal.replacingOccurrences(of: "base_url:", with: "bsae_url:")
        let found = problems(yaml)
        #expect(found.map(\.field) == ["providers[0].bsae_url", "providers[0].base_url"])
        #expect(found[0].message.hasPrefix("unknown field"))
        #expect(fields("servr: {}\n" + minimal) == ["servr"])
        #expect(fields("server: {timeouts: {header: 1}}\n" + minimal) == ["server.timeouts.header"])
    }

    @Test func badBaseURLScheme() {
        let found = problems(minimal.replacingOccurrences(of: "http://", with: "ftp://"))
        #expect(found.map(\.field) == ["providers[0].base_url"])
        #expect(found[0].message.contains("http or https"))
        #expect(fields(minimal.replacingOccurrences(of: "http://127.0.0.1:9000/v1", with: "127.0.0.1:9000"))
            == ["providers[0].base_url"])
        #expect(fields(minimal.replacingOccurrences(of: ":9000", with: ":99999")) == ["providers[0].base_url"])
        #expect(fields(minimal.replacingOccurrences(of: "127.0.0.1:9000", with: "u:p@h:1")) == ["providers[0].base_url"])
    }

    @Test func deploymentNamingMissingProvider() {
        let found = problems(minimal.replacingOccurrences(of: "{provider: mock}", with: "{provider: mock}, {provider: nope}"))
        #expect(found.map(\.field) == ["models[0].deployments[1].provider"])
        #expect(found[0].message.contains("\"nope\""))
    }

    @Test func fallbackNamingMissingModel() {
        let yaml = minimal + "\n  - {name: n, deployments: [{provider: mock}], fallbacks: [m, ghost, n]}"
        #expect(fields(yaml) == ["models[1].fallbacks[1]", "models[1].fallbacks[2]"])
    }

    @Test func tlsListenWithoutTLSBlock() {
        let found = problems("server: {listen: [\"127.0.0.1:8080\", \"tls://0.0.0.0:8443\"]}\n" + minimal)
        #expect(found.map(\.field) == ["server.tls"])
        #expect(found[0].message.contains("server.listen[1]"))
        #expect(fields("server: {listen: [\"udp://1.2.3.4:5\", \"nohost\", \"::1:80\"]}\n" + minimal)
            == ["server.listen[0]", "server.listen[1]", "server.listen[2]"])
    }

    @Test func weightZero() {
        let found = problems(minimal.replacingOccurrences(of: "{provider: mock}", with: "{provider: mock, weight: 0}"))
        #expect(found.map(\.field) == ["models[0].deployments[0].weight"])
    }

    @Test func badRoutingValue() {
        let found = problems(minimal.replacingOccurrences(of: "{name: m,", with: "{name: m, routing: random,"))
        #expect(found.map(\.field) == ["models[0].routing"])
        #expect(found[0].message.contains("weighted, least_busy, latency, ordered"))
    }

    @Test func routingFieldsParse() throws {
        let yaml = """
            providers:
              - name: mock
                base_url: "http://127.0.0.1:9000/v1"
                health_check: {path: /v1/models, interval_ms: 500}
            models:
              - name: m
                aliases: [fast]
                deployments: [{provider: mock}]
                retry: {attempts: 5, on: [connect_error, "429"], backoff_ms: 10, max_backoff_ms: 100, retry_after_max_ms: 0}
                cooldown: {failures: 2, window_ms: 1000, duration_ms: 2000}
            """
        let config = try GatewayConfiguration.parse(yaml: yaml, environment: [:])
        let model = config.models[0]
        #expect(model.aliases == ["fast"])
        #expect(model.retry.attempts == 5)
        #expect(model.retry.on == [.connect_error, .status_429])
        #expect(model.retry.backoffMs == 10 && model.retry.maxBackoffMs == 100 && model.retry.retryAfterMaxMs == 0)
        #expect(model.cooldown.failures == 2 && model.cooldown.windowMs == 1000 && model.cooldown.durationMs == 2000)
        #expect(config.providers[0].healthCheck == HealthCheck(path: "/v1/models", intervalMs: 500, timeoutMs: 2000))
        // Defaults: 3 attempts on every condition.
        let plain = try GatewayConfiguration.parse(yaml: minimal, environment: [:]).models[0]
        #expect(plain.retry.attempts == 3 && plain.retry.on.count == RetryCondition.allCases.count)
    }

    @Test func badRoutingFieldsNameTheirPaths() {
        let yaml = """
            providers:
              - {name: mock, base_url: "http://127.0.0.1:9000/v1", health_check: {path: "v1 models"}}
            models:
              - name: m
                aliases: [other]
                deployments: [{provider: mock}]
                retry: {attempts: 11, on: [connect_error, "404"], jitter: true}
                cooldown: {failures: 0}
              - {name: other, deployments: [{provider: mock}]}
            """
        let found = Set(fields(yaml))
        #expect(found.isSuperset(of: [
            "providers[0].health_check.path", "models[0].retry.attempts", "models[0].retry.on[1]",
            "models[0].retry.jitter", "models[0].cooldown.failures", "models[0].aliases[0]",
        ]), "\(found)")
    }

    @Test func azureStyleKeyHeaderAndQuery() throws {
        let good = """
            providers:
              - {name: az, base_url: "http://127.0.0.1:9000/openai/deployments/x", api_key_header: Api-Key, query: "api-version=2024-10-21"}
            models:
              - {name: m, deployments: [{provider: az}]}
            """
        let provider = try GatewayConfiguration.parse(yaml: good, environment: [:]).providers[0]
        #expect(provider.apiKeyHeader == "api-key")
        #expect(provider.query == "api-version=2024-10-21")
        let bad = """
            providers:
              - {name: az, base_url: "http://127.0.0.1:9000/v1", api_key_header: "api key", query: "?api-version=1"}
            models:
              - {name: m, deployments: [{provider: az}]}
            """
        #expect(Set(fields(bad)) == ["providers[0].api_key_header", "providers[0].query"])
    }

    @Test func upstreamTLSSettings() throws {
        let good = """
            providers:
              - {name: a, base_url: "https://api.example.com/v1", ca_file: /etc/ssl/ca.pem}
              - {name: b, base_url: "https://127.0.0.1:9443/v1", insecure_skip_verify: true}
            models:
              - {name: m, deployments: [{provider: a}, {provider: b}]}
            """
        let configuration = try GatewayConfiguration.parse(yaml: good, environment: [:])
        #expect(configuration.providers[0].caFile == "/etc/ssl/ca.pem")
        #expect(configuration.providers[0].insecureSkipVerify == false)
        #expect(configuration.providers[1].insecureSkipVerify)
        #expect(configuration.warnings.map(\.field) == ["providers[1].insecure_skip_verify"])
        let bad = """
            providers:
              - {name: a, base_url: "http://127.0.0.1:9000/v1", ca_file: ca.pem, insecure_skip_verify: false}
              - {name: b, base_url: "https://127.0.0.1:9443/v1", ca_file: ca.pem, insecure_skip_verify: true}
            models:
              - {name: m, deployments: [{provider: a}, {provider: b}]}
            """
        #expect(Set(fields(bad)) == ["providers[0].ca_file", "providers[0].insecure_skip_verify", "providers[1].ca_file"])
    }

    @Test func keyWithTwoSourcesOrNone() {
        let yaml = minimal + """

            keys:
              - {name: a, key_sha256: "\(String(repeating: "0", count: 64))", key: plain}
              - {name: b}
              - {name: c, key_sha256: "abc"}
            """
        #expect(fields(yaml) == ["keys[0]", "keys[1]", "keys[2].key_sha256"])
    }

    @Test func keyNamingMissingGroup() {
        let yaml = minimal + """

            groups:
              - {name: g, models: ["*"]}
            keys:
              - {name: a, key: k, groups: [g, nobody]}
            """
        #expect(fields(yaml) == ["keys[0].groups[1]"])
    }

    @Test func badYAMLSyntax() {
        let found = problems("providers:\n  - name: [unclosed\nmodels: []\n")
        #expect(found.map(\.field) == ["(yaml)"])
        #expect(found[0].message.contains("line "))
        #expect(fields("providers: 1\nproviders: 2\n") == ["(yaml)"])  // duplicate keys
    }

    @Test func wrongTypeForThreads() {
        let found = problems("server: {threads: two}\n" + minimal)
        #expect(found.map(\.field) == ["server.threads"])
        #expect(found[0].message == "expected an integer, got the string \"two\"")
        #expect(fields("server: {threads: \"2\"}\n" + minimal) == ["server.threads"])
        #expect(fields("server: {threads: 2.5}\n" + minimal) == ["server.threads"])
        #expect(fields("server: {listen: {a: 1}}\n" + minimal) == ["server.listen"])
    }

    @Test func duplicateNames() {
        let found = problems(minimal + "\n  - {name: m, deployments: [{provider: mock}]}")
        #expect(found.map(\.field) == ["models[1].name"])
        #expect(found[0].message.contains("models[0].name"))
        let providers = minimal.replacingOccurrences(
            of: "models:", with: "  - {name: mock, base_url: \"http://h\"}\nmodels:")
        #expect(fields(providers) == ["providers[1].name"])
    }

    @Test func maxConnectionsZero() {
        let yaml = minimal.replacingOccurrences(of: "/v1\"}", with: "/v1\", max_connections: 0}")
        #expect(fields(yaml) == ["providers[0].max_connections"])
    }

    @Test func emptyOrMissingProvidersAndModels() {
        #expect(fields("") == ["providers", "models"])
        #expect(fields("providers: []\nmodels: []\n") == ["providers", "models"])
        #expect(fields("- a\n") == ["(root)", "providers", "models"])
        #expect(fields("providers:\n  - {name: mock, base_url: \"http://h\"}\nmodels:\n  - {name: m, deployments: []}")
            == ["models[0].deployments"])
    }

    @Test func protocolMustMatchScheme() {
        let h2 = minimal.replacingOccurrences(of: "/v1\"}", with: "/v1\", protocol: h2}")
        #expect(fields(h2) == ["providers[0].protocol"])
        let h2c = minimal.replacingOccurrences(of: "\"http://127.0.0.1:9000/v1\"}", with: "\"https://h\", protocol: h2c}")
        #expect(fields(h2c) == ["providers[0].protocol"])
        #expect(fields(minimal.replacingOccurrences(of: "/v1\"}", with: "/v1\", kind: gemini}")) == ["providers[0].kind"])
    }

    @Test func budgetsLimitsPricesAndDates() {
        let yaml = minimal.replacingOccurrences(of: "{name: m,", with: "{name: m, price: {input_per_mtok: -1},") + """

            groups:
              - {name: g, budget: {usd: 5, period: weekly}, limits: {rpm: 0, tpm: x}}
              - {name: h, budget: {usd: 1}}
            keys:
              - {name: k, key: a, expires: 2027-02-30}
              - {name: l, key: b, expires: "tomorrow"}
              - {name: k, key: a}
            """
        #expect(fields(yaml) == [
            "models[0].price.input_per_mtok",
            "groups[0].budget.period", "groups[0].limits.rpm", "groups[0].limits.tpm",
            "groups[1].budget.period",
            "keys[0].expires", "keys[1].expires",
            "keys[2].name", "keys[2].key",
        ])
    }

    @Test func everyProblemIsReportedAtOnce() throws {
        let yaml = """
            server: {threads: 0, max_body_bytes: big}
            providers:
              - {name: p, base_url: "gopher://x"}
            models:
              - {name: m, routing: fast, deployments: [{provider: q, weight: -2}]}
            """
        let error = try #require(throws: ConfigError.self) {
            try GatewayConfiguration.parse(yaml: yaml, environment: [:])
        }
        #expect(error.problems.map(\.field) == [
            "server.threads", "server.max_body_bytes", "providers[0].base_url",
            "models[0].routing", "models[0].deployments[0].provider", "models[0].deployments[0].weight",
        ])
        let lines = error.description.split(separator: "\n")
        #expect(lines.count == 6)
        #expect(lines[0] == "server.threads: must be at least 1, got 0")
    }

    @Test func unreadableFileNamesThePath() throws {
        let error = try #require(throws: ConfigError.self) {
            try GatewayConfiguration.load(path: "/nonexistent/gateway.yaml", environment: [:])
        }
        #expect(error.problems.map(\.field) == ["/nonexistent/gateway.yaml"])
    }
}

@Suite struct Glob {
    @Test(arguments: [
        ("gpt-4o-mini", "gpt-4o-mini", true),
        ("gpt-4o-mini", "gpt-4o", false),
        ("gpt-4o", "gpt-4o-mini", false),
        ("*", "anything", true),
        ("*", "", true),
        ("", "", true),
        ("", "a", false),
        ("embed-*", "embed-small", true),
        ("embed-*", "embed-", true),
        ("embed-*", "embedding", false),
        ("*-mini", "gpt-4o-mini", true),
        ("*-mini", "gpt-4o-mini-2", false),
        ("gpt-*-mini", "gpt-4o-mini", true),
        ("gpt-*-mini", "gpt--mini", true),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "abcb", false),
        ("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ("**", "x", true),
        ("GPT-*", "gpt-4o", false),
        ("modèle-*", "modèle-ü", true),
    ])
    func matches(pattern: String, name: String, expected: Bool) {
        #expect(globMatch(pattern: pattern, name: name) == expected)
    }
}
