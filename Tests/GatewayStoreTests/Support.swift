import Foundation
@testable import GatewayStore

/// A fresh directory under /tmp for one test's database files.
func temporaryDirectory(_ name: String = #function) -> String {
    let base = FileManager.default.temporaryDirectory.path
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let path = "\(base)/gwstore-\(safe)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

let nsPerDay: Int64 = 86_400 * 1_000_000_000

/// A record with every field set from `index`, so that each is distinct and round trips can be checked field by field.
func sampleRecord(_ index: Int, thread: Int = 0, startNs: Int64? = nil, body: Bool? = nil) -> AuditRecord {
    let start = startNs ?? (UTCTime.nowNs() - Int64(index) * 1_000)
    let withBody = body ?? (index % 3 == 0)
    return AuditRecord(
        requestID: "req-\(thread)-\(index)",
        keyID: index % 7 == 0 ? nil : "key_\(index % 4)",
        keyName: index % 7 == 0 ? nil : "name\(index % 4)",
        groups: index % 2 == 0 ? ["team-a", "interns"] : ["team-b"],
        tags: index % 5 == 0 ? "" : "project=p\(index % 3),env=prod",
        clientAddress: "10.0.0.\(index % 255):\(40000 + index % 1000)",
        startNs: start,
        endNs: start + 5_000_000,
        totalLatencyUs: 5000,
        upstreamLatencyUs: 4900,
        overheadUs: 100,
        ttfbUs: 1200 + Int64(index % 10),
        requestedModel: index % 2 == 0 ? "gpt-4o-mini" : "claude-haiku",
        deployment: index % 2 == 0 ? "mock/gpt-4o-mini" : "anthropic/claude-3-haiku",
        attempts: 1 + index % 2,
        status: index % 11 == 0 ? 429 : 200,
        errorCode: index % 11 == 0 ? "rate_limit_exceeded" : nil,
        promptTokens: index % 100,
        completionTokens: 16,
        costMicroUSD: Int64(index % 100) * 3 + 7,
        streamed: index % 2 == 1,
        bytesIn: Int64(100 + index),
        bytesOut: Int64(2000 + index),
        requestBody: withBody ? "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"héllo \\\"\(index)\\\"\\n\"}]}" : nil,
        responseBody: withBody ? "{\"id\":\"x\",\"usage\":{}}\n\tok ✓" : nil
    )
}

/// Runs `body(i)` for i in 0..<threads on that many threads at once and waits for all.
func onThreads(_ threads: Int, _ body: @escaping @Sendable (Int) -> Void) {
    DispatchQueue.concurrentPerform(iterations: threads) { body($0) }
}
