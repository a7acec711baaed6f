import GatewayHTTP
import GatewayIO
import GatewayStore

/// What one model-API request did, gathered as it goes: times, status, bytes. At its end it becomes an
/// audit record, metrics and the key's accounting. Plain values, reset per request: nothing allocated
/// unless the audit log is on (the model name and the strings of the record).
struct RequestRecord {
    var active = false
    var startMonoNs: UInt64 = 0
    var startWallNs: UInt64 = 0
    var upstreamStartNs: UInt64 = 0
    var upstreamHeadNs: UInt64 = 0
    var upstreamEndNs: UInt64 = 0
    var firstByteNs: UInt64 = 0
    var endNs: UInt64 = 0
    var status = 0
    var errorCode: StaticCode?
    var bytesIn = 0
    var bytesOut = 0
    var streamed = false
    var modelName: String?

    /// Starts a request; only an `accounted` one is timed and ends in an audit record and metrics.
    mutating func begin(accounted: Bool, headBytes: Int) {
        self = RequestRecord()
        guard accounted else { return }
        active = true
        startMonoNs = Clock.monotonicNs()
        startWallNs = Clock.realtimeNs()
        bytesIn = headBytes
    }

    mutating func setModel(_ name: UnsafeRawBufferPointer, streamed: Bool, keepName: Bool) {
        self.streamed = streamed
        if keepName { modelName = String(decoding: name, as: UTF8.self) }
    }

    /// Time spent waiting on the upstream: from the first byte sent to the end of its response.
    var upstreamNs: UInt64 {
        guard upstreamStartNs > 0 else { return 0 }
        let end = upstreamEndNs > 0 ? upstreamEndNs : (endNs > 0 ? endNs : upstreamStartNs)
        return end > upstreamStartNs ? end - upstreamStartNs : 0
    }

    var totalNs: UInt64 { endNs > startMonoNs ? endNs - startMonoNs : 0 }

    /// The gateway's own time: the total less the upstream's.
    var overheadNs: UInt64 { totalNs > upstreamNs ? totalNs - upstreamNs : 0 }
}

extension AuditRecord {
    init(
        _ record: RequestRecord, requestID: String, keyID: String?, keyName: String?, groups: [String], tags: String,
        client: String, deployment: String, attempts: Int, promptTokens: Int, completionTokens: Int, costMicroUSD: Int64,
        attemptLog: String?, requestBody: String?, responseBody: String?
    ) {
        let ttfb = record.firstByteNs > record.startMonoNs ? record.firstByteNs - record.startMonoNs : 0
        self.init(
            requestID: requestID, keyID: keyID, keyName: keyName, groups: groups, tags: tags, clientAddress: client,
            startNs: Int64(record.startWallNs), endNs: Int64(record.startWallNs + record.totalNs),
            totalLatencyUs: Int64(record.totalNs / 1000), upstreamLatencyUs: Int64(record.upstreamNs / 1000),
            overheadUs: Int64(record.overheadNs / 1000), ttfbUs: Int64(ttfb / 1000),
            requestedModel: record.modelName ?? "", deployment: deployment, attempts: attempts, attemptLog: attemptLog,
            status: record.status,
            errorCode: record.errorCode?.rawValue, promptTokens: promptTokens, completionTokens: completionTokens,
            costMicroUSD: costMicroUSD, streamed: record.streamed, bytesIn: Int64(record.bytesIn),
            bytesOut: Int64(record.bytesOut), requestBody: requestBody, responseBody: responseBody)
    }
}
