// Walks the YAML node tree by hand. Codable would stop at the first error and name fields poorly;
// here every check records a problem against its exact path ("models[1].deployments[0].provider")
// and carries on with a default, so one run of `gateway check` reports everything.
import Foundation
import Yams

/// One parse. A class so the section readers can share the problem list without inout plumbing.
final class ConfigParser {
    private(set) var problems: [ConfigError.Problem] = []
    /// Not errors, but worth a look: `gateway check` prints them and `serve` logs them.
    private(set) var warnings: [ConfigError.Problem] = []
    private let environment: [String: String]

    init(environment: [String: String]) {
        self.environment = environment
    }

    func configuration(from root: Node?) -> GatewayConfiguration {
        // An empty document reads as an empty mapping, which then reports the required sections.
        let top = root.flatMap { isNull($0) ? nil : $0 }.flatMap {
            fields($0, at: "", allowed: ["server", "admin", "store", "providers", "models", "groups", "keys"])
        } ?? Fields(path: "", values: [:])

        let server = serverSettings(top)
        let admin = adminSettings(top)
        let store = storeSettings(top)
        let (providers, providerNames) = providerList(top)
        let models = modelList(top, providerNames: providerNames)
        let (groups, groupNames) = groupList(top)
        // A pattern that matches no model may be a typo, or a place kept for models to come (DESIGN.md's
        // own example allows "embed-*" with no embedding model): a warning, not an error.
        for (i, group) in groups.enumerated() {
            for (j, pattern) in group.models.enumerated() where !models.contains(where: { globMatch(pattern: pattern, name: $0.name) }) {
                warnings.append(.init(field: "groups[\(i)].models[\(j)]", message: "the pattern \"\(pattern)\" matches no model"))
            }
        }
        let keys = keyList(top, groupNames: groupNames)
        return GatewayConfiguration(
            server: server, admin: admin, store: store,
            providers: providers, models: models, groups: groups, keys: keys
        )
    }

    // MARK: - sections

    private func serverSettings(_ top: Fields) -> ServerSettings {
        var server = ServerSettings()
        guard let f = section(top, "server", allowed: ["listen", "threads", "tls", "max_body_bytes", "timeouts"])
        else { return server }

        if let node = f["listen"] {
            // A single address is accepted as well as a list, as `admin.listen` is a single string.
            let items: [(node: Node, path: String)]
            if case .sequence = node { items = list(f, "listen") ?? [] } else { items = [(node, f.path("listen"))] }
            if items.isEmpty { fail(f.path("listen"), "must list at least one address") }
            var addresses: [(ListenAddress, String)] = []
            for (item, path) in items {
                guard let text = nonEmptyString(item, at: path) else { continue }
                do { addresses.append((try parseListenAddress(text), path)) } catch { fail(path, error.message) }
            }
            if !addresses.isEmpty { server.listen = addresses.map(\.0) }
            if f["tls"] == nil, let (_, path) = addresses.first(where: { $0.0.tls }) {
                fail(f.path("tls"), "is required because \(path) is tls:// (give cert and key)")
            }
        }
        server.threads = int(f, "threads", atLeast: 1)
        if let t = section(f, "tls", allowed: ["cert", "key"]) {
            require(t, "cert", "key")
            if let cert = string(t, "cert"), let key = string(t, "key") { server.tls = TLSFiles(cert: cert, key: key) }
        }
        server.maxBodyBytes = int(f, "max_body_bytes", atLeast: 1) ?? server.maxBodyBytes
        let timeoutKeys = ["header_ms", "idle_ms", "upstream_connect_ms", "upstream_response_ms", "drain_ms"]
        if let t = section(f, "timeouts", allowed: timeoutKeys) {
            var timeouts = server.timeouts
            timeouts.headerMs = int(t, "header_ms", atLeast: 1) ?? timeouts.headerMs
            timeouts.idleMs = int(t, "idle_ms", atLeast: 1) ?? timeouts.idleMs
            timeouts.upstreamConnectMs = int(t, "upstream_connect_ms", atLeast: 1) ?? timeouts.upstreamConnectMs
            timeouts.upstreamResponseMs = int(t, "upstream_response_ms", atLeast: 1) ?? timeouts.upstreamResponseMs
            timeouts.drainMs = int(t, "drain_ms", atLeast: 1) ?? timeouts.drainMs
            server.timeouts = timeouts
        }
        return server
    }

    private func adminSettings(_ top: Fields) -> AdminSettings? {
        guard let f = section(top, "admin", allowed: ["listen", "key_env"]) else { return nil }
        var admin = AdminSettings()
        if let text = string(f, "listen") {
            do {
                let address = try parseListenAddress(text)
                if address.tls {
                    fail(f.path("listen"), "the admin listener serves plain HTTP; drop tls://")
                } else {
                    admin.listen = address.hostPort
                }
            } catch {
                fail(f.path("listen"), error.message)
            }
        }
        admin.keyEnv = string(f, "key_env")
        admin.key = admin.keyEnv.flatMap(resolve)
        return admin
    }

    private func storeSettings(_ top: Fields) -> StoreSettings {
        guard let f = section(top, "store", allowed: ["sqlite", "postgres", "redis", "retention_days"]) else { return StoreSettings() }
        let sqlite = string(f, "sqlite")
        let postgres = string(f, "postgres")
        let redis = string(f, "redis")
        if let postgres, !hasScheme(postgres, ["postgres", "postgresql"]) {
            fail(f.path("postgres"), "expected a postgres:// or postgresql:// URL, got \"\(postgres)\"")
        }
        if let redis, !hasScheme(redis, ["redis", "rediss"]) {
            fail(f.path("redis"), "expected a redis:// or rediss:// URL, got \"\(redis)\"")
        }
        if sqlite != nil, postgres != nil {
            fail(f.path("postgres"), "set either sqlite or postgres as the store, not both")
        }
        // Audit records need somewhere to go: without postgres, the embedded SQLite file is used.
        return StoreSettings(
            sqlite: sqlite ?? (postgres == nil ? "gateway.db" : nil), postgres: postgres, redis: redis,
            retentionDays: int(f, "retention_days", atLeast: 1), configured: true)
    }

    private func providerList(_ top: Fields) -> ([ProviderSettings], Set<String>) {
        require(top, "providers")
        guard let items = list(top, "providers") else { return ([], []) }
        if items.isEmpty { fail(top.path("providers"), "must list at least one provider") }
        var providers: [ProviderSettings] = []
        var names: [(String, String)] = []
        let allowed = [
            "name", "kind", "base_url", "api_key_env", "api_key_header", "query", "protocol", "max_connections", "health_check",
            "ca_file", "insecure_skip_verify",
        ]
        for (node, path) in items {
            guard let f = fields(node, at: path, allowed: allowed) else { continue }
            require(f, "name", "base_url")
            let name = string(f, "name") ?? ""
            names.append((name, f.path("name")))
            var provider = ProviderSettings(
                name: name, kind: choice(f, "kind") ?? .openai,
                baseURL: "", tls: false, host: "", port: 0, basePath: ""
            )
            var urlIsValid = false
            if let text = string(f, "base_url") {
                do {
                    let url = try parseBaseURL(text)
                    (provider.baseURL, provider.tls, provider.host, provider.port, provider.basePath) =
                        (url.normalized, url.tls, url.host, url.port, url.path)
                    urlIsValid = true
                } catch {
                    fail(f.path("base_url"), error.message)
                }
            }
            provider.apiKeyEnv = string(f, "api_key_env")
            if let header = string(f, "api_key_header") {
                // A header name is a token: no spaces, separators or control bytes (RFC 9110 5.1).
                let separators = Set("()<>@,;:\\\"/[]?={} \t".utf8)
                if header.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F || separators.contains($0) }) {
                    fail(f.path("api_key_header"), "\"\(header)\" is not a valid header name")
                } else {
                    provider.apiKeyHeader = header.lowercased()
                }
            }
            if let query = string(f, "query") {
                if query.hasPrefix("?") || query.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "#") }) {
                    fail(f.path("query"), "expected name=value pairs without '?', spaces or '#', got \"\(query)\"")
                } else {
                    provider.query = query
                }
            }
            provider.apiKey = provider.apiKeyEnv.flatMap(resolve)
            provider.upstreamProtocol = choice(f, "protocol") ?? .h1
            if urlIsValid {
                switch provider.upstreamProtocol {
                case .h2 where !provider.tls:
                    fail(f.path("protocol"), "h2 needs an https base_url (use h2c for cleartext HTTP/2)")
                case .h2c where provider.tls:
                    fail(f.path("protocol"), "h2c is cleartext and needs an http base_url (use h2 for https)")
                default: break
                }
            }
            provider.caFile = string(f, "ca_file")
            provider.insecureSkipVerify = boolean(f, "insecure_skip_verify") ?? false
            if urlIsValid && !provider.tls {
                if f["ca_file"] != nil { fail(f.path("ca_file"), "needs an https base_url") }
                if f["insecure_skip_verify"] != nil { fail(f.path("insecure_skip_verify"), "needs an https base_url") }
            } else if provider.insecureSkipVerify {
                if f["ca_file"] != nil { fail(f.path("ca_file"), "has no use with insecure_skip_verify: true") }
                warnings.append(.init(
                    field: f.path("insecure_skip_verify"),
                    message: "the upstream's certificate and host name are not verified"))
            }
            provider.maxConnections = int(f, "max_connections", atLeast: 1) ?? provider.maxConnections
            if let h = section(f, "health_check", allowed: ["path", "interval_ms", "timeout_ms"]) {
                require(h, "path")
                let path = string(h, "path") ?? "/"
                if !path.hasPrefix("/") || path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
                    fail(h.path("path"), "expected an absolute path without spaces or control bytes, got \"\(path)\"")
                }
                var check = HealthCheck(path: path)
                check.intervalMs = int(h, "interval_ms", atLeast: 100) ?? check.intervalMs
                check.timeoutMs = int(h, "timeout_ms", atLeast: 10) ?? check.timeoutMs
                provider.healthCheck = check
            }
            providers.append(provider)
        }
        checkUnique(names, what: "provider")
        return (providers, Set(names.map(\.0)))
    }

    private func modelList(_ top: Fields, providerNames: Set<String>) -> [ModelSettings] {
        require(top, "models")
        guard let items = list(top, "models") else { return [] }
        if items.isEmpty { fail(top.path("models"), "must list at least one model") }
        var models: [ModelSettings] = []
        var names: [(String, String)] = []
        var fallbacks: [(owner: String, name: String, path: String)] = []
        var aliases: [(String, String)] = []
        for (node, path) in items {
            let allowed = ["name", "aliases", "price", "routing", "deployments", "fallbacks", "retry", "cooldown"]
            guard let f = fields(node, at: path, allowed: allowed) else { continue }
            require(f, "name", "deployments")
            let name = string(f, "name") ?? ""
            names.append((name, f.path("name")))
            var model = ModelSettings(name: name, routing: choice(f, "routing") ?? .weighted, deployments: [])
            if let p = section(f, "price", allowed: ["input_per_mtok", "output_per_mtok"]) {
                // A missing side is free: embedding models have no output tokens.
                model.price = Price(
                    inputPerMTok: money(p, "input_per_mtok") ?? 0,
                    outputPerMTok: money(p, "output_per_mtok") ?? 0
                )
            }
            if let deployments = list(f, "deployments") {
                if deployments.isEmpty { fail(f.path("deployments"), "must list at least one deployment") }
                for (dnode, dpath) in deployments {
                    guard let d = fields(dnode, at: dpath, allowed: ["provider", "model", "weight"]) else { continue }
                    require(d, "provider")
                    let provider = string(d, "provider") ?? ""
                    if !provider.isEmpty, !providerNames.contains(provider) {
                        fail(d.path("provider"), "no provider is named \"\(provider)\"\(known(providerNames))")
                    }
                    model.deployments.append(DeploymentSettings(
                        provider: provider,
                        model: string(d, "model") ?? name,
                        weight: int(d, "weight", atLeast: 1) ?? 1
                    ))
                }
            }
            if model.deployments.count > 64 { fail(f.path("deployments"), "at most 64 deployments per model") }
            for (fallback, fpath) in stringList(f, "fallbacks") {
                model.fallbacks.append(fallback)
                fallbacks.append((name, fallback, fpath))
            }
            for (alias, apath) in stringList(f, "aliases") {
                model.aliases.append(alias)
                aliases.append((alias, apath))
            }
            if let r = section(f, "retry", allowed: ["attempts", "on", "backoff_ms", "max_backoff_ms", "retry_after_max_ms"]) {
                model.retry.attempts = int(r, "attempts", atLeast: 1) ?? model.retry.attempts
                if model.retry.attempts > 10 { fail(r.path("attempts"), "at most 10, got \(model.retry.attempts)") }
                if r["on"] != nil {
                    model.retry.on = []
                    for (text, cpath) in stringList(r, "on") {
                        if let condition = RetryCondition(rawValue: text) {
                            model.retry.on.insert(condition)
                        } else {
                            let options = RetryCondition.allCases.map(\.rawValue).joined(separator: ", ")
                            fail(cpath, "expected one of \(options), got \"\(text)\"")
                        }
                    }
                }
                model.retry.backoffMs = int(r, "backoff_ms", atLeast: 0) ?? model.retry.backoffMs
                model.retry.maxBackoffMs = int(r, "max_backoff_ms", atLeast: 0) ?? model.retry.maxBackoffMs
                model.retry.retryAfterMaxMs = int(r, "retry_after_max_ms", atLeast: 0) ?? model.retry.retryAfterMaxMs
            }
            if let c = section(f, "cooldown", allowed: ["failures", "window_ms", "duration_ms"]) {
                model.cooldown.failures = int(c, "failures", atLeast: 1) ?? model.cooldown.failures
                model.cooldown.windowMs = int(c, "window_ms", atLeast: 1) ?? model.cooldown.windowMs
                model.cooldown.durationMs = int(c, "duration_ms", atLeast: 1) ?? model.cooldown.durationMs
            }
            models.append(model)
        }
        // Aliases share the namespace of model names: a name means one thing.
        checkUnique(names + aliases, what: "model or alias")
        // Fallbacks may point forward in the list, so they are checked once every name is known.
        let modelNames = Set(names.map(\.0))
        for (owner, fallback, path) in fallbacks {
            if fallback == owner {
                fail(path, "a model cannot fall back to itself")
            } else if !modelNames.contains(fallback) {
                fail(path, "no model is named \"\(fallback)\"")
            }
        }
        return models
    }

    private func groupList(_ top: Fields) -> ([GroupSettings], Set<String>) {
        guard let items = list(top, "groups") else { return ([], []) }
        var groups: [GroupSettings] = []
        var names: [(String, String)] = []
        for (node, path) in items {
            guard let f = fields(node, at: path, allowed: ["name", "models", "budget", "limits", "log_bodies", "retention_days"])
            else { continue }
            require(f, "name")
            let name = string(f, "name") ?? ""
            names.append((name, f.path("name")))
            groups.append(GroupSettings(
                name: name,
                models: stringList(f, "models").map(\.value),
                budget: budget(f, "budget"),
                limits: limits(f, "limits"),
                logBodies: boolean(f, "log_bodies") ?? false,
                retentionDays: int(f, "retention_days", atLeast: 1)
            ))
        }
        checkUnique(names, what: "group")
        return (groups, Set(names.map(\.0)))
    }

    private func keyList(_ top: Fields, groupNames: Set<String>) -> [KeySettings] {
        guard let items = list(top, "keys") else { return [] }
        var keys: [KeySettings] = []
        var names: [(String, String)] = []
        var secrets: [(String, String)] = []  // the same secret under two names would make lookups ambiguous
        let allowed = ["name", "key_sha256", "key_env", "key", "groups", "limits", "budget", "expires"]
        let sources = ["key_sha256", "key_env", "key"]
        for (node, path) in items {
            guard let f = fields(node, at: path, allowed: allowed) else { continue }
            require(f, "name")
            let name = string(f, "name") ?? ""
            names.append((name, f.path("name")))

            let given = sources.filter { f[$0] != nil }
            if given.count != 1 {
                fail(path, given.isEmpty
                    ? "needs one of key_sha256, key_env, key"
                    : "set exactly one of key_sha256, key_env, key (found \(given.joined(separator: ", ")))")
            }
            var source = KeySource.plain("")
            if let hex = string(f, "key_sha256") {
                let lower = hex.lowercased()
                if lower.utf8.count == 64, lower.utf8.allSatisfy({ isHexDigit($0) }) {
                    source = .sha256Hex(lower)
                    secrets.append((lower, f.path("key_sha256")))
                } else {
                    fail(f.path("key_sha256"), "expected 64 hex characters (the SHA-256 of the key)")
                }
            } else if let variable = string(f, "key_env") {
                source = .environment(variable)
            } else if let plain = string(f, "key") {
                source = .plain(plain)
                secrets.append((plain, f.path("key")))
            }

            var groups: [String] = []
            for (group, gpath) in stringList(f, "groups") {
                if !groupNames.contains(group) { fail(gpath, "no group is named \"\(group)\"\(known(groupNames))") }
                groups.append(group)
            }
            var expires: String?
            if let node = f["expires"] {
                // Yams tags 2027-01-01 as a timestamp; the node keeps the text as written, which is what we want.
                if let text = nonEmptyString(node, at: f.path("expires")) {
                    if isCalendarDate(text) {
                        expires = text
                    } else {
                        fail(f.path("expires"), "expected a date YYYY-MM-DD, got \"\(text)\"")
                    }
                }
            }
            keys.append(KeySettings(
                name: name, source: source, groups: groups,
                limits: limits(f, "limits"), budget: budget(f, "budget"), expires: expires
            ))
        }
        checkUnique(names, what: "key")
        var seen: [String: String] = [:]
        for (secret, path) in secrets {
            if let first = seen[secret] { fail(path, "the same key as \(first)") } else { seen[secret] = path }
        }
        return keys
    }

    private func budget(_ f: Fields, _ key: String) -> Budget? {
        guard let b = section(f, key, allowed: ["usd", "period"]) else { return nil }
        require(b, "usd", "period")
        guard let usd = money(b, "usd"), let period: BudgetPeriod = choice(b, "period") else { return nil }
        return Budget(usd: usd, period: period)
    }

    private func limits(_ f: Fields, _ key: String) -> Limits? {
        guard let l = section(f, key, allowed: ["rpm", "tpm", "concurrency"]) else { return nil }
        return Limits(
            rpm: int(l, "rpm", atLeast: 1),
            tpm: int(l, "tpm", atLeast: 1),
            concurrency: int(l, "concurrency", atLeast: 1)
        )
    }

    // MARK: - node readers
    // Each reports its own problem and returns nil, so callers only supply the default.

    /// A mapping's fields by name. An explicit null (`key:` with nothing after it) reads as absent.
    struct Fields {
        let path: String
        let values: [String: Node]

        subscript(key: String) -> Node? {
            guard let node = values[key], !isNull(node) else { return nil }
            return node
        }

        func path(_ key: String) -> String { join(path, key) }
    }

    /// Reads a mapping, reporting each key outside `allowed` as an unknown field so typos do not pass silently.
    private func fields(_ node: Node, at path: String, allowed: [String]) -> Fields? {
        guard case .mapping(let mapping) = node else {
            fail(path.isEmpty ? "(root)" : path, "expected a mapping, got \(describe(node))")
            return nil
        }
        var values: [String: Node] = [:]
        for (key, value) in pairs(of: mapping, at: path) where values[key] == nil {
            if allowed.contains(key) {
                values[key] = value
            } else {
                fail(join(path, key), "unknown field (expected one of: \(allowed.joined(separator: ", ")))")
            }
        }
        return Fields(path: path, values: values)
    }

    /// The mapping's pairs with YAML merge keys (`<<: *defaults`) expanded; explicit keys come first and win.
    private func pairs(of mapping: Node.Mapping, at path: String) -> [(String, Node)] {
        var explicit: [(String, Node)] = []
        var merged: [(String, Node)] = []
        for (key, value) in mapping {
            if kind(key) == .merge {
                let sources: [Node] = value.sequence.map { Array($0) } ?? [value]
                for source in sources {
                    if case .mapping(let inner) = source {
                        merged += pairs(of: inner, at: path)
                    } else {
                        fail(join(path, "<<"), "a merge key needs a mapping or a list of them")
                    }
                }
            } else if case .scalar(let scalar) = key {
                explicit.append((scalar.string, value))
            } else {
                fail(path.isEmpty ? "(root)" : path, "field names must be strings, got \(describe(key))")
            }
        }
        return explicit + merged
    }

    private func section(_ f: Fields, _ key: String, allowed: [String]) -> Fields? {
        guard let node = f[key] else { return nil }
        return fields(node, at: f.path(key), allowed: allowed)
    }

    private func require(_ f: Fields, _ keys: String...) {
        for key in keys where f[key] == nil { fail(f.path(key), "is required") }
    }

    /// Any scalar reads as its text as written (`name: 2024` is the name "2024"); empty strings are refused.
    private func nonEmptyString(_ node: Node, at path: String) -> String? {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            fail(path, "expected a string, got \(describe(node))")
            return nil
        }
        guard !scalar.string.trimmingCharacters(in: .whitespaces).isEmpty else {
            fail(path, "must not be empty")
            return nil
        }
        return scalar.string
    }

    private func string(_ f: Fields, _ key: String) -> String? {
        f[key].flatMap { nonEmptyString($0, at: f.path(key)) }
    }

    private func stringList(_ f: Fields, _ key: String) -> [(value: String, path: String)] {
        (list(f, key) ?? []).compactMap { node, path in nonEmptyString(node, at: path).map { ($0, path) } }
    }

    private func list(_ f: Fields, _ key: String) -> [(node: Node, path: String)]? {
        guard let node = f[key] else { return nil }
        let path = f.path(key)
        guard case .sequence(let sequence) = node else {
            fail(path, "expected a list, got \(describe(node))")
            return nil
        }
        return sequence.enumerated().map { ($1, "\(path)[\($0)]") }
    }

    private func boolean(_ f: Fields, _ key: String) -> Bool? {
        guard let node = f[key] else { return nil }
        guard case .scalar(let scalar) = node, kind(node) == .bool, let value = Bool.construct(from: scalar) else {
            fail(f.path(key), "expected true or false, got \(describe(node))")
            return nil
        }
        return value
    }

    private func int(_ f: Fields, _ key: String, atLeast minimum: Int) -> Int? {
        guard let node = f[key] else { return nil }
        let path = f.path(key)
        guard case .scalar(let scalar) = node, kind(node) == .int else {
            fail(path, "expected an integer, got \(describe(node))")
            return nil
        }
        guard let value = Int.construct(from: scalar) else {
            fail(path, "\(scalar.string) is out of range")
            return nil
        }
        guard value >= minimum else {
            fail(path, "must be at least \(minimum), got \(value)")
            return nil
        }
        return value
    }

    /// Ints or floats, for money; never negative.
    private func money(_ f: Fields, _ key: String) -> Double? {
        guard let node = f[key] else { return nil }
        let path = f.path(key)
        guard case .scalar(let scalar) = node, kind(node) == .int || kind(node) == .float else {
            fail(path, "expected a number, got \(describe(node))")
            return nil
        }
        let value = kind(node) == .int ? Int.construct(from: scalar).map(Double.init) : Double.construct(from: scalar)
        guard let value, value.isFinite else {
            fail(path, "expected a finite number, got \(scalar.string)")
            return nil
        }
        guard value >= 0 else {
            fail(path, "must not be negative, got \(scalar.string)")
            return nil
        }
        return value
    }

    private func choice<E: RawRepresentable & CaseIterable>(_ f: Fields, _ key: String) -> E?
    where E.RawValue == String {
        guard let node = f[key], let text = nonEmptyString(node, at: f.path(key)) else { return nil }
        if let value = E(rawValue: text) { return value }
        let options = E.allCases.map(\.rawValue).joined(separator: ", ")
        fail(f.path(key), "expected one of \(options), got \"\(text)\"")
        return nil
    }

    // MARK: - checks

    private func checkUnique(_ names: [(name: String, path: String)], what: String) {
        var seen: [String: String] = [:]
        for (name, path) in names where !name.isEmpty {
            if let first = seen[name] {
                fail(path, "duplicate \(what) name \"\(name)\" (first at \(first))")
            } else {
                seen[name] = path
            }
        }
    }

    private func known(_ names: Set<String>) -> String {
        names.isEmpty ? "" : " (known: \(names.sorted().joined(separator: ", ")))"
    }

    private func resolve(_ variable: String) -> String? {
        guard let value = environment[variable], !value.isEmpty else { return nil }
        return value
    }

    private func fail(_ field: String, _ message: String) {
        problems.append(.init(field: field, message: message))
    }

    /// A short description of what was found, for "expected X, got Y" messages.
    private func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            switch kind(node) {
            case .null: return "null"
            case .bool: return "the boolean \(scalar.string)"
            case .int: return "the integer \(scalar.string)"
            case .float: return "the number \(scalar.string)"
            default: return "the string \"\(scalar.string)\""
            }
        }
    }

    // MARK: - YAML errors

    /// Yams's message on one line, with its line and column, for the "(yaml)" problem.
    static func describeYAMLError(_ error: any Error) -> String {
        guard let error = error as? YamlError else { return "\(error)" }
        switch error {
        case let .scanner(context, problem, mark, _),
             let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            var message = "line \(mark.line), column \(mark.column): \(problem)"
            if let context {
                message += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
            }
            return message
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return "line \(context.mark.line), column \(context.mark.column): duplicate key \(keys) in a mapping"
        default:
            return String(error.description.prefix { $0 != "\n" })
        }
    }
}

/// "providers[0]" + "name" → "providers[0].name"; the root's fields have no prefix.
private func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

/// The node's resolved tag (int, float, null, ...); `Tag.name` itself is internal to Yams.
private func kind(_ node: Node) -> Tag.Name { Tag.Name(rawValue: node.tag.rawValue) }

private func isNull(_ node: Node) -> Bool {
    if case .scalar = node, kind(node) == .null { return true }
    return false
}

private func isHexDigit(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
}

private func hasScheme(_ url: String, _ schemes: [String]) -> Bool {
    schemes.contains { url.lowercased().hasPrefix($0 + "://") }
}

/// "YYYY-MM-DD" naming a day that exists (2027-02-30 does not).
func isCalendarDate(_ text: String) -> Bool {
    let parts = text.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
          parts.allSatisfy({ $0.utf8.allSatisfy { (48...57).contains($0) } }),
          let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
          (1...12).contains(month)
    else { return false }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
    let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    return (1...days).contains(day)
}

// MARK: - addresses

/// Why an address or URL was refused; the message becomes the problem's.
struct AddressError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// "127.0.0.1:8080", "http://127.0.0.1:8080" or "tls://0.0.0.0:8443" ("https://" is read as "tls://").
func parseListenAddress(_ text: String) throws(AddressError) -> ListenAddress {
    var rest = Substring(text)
    var tls = false
    if let range = text.range(of: "://") {
        let scheme = text[..<range.lowerBound].lowercased()
        switch scheme {
        case "http": tls = false
        case "tls", "https": tls = true
        default: throw AddressError("unsupported scheme \"\(scheme)\" (use http:// or tls://)")
        }
        rest = text[range.upperBound...]
    }
    guard !rest.contains("/") else { throw AddressError("expected HOST:PORT, without a path, got \"\(text)\"") }
    let (host, port) = try splitHostPort(rest, defaultPort: nil, allowPortZero: true)
    let bracketed = host.contains(":") ? "[\(host)]" : host
    return ListenAddress(tls: tls, hostPort: "\(bracketed):\(port)")
}

/// A provider's base URL, taken apart.
struct BaseURL {
    var normalized: String
    var tls: Bool
    var host: String
    var port: Int
    var path: String
}

/// http or https; host IPv4, [IPv6] or a name; port defaults by scheme; the path prefix is kept without its
/// trailing slash, since request paths ("/chat/completions") are appended to it.
func parseBaseURL(_ text: String) throws(AddressError) -> BaseURL {
    guard let range = text.range(of: "://") else {
        throw AddressError("expected an absolute URL such as http://127.0.0.1:9000/v1, got \"\(text)\"")
    }
    let scheme = text[..<range.lowerBound].lowercased()
    guard scheme == "http" || scheme == "https" else {
        throw AddressError("the scheme must be http or https, got \"\(scheme)\"")
    }
    let rest = text[range.upperBound...]
    guard !rest.contains(where: { $0 == "?" || $0 == "#" || $0.isWhitespace }) else {
        throw AddressError("must not contain a query, a fragment or spaces")
    }
    let authority = rest.prefix { $0 != "/" }
    guard !authority.contains("@") else {
        throw AddressError("credentials do not belong in the URL; use api_key_env")
    }
    var path = String(rest[authority.endIndex...])
    while path.hasSuffix("/") { path.removeLast() }
    let tls = scheme == "https"
    let (host, port) = try splitHostPort(authority, defaultPort: tls ? 443 : 80, allowPortZero: false)
    return BaseURL(normalized: "\(scheme)://\(authority)\(path)", tls: tls, host: host, port: port, path: path)
}

/// Splits "host:port" or "[v6]:port" (or a bare host when `defaultPort` is given); the host comes back unbracketed.
private func splitHostPort(
    _ text: Substring, defaultPort: Int?, allowPortZero: Bool
) throws(AddressError) -> (host: String, port: Int) {
    let host: Substring
    let portText: Substring?
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]") else { throw AddressError("unclosed '[' in \"\(text)\"") }
        host = text[text.index(after: text.startIndex)..<close]
        let after = text[text.index(after: close)...]
        if after.isEmpty {
            portText = nil
        } else if after.hasPrefix(":") {
            portText = after.dropFirst()
        } else {
            throw AddressError("expected ':' and a port after ']' in \"\(text)\"")
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
            throw AddressError("\"\(host)\" is not an IPv6 address")
        }
    } else if let colon = text.lastIndex(of: ":") {
        host = text[..<colon]
        portText = text[text.index(after: colon)...]
        guard !host.contains(":") else { throw AddressError("IPv6 addresses need brackets, as in [::1]:8080") }
    } else {
        host = text
        portText = nil
    }
    if !text.hasPrefix("[") {
        guard !host.isEmpty else { throw AddressError("the host is missing in \"\(text)\"") }
        let valid = host.unicodeScalars.allSatisfy {
            ($0.properties.isAlphabetic && $0.isASCII) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" || $0 == "_"
        }
        guard valid else { throw AddressError("\"\(host)\" is not a valid host name or address") }
    }
    let port: Int
    if let portText {
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber),
              let value = Int(portText), value <= 65535, value > 0 || allowPortZero
        else { throw AddressError("\"\(portText)\" is not a valid port (\(allowPortZero ? 0 : 1)-65535)") }
        port = value
    } else if let defaultPort {
        port = defaultPort
    } else {
        throw AddressError("expected HOST:PORT, the port is missing in \"\(text)\"")
    }
    return (String(host), port)
}
