/// One client request, as the audit log stores it (DESIGN.md, "Audit record").
///
/// Times: `startNs` and `endNs` are wall-clock nanoseconds since the Unix epoch; the durations are microseconds.
/// `overheadUs` is the gateway's own time (total minus upstream). Requests rejected by policy carry their status and
/// `errorCode` and zero tokens. `groups` holds group names, which never contain a comma; `tags` is the
/// `x-gateway-tags` text, `k=v,k=v`. The bodies are set only for groups with `log_bodies: true`.
public struct AuditRecord: Sendable, Equatable {
    // Identity.
    public var requestID: String
    public var keyID: String?
    public var keyName: String?
    public var groups: [String]
    public var tags: String
    public var clientAddress: String
    // Timing.
    public var startNs: Int64
    public var endNs: Int64
    public var totalLatencyUs: Int64
    public var upstreamLatencyUs: Int64
    public var overheadUs: Int64
    public var ttfbUs: Int64
    // Routing.
    public var requestedModel: String
    /// `provider/model`, empty when the request never reached a deployment.
    public var deployment: String
    public var attempts: Int
    /// The attempts that failed before the final one, "deployment cause elapsed" joined by "; " (nil: one attempt).
    public var attemptLog: String?
    // Outcome.
    public var status: Int
    public var errorCode: String?
    public var promptTokens: Int
    public var completionTokens: Int
    public var costMicroUSD: Int64
    public var streamed: Bool
    public var bytesIn: Int64
    public var bytesOut: Int64
    // Bodies, for groups that ask for them.
    public var requestBody: String?
    public var responseBody: String?

    /// Inlinable so that a caller in another module builds the record in place (otherwise it was built, copied and
    /// the first one destroyed: a retain and a release for each of its strings).
    @inlinable
    public init(
        requestID: String,
        keyID: String? = nil,
        keyName: String? = nil,
        groups: [String] = [],
        tags: String = "",
        clientAddress: String = "",
        startNs: Int64,
        endNs: Int64,
        totalLatencyUs: Int64 = 0,
        upstreamLatencyUs: Int64 = 0,
        overheadUs: Int64 = 0,
        ttfbUs: Int64 = 0,
        requestedModel: String = "",
        deployment: String = "",
        attempts: Int = 0,
        attemptLog: String? = nil,
        status: Int,
        errorCode: String? = nil,
        promptTokens: Int = 0,
        completionTokens: Int = 0,
        costMicroUSD: Int64 = 0,
        streamed: Bool = false,
        bytesIn: Int64 = 0,
        bytesOut: Int64 = 0,
        requestBody: String? = nil,
        responseBody: String? = nil
    ) {
        self.requestID = requestID
        self.keyID = keyID
        self.keyName = keyName
        self.groups = groups
        self.tags = tags
        self.clientAddress = clientAddress
        self.startNs = startNs
        self.endNs = endNs
        self.totalLatencyUs = totalLatencyUs
        self.upstreamLatencyUs = upstreamLatencyUs
        self.overheadUs = overheadUs
        self.ttfbUs = ttfbUs
        self.requestedModel = requestedModel
        self.deployment = deployment
        self.attempts = attempts
        self.attemptLog = attemptLog
        self.status = status
        self.errorCode = errorCode
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.costMicroUSD = costMicroUSD
        self.streamed = streamed
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.requestBody = requestBody
        self.responseBody = responseBody
    }

    /// The `k=v` pairs of `tags`, trimmed, empty entries skipped.
    public var tagPairs: [String] { AuditRecord.splitList(tags) }

    /// Splits comma-separated text into items with spaces trimmed, empty items skipped. Works on the UTF-8 bytes:
    /// the writer calls it for every tagged record.
    static func splitList(_ text: String) -> [String] {
        if text.isEmpty { return [] }
        var text = text
        return text.withUTF8 { bytes in
            var items: [String] = []
            var start = 0
            let comma = UInt8(ascii: ","), space = UInt8(ascii: " ")
            while start <= bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != comma { end += 1 }
                var low = start, high = end
                while low < high && bytes[low] == space { low += 1 }
                while high > low && bytes[high - 1] == space { high -= 1 }
                if high > low { items.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[low..<high]), as: UTF8.self)) }
                start = end + 1
            }
            return items
        }
    }
}

// MARK: - JSON (the spill file and `GET /admin/logs`)

extension AuditRecord {
    /// Writes the record as one JSON object with snake_case names. The spill file and the logs API share it.
    /// - Parameter includeBodies: false leaves the body fields out (the logs API's default).
    public func writeJSON(to json: inout JSONWriter, includeBodies: Bool = true) {
        json.beginObject()
        json.field("request_id", requestID)
        json.field("key_id", keyID)
        json.field("key_name", keyName)
        json.key("groups")
        json.beginArray()
        for group in groups { json.string(group) }
        json.endArray()
        json.field("tags", tags)
        json.field("client_address", clientAddress)
        json.field("start_ns", startNs)
        json.field("end_ns", endNs)
        json.field("start_time", UTCTime.format(unixNs: startNs))
        json.field("total_latency_us", totalLatencyUs)
        json.field("upstream_latency_us", upstreamLatencyUs)
        json.field("overhead_us", overheadUs)
        json.field("ttfb_us", ttfbUs)
        json.field("requested_model", requestedModel)
        json.field("deployment", deployment)
        json.field("attempts", attempts)
        if let attemptLog { json.field("attempt_log", attemptLog) }
        json.field("status", status)
        json.field("error_code", errorCode)
        json.field("prompt_tokens", promptTokens)
        json.field("completion_tokens", completionTokens)
        json.field("cost_micro_usd", costMicroUSD)
        json.key("cost_usd")
        json.micro(costMicroUSD)
        json.field("streamed", streamed)
        json.field("bytes_in", bytesIn)
        json.field("bytes_out", bytesOut)
        if includeBodies {
            json.field("request_body", requestBody)
            json.field("response_body", responseBody)
        }
        json.endObject()
    }

    /// Reads a record written by `writeJSON`, in one pass over the members. Missing optional fields default;
    /// a missing `request_id`, `start_ns` or `status` makes it fail.
    public init?(json value: JSONValue) {
        guard case let .object(members) = value else { return nil }
        var record = AuditRecord(requestID: "", startNs: .min, endNs: .min, status: -1)
        var hasID = false
        for (name, member) in members {
            switch name {
            case "request_id": if let v = member.stringValue { record.requestID = v; hasID = true }
            case "key_id": record.keyID = member.stringValue
            case "key_name": record.keyName = member.stringValue
            case "groups": record.groups = member.arrayValue?.compactMap(\.stringValue) ?? []
            case "tags": record.tags = member.stringValue ?? ""
            case "client_address": record.clientAddress = member.stringValue ?? ""
            case "start_ns": record.startNs = member.int64Value ?? .min
            case "end_ns": record.endNs = member.int64Value ?? .min
            case "total_latency_us": record.totalLatencyUs = member.int64Value ?? 0
            case "upstream_latency_us": record.upstreamLatencyUs = member.int64Value ?? 0
            case "overhead_us": record.overheadUs = member.int64Value ?? 0
            case "ttfb_us": record.ttfbUs = member.int64Value ?? 0
            case "requested_model": record.requestedModel = member.stringValue ?? ""
            case "deployment": record.deployment = member.stringValue ?? ""
            case "attempts": record.attempts = Int(member.int64Value ?? 0)
            case "attempt_log": record.attemptLog = member.stringValue
            case "status": record.status = Int(member.int64Value ?? -1)
            case "error_code": record.errorCode = member.stringValue
            case "prompt_tokens": record.promptTokens = Int(member.int64Value ?? 0)
            case "completion_tokens": record.completionTokens = Int(member.int64Value ?? 0)
            case "cost_micro_usd": record.costMicroUSD = member.int64Value ?? 0
            case "streamed": record.streamed = member.boolValue ?? false
            case "bytes_in": record.bytesIn = member.int64Value ?? 0
            case "bytes_out": record.bytesOut = member.int64Value ?? 0
            case "request_body": record.requestBody = member.stringValue
            case "response_body": record.responseBody = member.stringValue
            default: break  // start_time, cost_usd: derived
            }
        }
        guard hasID, record.startNs != .min, record.status >= 0 else { return nil }
        if record.endNs == .min { record.endNs = record.startNs }
        self = record
    }
}

/// `{"data":[record, …]}` for `GET /admin/logs`, newest first as `Store.logs` returns them.
/// - Parameter includeBodies: whether the records' bodies are written (when they were stored).
public func renderLogsJSON(_ records: [AuditRecord], includeBodies: Bool = false) -> String {
    var json = JSONWriter(capacity: 512 * max(1, records.count))
    json.beginObject()
    json.field("object", "list")
    json.key("data")
    json.beginArray()
    for record in records { record.writeJSON(to: &json, includeBodies: includeBodies) }
    json.endArray()
    json.endObject()
    return json.text
}
