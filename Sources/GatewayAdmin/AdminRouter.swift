import GatewayConfig
import Synchronization

/// One admin request, complete with its body.
struct AdminRequest: Sendable {
    var method: String
    /// The request target as sent: path and query.
    var target: String
    var authorization: String?
    var body: [UInt8]
}

/// One admin response; the connection adds the framing headers.
struct AdminResponse: Sendable {
    var status: Int
    var contentType: String?
    var body: [UInt8]
    var headers: [(String, String)] = []

    static func json(_ status: Int, _ text: String, headers: [(String, String)] = []) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: Array(text.utf8), headers: headers)
    }

    static func error(_ error: AdminError, headers: [(String, String)] = []) -> AdminResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("error")
        writer.beginObject()
        writer.field("message", error.message)
        writer.field("type", error.type)
        writer.field("code", error.code)
        if let param = error.param { writer.field("param", param) }
        writer.endObject()
        writer.endObject()
        return .json(error.status, writer.text, headers: headers)
    }

    static func methodNotAllowed(_ allowed: String) -> AdminResponse {
        .error(AdminError(status: 405, code: "method_not_allowed", message: "this endpoint takes \(allowed)"),
               headers: [("allow", allowed)])
    }

    static let notFound = AdminResponse.error(.notFound("no such endpoint"))
}

/// Routes admin requests to the backend: checks the admin key, validates the input, and renders the
/// output. Pure request-in, response-out; the connection does the HTTP.
final class AdminRouter: Sendable {
    let backend: any AdminBackend
    private let secret: Mutex<[UInt8]?>
    private let keyEnv: String?

    /// - Parameters:
    ///   - adminKey: the bearer key; nil or empty disables the `/admin/` routes (503).
    ///   - keyEnv: the variable the key comes from, named in the 503's message.
    init(backend: any AdminBackend, adminKey: String?, keyEnv: String? = nil) {
        self.backend = backend
        self.keyEnv = keyEnv
        secret = Mutex(AdminRouter.bytes(of: adminKey))
    }

    func setAdminKey(_ key: String?) {
        let bytes = AdminRouter.bytes(of: key)
        secret.withLock { $0 = bytes }
    }

    private static func bytes(of key: String?) -> [UInt8]? {
        guard let key, !key.isEmpty else { return nil }
        return Array(key.utf8)
    }

    /// `/health` and `/ready` are answered on the listener's thread, so that a slow admin call (a
    /// year-long usage report) never delays a probe. Everything else goes to the worker thread.
    static func runsInline(_ request: AdminRequest) -> Bool {
        let path = AdminRouter.path(of: request.target)
        return path == "/health" || path == "/ready"
    }

    static func path(of target: String) -> Substring {
        let path = target.prefix { $0 != "?" }
        return path.count > 1 && path.hasSuffix("/") ? path.dropLast() : path
    }

    func handle(_ request: AdminRequest) -> AdminResponse {
        let path = AdminRouter.path(of: request.target)
        // HEAD is GET without the body; the connection drops the body.
        let method = request.method == "HEAD" ? "GET" : request.method
        switch path {
        case "/health":
            guard method == "GET" else { return .methodNotAllowed("GET, HEAD") }
            return .json(200, #"{"status":"ok"}"#)
        case "/ready":
            guard method == "GET" else { return .methodNotAllowed("GET, HEAD") }
            return backend.isReady ? .json(200, #"{"status":"ready"}"#) : .json(503, #"{"status":"not_ready"}"#)
        case "/metrics":
            // No key, like /health: Prometheus scrapers rarely carry one, and the metrics hold no secrets.
            // Bind admin.listen to a private address to keep them in.
            guard method == "GET" else { return .methodNotAllowed("GET, HEAD") }
            return AdminResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                 body: Array(backend.metricsText().utf8))
        default:
            break
        }
        guard path == "/admin" || path.hasPrefix("/admin/") else { return .notFound }
        if let refusal = authenticate(request.authorization) { return refusal }
        do {
            return try route(method, path, AdminRouter.query(of: request.target), request.body)
        } catch let error as AdminError {
            return .error(error)
        } catch {
            return .error(AdminError(status: 500, code: "internal_error", message: "\(error)"))
        }
    }

    // MARK: Authentication

    /// nil when the request carries the admin key; otherwise the refusal.
    private func authenticate(_ authorization: String?) -> AdminResponse? {
        guard let secret = secret.withLock({ $0 }) else {
            let variable = keyEnv.map { " (and put the key in \($0))" } ?? ""
            return .error(AdminError(status: 503, code: "admin_disabled",
                                     message: "admin API disabled: set admin.key_env\(variable)"))
        }
        let challenge = [("www-authenticate", "Bearer realm=\"gateway-admin\"")]
        guard let authorization, let token = AdminRouter.bearerToken(authorization) else {
            return .error(AdminError(status: 401, code: "invalid_api_key",
                                     message: "missing admin key: send 'Authorization: Bearer <admin key>'"), headers: challenge)
        }
        guard ConstantTime.equals(Array(token.utf8), secret) else {
            return .error(AdminError(status: 401, code: "invalid_api_key", message: "invalid admin key"), headers: challenge)
        }
        return nil
    }

    /// The token of "Bearer TOKEN" (the scheme in any case), or nil.
    static func bearerToken(_ value: String) -> Substring? {
        let trimmed = value.drop { $0 == " " }
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        let token = trimmed.dropFirst(7).drop { $0 == " " }
        let end = token.lastIndex { $0 != " " }.map { token.index(after: $0) } ?? token.startIndex
        let result = token[..<end]
        return result.isEmpty ? nil : result
    }

    // MARK: Routes

    private func route(_ method: String, _ path: Substring, _ query: () throws -> [(String, String)], _ body: [UInt8]) throws -> AdminResponse {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2)
        let parts = try segments.map { try AdminRouter.percentDecode($0) }
        switch (parts.first, parts.count) {
        case ("keys", 1):
            switch method {
            case "GET": return try listKeys()
            case "POST": return try createKey(body)
            default: return .methodNotAllowed("GET, POST")
            }
        case ("keys", 2):
            switch method {
            case "GET": return try getKey(parts[1])
            case "DELETE": return try revokeKey(parts[1])
            default: return .methodNotAllowed("GET, DELETE")
            }
        case ("groups", 1):
            switch method {
            case "GET": return try listGroups()
            case "POST": return try createGroup(body)
            default: return .methodNotAllowed("GET, POST")
            }
        case ("groups", 2):
            switch method {
            case "GET": return try getGroup(parts[1])
            case "PUT": return try putGroup(parts[1], body)
            case "DELETE": return try deleteGroup(parts[1])
            default: return .methodNotAllowed("GET, PUT, DELETE")
            }
        case ("usage", 1):
            guard method == "GET" else { return .methodNotAllowed("GET") }
            return .json(200, try backend.usageJSON(try AdminRouter.usageQuery(try query())))
        case ("logs", 1):
            guard method == "GET" else { return .methodNotAllowed("GET") }
            return .json(200, try backend.logsJSON(try AdminRouter.logQuery(try query())))
        case ("reload", 1):
            guard method == "POST" else { return .methodNotAllowed("POST") }
            return .json(200, try backend.reload())
        default:
            return .notFound
        }
    }

    private func listKeys() throws -> AdminResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("object", "list")
        writer.key("data")
        writer.beginArray()
        for key in try backend.listKeys() { AdminRender.key(key, secret: nil, into: &writer) }
        writer.endArray()
        writer.endObject()
        return .json(200, writer.text)
    }

    private func getKey(_ id: String) throws -> AdminResponse {
        guard let key = try backend.listKeys().first(where: { $0.id == id }) else {
            throw AdminError.notFound("no key with id '\(id)'")
        }
        var writer = JSONWriter()
        AdminRender.key(key, secret: nil, into: &writer)
        return .json(200, writer.text)
    }

    private func createKey(_ body: [UInt8]) throws -> AdminResponse {
        let request = try AdminValidation.keyRequest(try AdminValidation.object(body), now: AdminValidation.nowSeconds())
        let created = try backend.createKey(request)
        var writer = JSONWriter()
        AdminRender.key(created.info, secret: created.key, into: &writer)
        return .json(201, writer.text, headers: [("location", "/admin/keys/" + AdminRouter.percentEncode(created.info.id))])
    }

    private func revokeKey(_ id: String) throws -> AdminResponse {
        guard try backend.revokeKey(id: id) else { throw AdminError.notFound("no key with id '\(id)'") }
        return AdminResponse(status: 204, contentType: nil, body: [])
    }

    private func listGroups() throws -> AdminResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("object", "list")
        writer.key("data")
        writer.beginArray()
        for group in try backend.listGroups() { AdminRender.group(group, into: &writer) }
        writer.endArray()
        writer.endObject()
        return .json(200, writer.text)
    }

    private func getGroup(_ name: String) throws -> AdminResponse {
        guard let group = try backend.getGroup(name: name) else { throw AdminError.notFound("no group named '\(name)'") }
        var writer = JSONWriter()
        AdminRender.group(group, into: &writer)
        return .json(200, writer.text)
    }

    private func createGroup(_ body: [UInt8]) throws -> AdminResponse {
        let group = try AdminValidation.group(try AdminValidation.object(body), pathName: nil)
        if try backend.getGroup(name: group.name) != nil {
            throw AdminError.conflict("a group named '\(group.name)' exists already: PUT /admin/groups/\(group.name) changes it")
        }
        try backend.putGroup(group)
        return groupResponse(201, group)
    }

    private func putGroup(_ name: String, _ body: [UInt8]) throws -> AdminResponse {
        let group = try AdminValidation.group(try AdminValidation.object(body), pathName: name)
        let existed = try backend.getGroup(name: name) != nil
        try backend.putGroup(group)
        return groupResponse(existed ? 200 : 201, group)
    }

    private func groupResponse(_ status: Int, _ group: AdminGroup) -> AdminResponse {
        let stored = (try? backend.getGroup(name: group.name)) ?? nil
        var writer = JSONWriter()
        AdminRender.group(stored ?? group, into: &writer)
        return .json(status, writer.text, headers: [("location", "/admin/groups/" + AdminRouter.percentEncode(group.name))])
    }

    private func deleteGroup(_ name: String) throws -> AdminResponse {
        guard try backend.deleteGroup(name: name) else { throw AdminError.notFound("no group named '\(name)'") }
        return AdminResponse(status: 204, contentType: nil, body: [])
    }

    // MARK: Queries

    static func usageQuery(_ parameters: [(String, String)]) throws -> AdminUsageQuery {
        try AdminValidation.onlyKnown(parameters, ["by", "since", "until"])
        var query = AdminUsageQuery(by: .group)
        if let by = AdminValidation.value(parameters, "by") {
            guard let grouping = AdminUsageGrouping(rawValue: by) else {
                throw AdminError.invalid("'by' must be one of group, key, model, tag; got '\(by)'", param: "by")
            }
            query.by = grouping
        }
        (query.since, query.until) = try AdminValidation.range(parameters)
        return query
    }

    static func logQuery(_ parameters: [(String, String)]) throws -> AdminLogQuery {
        try AdminValidation.onlyKnown(parameters, ["limit", "key", "model", "status", "since", "until"])
        var query = AdminLogQuery()
        if let text = AdminValidation.value(parameters, "limit") {
            guard let limit = Int(text), limit >= 1, limit <= AdminLogQuery.maxLimit else {
                throw AdminError.invalid("'limit' must be an integer from 1 to \(AdminLogQuery.maxLimit); got '\(text)'", param: "limit")
            }
            query.limit = limit
        }
        query.key = try AdminValidation.nonEmpty(parameters, "key")
        query.model = try AdminValidation.nonEmpty(parameters, "model")
        if let text = AdminValidation.value(parameters, "status") {
            guard let status = Int(text), (100...599).contains(status) else {
                throw AdminError.invalid("'status' must be an HTTP status from 100 to 599; got '\(text)'", param: "status")
            }
            query.status = status
        }
        (query.since, query.until) = try AdminValidation.range(parameters)
        return query
    }

    /// The query string's parameters, decoded (`+` is a space), in order. Parsed lazily: most routes take none.
    static func query(of target: String) -> () throws -> [(String, String)] {
        {
            guard let mark = target.firstIndex(of: "?") else { return [] }
            var result: [(String, String)] = []
            for pair in target[target.index(after: mark)...].split(separator: "&") where !pair.isEmpty {
                let name = pair.prefix { $0 != "=" }
                let value = name.count < pair.count ? pair[pair.index(after: name.endIndex)...] : ""
                result.append((try percentDecode(name, plusIsSpace: true), try percentDecode(value, plusIsSpace: true)))
            }
            return result
        }
    }

    static func percentDecode(_ text: Substring, plusIsSpace: Bool = false) throws -> String {
        guard text.contains("%") || (plusIsSpace && text.contains("+")) else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    throw AdminError.invalid("malformed percent-encoding in the request target")
                }
                bytes.append(high << 4 | low)
            } else if plusIsSpace && byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw AdminError.invalid("the request target is not UTF-8 once decoded")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Percent-encodes everything but unreserved characters, for a path segment.
    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count < 2 ? "0" : "") + hex
            }
        }
        return out
    }
}
