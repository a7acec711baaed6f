import GatewayConfig
import GatewayIO

/// Turns admin request bodies and query parameters into checked values. Every refusal names the field
/// (`param`) and says what was expected and what came.
enum AdminValidation {
    static let maxNameBytes = 128
    static let maxPatternBytes = 256

    static func nowSeconds() -> Int64 { Int64(Clock.realtimeNs() / 1_000_000_000) }

    /// The body as a JSON object.
    static func object(_ body: [UInt8]) throws -> JSONValue {
        guard !body.isEmpty else { throw AdminError.invalid("the request needs a JSON object body") }
        let value: JSONValue
        do {
            value = try JSONParser.parse(body)
        } catch {
            throw AdminError.invalid("the request body is not valid JSON: \(error)")
        }
        guard case .object = value else { throw AdminError.invalid("the request body must be a JSON object, not \(value.kindName)") }
        return value
    }

    /// `POST /admin/keys`: `{name, groups, limits?, budget?, expires?}`.
    static func keyRequest(_ body: JSONValue, now: Int64) throws -> AdminKeyRequest {
        try onlyKnown(body, ["name", "groups", "limits", "budget", "expires"], at: "")
        let name = try self.name(body["name"], param: "name")
        let groups = try names(body["groups"], param: "groups")
        guard !groups.isEmpty else { throw AdminError.invalid("'groups' must name at least one group", param: "groups") }
        var expires: AdminInstant?
        if let value = body["expires"], value != .null {
            guard case .string(let text) = value, let instant = AdminInstant.parse(text) else {
                throw AdminError.invalid("'expires' must be a date YYYY-MM-DD or an RFC 3339 time", param: "expires")
            }
            guard instant.unixSeconds > now else {
                throw AdminError.invalid("'expires' is in the past: \(text)", param: "expires")
            }
            expires = instant
        }
        return AdminKeyRequest(
            name: name, groups: groups, limits: try limits(body["limits"], param: "limits"),
            budget: try budget(body["budget"], param: "budget"), expires: expires)
    }

    /// `POST /admin/groups` and `PUT /admin/groups/{name}`: `{name, models, limits?, budget?, log_bodies?,
    /// retention_days?}`. On PUT the name comes from the path; a `name` in the body must match it.
    static func group(_ body: JSONValue, pathName: String?) throws -> AdminGroup {
        // "source" is what GET shows; it is accepted, so a group read can be written back, and ignored.
        try onlyKnown(body, ["name", "models", "limits", "budget", "log_bodies", "retention_days", "source"], at: "")
        let name: String
        if let pathName {
            name = try self.name(.string(pathName), param: "name")
            if let given = body["name"], given != .string(pathName) {
                throw AdminError.invalid("'name' in the body must match the path ('\(pathName)')", param: "name")
            }
        } else {
            name = try self.name(body["name"], param: "name")
        }
        guard let modelsValue = body["models"] else {
            throw AdminError.invalid("'models' is required: a list of model name patterns", param: "models")
        }
        guard case .array(let elements) = modelsValue else {
            throw AdminError.invalid("'models' must be an array of strings, not \(modelsValue.kindName)", param: "models")
        }
        var models: [String] = []
        for (i, element) in elements.enumerated() {
            guard case .string(let pattern) = element, !pattern.isEmpty, pattern.utf8.count <= maxPatternBytes,
                  !hasControl(pattern) else {
                throw AdminError.invalid("'models[\(i)]' must be a non-empty model name pattern", param: "models[\(i)]")
            }
            if !models.contains(pattern) { models.append(pattern) }
        }
        var logBodies: Bool?
        if let value = body["log_bodies"], value != .null {
            guard case .bool(let flag) = value else {
                throw AdminError.invalid("'log_bodies' must be true or false, not \(value.kindName)", param: "log_bodies")
            }
            logBodies = flag
        }
        var retentionDays: Int?
        if let value = body["retention_days"], value != .null {
            guard let days = value.integer, days >= 1, days <= 36_500 else {
                throw AdminError.invalid("'retention_days' must be an integer from 1 to 36500", param: "retention_days")
            }
            retentionDays = days
        }
        return AdminGroup(
            name: name, models: models, limits: try limits(body["limits"], param: "limits"),
            budget: try budget(body["budget"], param: "budget"), logBodies: logBodies, retentionDays: retentionDays)
    }

    /// `{rpm?, tpm?, concurrency?}`, each a positive integer or null; an empty object means no limits.
    static func limits(_ value: JSONValue?, param: String) throws -> Limits? {
        guard let value, value != .null else { return nil }
        guard case .object = value else {
            throw AdminError.invalid("'\(param)' must be an object {rpm, tpm, concurrency}, not \(value.kindName)", param: param)
        }
        try onlyKnown(value, ["rpm", "tpm", "concurrency"], at: param)
        func positive(_ field: String) throws -> Int? {
            guard let v = value[field], v != .null else { return nil }
            guard let number = v.integer, number >= 1 else {
                throw AdminError.invalid("'\(param).\(field)' must be a positive integer", param: "\(param).\(field)")
            }
            return number
        }
        let limits = Limits(rpm: try positive("rpm"), tpm: try positive("tpm"), concurrency: try positive("concurrency"))
        return limits == Limits() ? nil : limits
    }

    /// `{usd, period}`: a non-negative amount and daily, monthly or total.
    static func budget(_ value: JSONValue?, param: String) throws -> Budget? {
        guard let value, value != .null else { return nil }
        guard case .object = value else {
            throw AdminError.invalid("'\(param)' must be an object {usd, period}, not \(value.kindName)", param: param)
        }
        try onlyKnown(value, ["usd", "period"], at: param)
        guard let usd = value["usd"]?.double, usd.isFinite, usd >= 0 else {
            throw AdminError.invalid("'\(param).usd' must be a non-negative number of dollars", param: "\(param).usd")
        }
        let periods = BudgetPeriod.allCases.map(\.rawValue).joined(separator: ", ")
        guard case .string(let text)? = value["period"], let period = BudgetPeriod(rawValue: text) else {
            throw AdminError.invalid("'\(param).period' must be one of \(periods)", param: "\(param).period")
        }
        return Budget(usd: usd, period: period)
    }

    /// A key or group name: 1 to 128 bytes, no control characters, no '/', no surrounding spaces.
    static func name(_ value: JSONValue?, param: String) throws -> String {
        guard let value else { throw AdminError.invalid("'\(param)' is required", param: param) }
        guard case .string(let text) = value else {
            throw AdminError.invalid("'\(param)' must be a string, not \(value.kindName)", param: param)
        }
        guard !text.isEmpty, text.utf8.count <= maxNameBytes, !hasControl(text), !text.contains("/"),
              text.first != " ", text.last != " " else {
            throw AdminError.invalid(
                "'\(param)' must be 1 to \(maxNameBytes) bytes without '/', control characters or surrounding spaces",
                param: param)
        }
        return text
    }

    /// An array of names, duplicates dropped.
    static func names(_ value: JSONValue?, param: String) throws -> [String] {
        guard let value else { throw AdminError.invalid("'\(param)' is required", param: param) }
        guard case .array(let elements) = value else {
            throw AdminError.invalid("'\(param)' must be an array of strings, not \(value.kindName)", param: param)
        }
        var result: [String] = []
        for (i, element) in elements.enumerated() {
            let name = try self.name(element, param: "\(param)[\(i)]")
            if !result.contains(name) { result.append(name) }
        }
        return result
    }

    static func hasControl(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    /// Refuses members other than `allowed`: a misspelt field is an error, not silently ignored.
    static func onlyKnown(_ object: JSONValue, _ allowed: [String], at path: String) throws {
        guard case .object(let members) = object else { return }
        for (name, _) in members where !allowed.contains(name) {
            let field = path.isEmpty ? name : "\(path).\(name)"
            throw AdminError.invalid("unknown field '\(field)'; expected one of \(allowed.joined(separator: ", "))", param: field)
        }
    }

    // MARK: Query parameters

    static func onlyKnown(_ parameters: [(String, String)], _ allowed: [String]) throws {
        for (name, _) in parameters where !allowed.contains(name) {
            throw AdminError.invalid("unknown query parameter '\(name)'; expected \(allowed.joined(separator: ", "))", param: name)
        }
    }

    static func value(_ parameters: [(String, String)], _ name: String) -> String? {
        parameters.first { $0.0 == name }?.1
    }

    static func nonEmpty(_ parameters: [(String, String)], _ name: String) throws -> String? {
        guard let text = value(parameters, name) else { return nil }
        guard !text.isEmpty else { throw AdminError.invalid("'\(name)' is empty", param: name) }
        return text
    }

    /// `since` and `until`, each a date, an RFC 3339 time or Unix seconds, `since` not after `until`.
    static func range(_ parameters: [(String, String)]) throws -> (AdminInstant?, AdminInstant?) {
        func instant(_ name: String) throws -> AdminInstant? {
            guard let text = value(parameters, name) else { return nil }
            guard let instant = AdminInstant.parse(text) else {
                throw AdminError.invalid("'\(name)' must be a date YYYY-MM-DD, an RFC 3339 time or Unix seconds; got '\(text)'", param: name)
            }
            return instant
        }
        let since = try instant("since")
        let until = try instant("until")
        if let since, let until, since.unixSeconds > until.unixSeconds {
            throw AdminError.invalid("'since' (\(since.text)) is after 'until' (\(until.text))", param: "since")
        }
        return (since, until)
    }
}

/// Writes keys and groups as the admin API shows them.
enum AdminRender {
    /// A key; with `secret` (at creation only) the key itself follows the id.
    static func key(_ key: AdminKeyInfo, secret: String?, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("id", key.id)
        if let secret { writer.field("key", secret) }
        writer.field("name", key.name)
        writer.field("groups", strings: key.groups)
        limits(key.limits, into: &writer)
        budget(key.budget, into: &writer)
        writer.key("expires")
        if let expires = key.expires { writer.string(expires) } else { writer.null() }
        writer.key("created_at")
        if let created = key.createdAt { writer.string(UTC.format(unixSeconds: created)) } else { writer.null() }
        writer.field("revoked", key.revoked)
        writer.field("source", key.source)
        if let hint = key.hint { writer.field("hint", hint) }
        writer.endObject()
    }

    static func group(_ group: AdminGroup, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("name", group.name)
        writer.field("models", strings: group.models)
        limits(group.limits, into: &writer)
        budget(group.budget, into: &writer)
        writer.field("log_bodies", group.logBodies ?? false)
        writer.key("retention_days")
        if let days = group.retentionDays { writer.int(days) } else { writer.null() }
        if let source = group.source { writer.field("source", source) }
        writer.endObject()
    }

    private static func limits(_ limits: Limits?, into writer: inout JSONWriter) {
        writer.key("limits")
        guard let limits else { return writer.null() }
        writer.beginObject()
        if let rpm = limits.rpm { writer.field("rpm", rpm) }
        if let tpm = limits.tpm { writer.field("tpm", tpm) }
        if let concurrency = limits.concurrency { writer.field("concurrency", concurrency) }
        writer.endObject()
    }

    private static func budget(_ budget: Budget?, into writer: inout JSONWriter) {
        writer.key("budget")
        guard let budget else { return writer.null() }
        writer.beginObject()
        writer.field("usd", budget.usd)
        writer.field("period", budget.period.rawValue)
        writer.endObject()
    }
}
