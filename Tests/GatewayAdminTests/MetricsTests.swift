#if canImport(Glibc)
import Glibc
#endif
import GatewayIO
import GatewayMetrics
import Testing

/// The Prometheus text format, read back by a small strict parser: families with their HELP and TYPE,
/// and samples with their labels unescaped.
struct Exposition {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var help: [String: String] = [:]
    var type: [String: String] = [:]
    var samples: [Sample] = []
    /// The family of each sample, in order, as the last TYPE line before it.
    var familyOfSample: [String] = []

    init(_ text: String) throws {
        guard text.hasSuffix("\n") else { throw TestError("the exposition must end with a newline") }
        var currentFamily = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("# HELP ") {
                let rest = line.dropFirst(7)
                let name = String(rest.prefix { $0 != " " })
                guard help[name] == nil else { throw TestError("two HELP lines for \(name)") }
                help[name] = String(rest.dropFirst(name.count + 1))
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                guard parts.count == 2, ["counter", "gauge", "histogram", "summary", "untyped"].contains(String(parts[1])) else {
                    throw TestError("bad TYPE line: \(line)")
                }
                let name = String(parts[0])
                guard help[name] != nil else { throw TestError("TYPE before HELP for \(name)") }
                guard type[name] == nil else { throw TestError("two TYPE lines for \(name)") }
                type[name] = String(parts[1])
                currentFamily = name
            } else if line.hasPrefix("#") || line.isEmpty {
                throw TestError("unexpected line: \(line)")
            } else {
                let sample = try Exposition.parseSample(Array(line.utf8))
                let belongs = sample.name == currentFamily
                    || (type[currentFamily] == "histogram" && ["_bucket", "_sum", "_count"].contains { sample.name == currentFamily + $0 })
                guard belongs else { throw TestError("sample \(sample.name) outside its family (\(currentFamily))") }
                samples.append(sample)
                familyOfSample.append(currentFamily)
            }
        }
    }

    static func parseSample(_ bytes: [UInt8]) throws -> Sample {
        var i = 0
        var name = ""
        while i < bytes.count, bytes[i] != UInt8(ascii: "{"), bytes[i] != UInt8(ascii: " ") {
            let c = bytes[i]
            guard (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39 && i > 0) || c == 0x5F || c == 0x3A else {
                throw TestError("bad metric name byte \(c)")
            }
            name.unicodeScalars.append(Unicode.Scalar(c))
            i += 1
        }
        var labels: [String: String] = [:]
        if i < bytes.count, bytes[i] == UInt8(ascii: "{") {
            i += 1
            while bytes[i] != UInt8(ascii: "}") {
                var label = ""
                while bytes[i] != UInt8(ascii: "=") {
                    label.unicodeScalars.append(Unicode.Scalar(bytes[i]))
                    i += 1
                }
                i += 1
                guard bytes[i] == UInt8(ascii: "\"") else { throw TestError("label value must be quoted") }
                i += 1
                var value: [UInt8] = []
                while bytes[i] != UInt8(ascii: "\"") {
                    if bytes[i] == UInt8(ascii: "\n") { throw TestError("raw newline in a label value") }
                    if bytes[i] == UInt8(ascii: "\\") {
                        i += 1
                        switch bytes[i] {
                        case UInt8(ascii: "\\"): value.append(UInt8(ascii: "\\"))
                        case UInt8(ascii: "\""): value.append(UInt8(ascii: "\""))
                        case UInt8(ascii: "n"): value.append(UInt8(ascii: "\n"))
                        default: throw TestError("bad escape in a label value")
                        }
                    } else {
                        value.append(bytes[i])
                    }
                    i += 1
                }
                i += 1
                guard labels[label] == nil else { throw TestError("label \(label) twice") }
                labels[label] = String(decoding: value, as: UTF8.self)
                if bytes[i] == UInt8(ascii: ",") { i += 1 }
            }
            i += 1
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: " ") else { throw TestError("missing value") }
        let valueText = String(decoding: bytes[(i + 1)...], as: UTF8.self)
        guard let value = valueText == "+Inf" ? Double.infinity : Double(valueText) else { throw TestError("bad value \(valueText)") }
        return Sample(name: name, labels: labels, value: value)
    }

    func values(_ name: String, _ labels: [String: String] = [:]) -> [Double] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value } }.map(\.value)
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let found = samples.filter { $0.name == name && $0.labels == labels }
        return found.count == 1 ? found[0].value : nil
    }

    /// Checks every histogram series: cumulative buckets in increasing `le`, the last `+Inf`, equal to `_count`.
    func checkHistograms() throws {
        for (family, kind) in type where kind == "histogram" {
            var series: [[String: String]: [(Double, Double)]] = [:]
            for sample in samples where sample.name == family + "_bucket" {
                var labels = sample.labels
                guard let le = labels.removeValue(forKey: "le") else { throw TestError("bucket without le") }
                let bound = le == "+Inf" ? Double.infinity : Double(le)!
                series[labels, default: []].append((bound, sample.value))
            }
            for (labels, buckets) in series {
                for i in 1..<buckets.count {
                    guard buckets[i].0 > buckets[i - 1].0 else { throw TestError("\(family): le not increasing") }
                    guard buckets[i].1 >= buckets[i - 1].1 else { throw TestError("\(family): buckets not cumulative") }
                }
                guard buckets.last?.0 == .infinity else { throw TestError("\(family): no +Inf bucket") }
                guard value(family + "_count", labels) == buckets.last?.1 else { throw TestError("\(family): +Inf != _count") }
                guard value(family + "_sum", labels) != nil else { throw TestError("\(family): no _sum") }
            }
        }
    }
}

@Suite("Metrics")
struct MetricsTests {
    static let labels = MetricsLabels(models: ["gpt-4o-mini", "embed-small"], groups: ["interns", "research"], deployments: ["mock/gpt-4o-mini"])

    @Test func everyFamilyOfTheDesignIsThere() throws {
        let registry = MetricsRegistry(labels: MetricsTests.labels)
        let parsed = try Exposition(registry.render())
        for name in [
            "gateway_requests_total", "gateway_request_duration_seconds", "gateway_overhead_seconds",
            "gateway_upstream_duration_seconds", "gateway_tokens_total", "gateway_cost_usd_total",
            "gateway_inflight_requests", "gateway_upstream_connections", "gateway_rejections_total",
            "gateway_audit_queue_depth", "gateway_audit_spilled_total", "gateway_audit_dropped_total",
            "gateway_audit_writer_raises_total",
        ] {
            #expect(parsed.help[name] != nil, "no HELP for \(name)")
            #expect(parsed.type[name] != nil, "no TYPE for \(name)")
        }
        #expect(parsed.type["gateway_request_duration_seconds"] == "histogram")
        #expect(parsed.type["gateway_requests_total"] == "counter")
        #expect(parsed.type["gateway_inflight_requests"] == "gauge")
        // An empty histogram still has its buckets, so dashboards see zeros rather than nothing.
        #expect(parsed.value("gateway_request_duration_seconds_count") == 0)
        try parsed.checkHistograms()
    }

    @Test func threadsAreSummed() throws {
        let registry = MetricsRegistry(labels: MetricsTests.labels)
        let a = registry.makeThreadMetrics(for: nil)
        let b = registry.makeThreadMetrics(for: nil)
        let gpt = MetricsTests.labels.modelID("gpt-4o-mini")
        let interns = MetricsTests.labels.groupID("interns")
        a.recordRequest(model: gpt, group: interns, status: 200, durationNs: 30_000_000, overheadNs: 3_000)
        a.recordRequest(model: gpt, group: interns, status: 200, durationNs: 70_000_000, overheadNs: 12_000)
        b.recordRequest(model: gpt, group: interns, status: 200, durationNs: 2_000_000_000, overheadNs: 40_000)
        b.recordRequest(model: gpt, group: interns, status: 429, durationNs: 40_000, overheadNs: 40_000)
        b.recordRequest(model: 0, group: 0, status: 401, durationNs: 20_000, overheadNs: 20_000)
        a.recordTokens(model: gpt, group: interns, prompt: 100, completion: 16)
        b.recordTokens(model: gpt, group: interns, prompt: 50, completion: 0)
        a.recordCost(model: gpt, group: interns, usd: 0.0000015)
        b.recordCost(model: gpt, group: interns, usd: 0.0000015)
        a.recordUpstream(deployment: 1, durationNs: 25_000_000)
        b.recordUpstream(deployment: 1, durationNs: 1_500_000_000)
        a.recordRejection(.invalidAPIKey)
        b.recordRejection(.invalidAPIKey)
        b.recordRejection(.rateLimitExceeded)
        a.requestStarted()
        a.requestStarted()
        b.requestStarted()
        a.requestEnded()
        a.setUpstreamConnections(deployment: 1, active: 3, idle: 1)
        b.setUpstreamConnections(deployment: 1, active: 2, idle: 5)
        b.setUpstreamConnections(deployment: 1, active: 1, idle: 4)
        registry.setAuditSource { AuditMetrics(queueDepth: 7, spilled: 3, dropped: 1, writerRaises: 5) }

        let parsed = try Exposition(registry.render())
        try parsed.checkHistograms()
        #expect(parsed.value("gateway_requests_total", ["model": "gpt-4o-mini", "group": "interns", "status": "200"]) == 3)
        #expect(parsed.value("gateway_requests_total", ["model": "gpt-4o-mini", "group": "interns", "status": "429"]) == 1)
        #expect(parsed.value("gateway_requests_total", ["model": "", "group": "", "status": "401"]) == 1)
        #expect(parsed.value("gateway_request_duration_seconds_count") == 5)
        #expect(parsed.value("gateway_request_duration_seconds_sum") == 2.10006)
        #expect(parsed.value("gateway_request_duration_seconds_bucket", ["le": "0.05"]) == 3)
        #expect(parsed.value("gateway_request_duration_seconds_bucket", ["le": "0.1"]) == 4)
        #expect(parsed.value("gateway_request_duration_seconds_bucket", ["le": "+Inf"]) == 5)
        #expect(parsed.value("gateway_overhead_seconds_bucket", ["le": "0.000005"]) == 1)
        #expect(parsed.value("gateway_overhead_seconds_bucket", ["le": "0.00002"]) == 3)
        #expect(parsed.value("gateway_overhead_seconds_sum") == 0.000115)
        #expect(parsed.value("gateway_upstream_duration_seconds_count", ["deployment": "mock/gpt-4o-mini"]) == 2)
        #expect(parsed.value("gateway_upstream_duration_seconds_bucket", ["deployment": "mock/gpt-4o-mini", "le": "0.025"]) == 1)
        #expect(parsed.value("gateway_tokens_total", ["model": "gpt-4o-mini", "group": "interns", "kind": "prompt"]) == 150)
        #expect(parsed.value("gateway_tokens_total", ["model": "gpt-4o-mini", "group": "interns", "kind": "completion"]) == 16)
        #expect(parsed.value("gateway_cost_usd_total", ["model": "gpt-4o-mini", "group": "interns"]) == 0.000003)
        #expect(parsed.value("gateway_inflight_requests") == 2)
        #expect(parsed.value("gateway_upstream_connections", ["deployment": "mock/gpt-4o-mini", "state": "active"]) == 4)
        #expect(parsed.value("gateway_upstream_connections", ["deployment": "mock/gpt-4o-mini", "state": "idle"]) == 5)
        #expect(parsed.value("gateway_rejections_total", ["reason": "invalid_api_key"]) == 2)
        #expect(parsed.value("gateway_rejections_total", ["reason": "rate_limit_exceeded"]) == 1)
        #expect(parsed.value("gateway_rejections_total", ["reason": "budget_exceeded"]) == 0)
        #expect(parsed.value("gateway_audit_queue_depth") == 7)
        #expect(parsed.value("gateway_audit_spilled_total") == 3)
        #expect(parsed.value("gateway_audit_dropped_total") == 1)
        #expect(parsed.value("gateway_audit_writer_raises_total") == 5)
        #expect(parsed.value("gateway_metrics_stale_threads") == 0)
    }

    @Test func labelValuesAreEscaped() throws {
        let awkward = "we\"ird\\mo\ndel"
        let labels = MetricsLabels(models: [awkward], groups: ["a\\b"], deployments: ["p/\"q\""])
        let registry = MetricsRegistry(labels: labels)
        let metrics = registry.makeThreadMetrics(for: nil)
        metrics.recordRequest(model: 1, group: 1, status: 200, durationNs: 1, overheadNs: 1)
        metrics.recordUpstream(deployment: 1, durationNs: 1)
        let text = registry.render()
        #expect(text.contains(#"model="we\"ird\\mo\ndel""#))
        let parsed = try Exposition(text)
        #expect(parsed.value("gateway_requests_total", ["model": awkward, "group": "a\\b", "status": "200"]) == 1)
        #expect(parsed.value("gateway_upstream_duration_seconds_count", ["deployment": "p/\"q\""]) == 1)
        try parsed.checkHistograms()
    }

    @Test func idsPastTheTablesGrowThem() throws {
        let registry = MetricsRegistry(labels: MetricsLabels())
        let metrics = registry.makeThreadMetrics(for: nil)
        metrics.recordRequest(model: 1, group: 1, status: 200, durationNs: 1, overheadNs: 1)
        // A reload adds names; the thread records with their ids before anyone resizes anything.
        registry.updateLabels(registry.labels.merging(models: ["a", "b", "c", "d", "e"], groups: ["g1", "g2", "g3"]))
        metrics.recordRequest(model: 5, group: 3, status: 200, durationNs: 1, overheadNs: 1)
        metrics.recordRequest(model: 5, group: 3, status: 503, durationNs: 1, overheadNs: 1)
        metrics.recordTokens(model: 5, group: 3, prompt: 9, completion: 1)
        metrics.recordRequest(model: -3, group: 1 << 40, status: 9999, durationNs: 1, overheadNs: 1)
        let parsed = try Exposition(registry.render())
        #expect(parsed.value("gateway_requests_total", ["model": "a", "group": "g1", "status": "200"]) == 1)
        #expect(parsed.value("gateway_requests_total", ["model": "e", "group": "g3", "status": "200"]) == 1)
        #expect(parsed.value("gateway_requests_total", ["model": "e", "group": "g3", "status": "503"]) == 1)
        #expect(parsed.value("gateway_tokens_total", ["model": "e", "group": "g3", "kind": "prompt"]) == 9)
        #expect(parsed.value("gateway_requests_total", ["model": "", "group": "", "status": "0"]) == 1)
    }

    @Test func mergingKeepsIDs() {
        let first = MetricsLabels(models: ["a", "b"], groups: ["x"])
        #expect(first.modelID("a") == 1)
        #expect(first.modelID("b") == 2)
        #expect(first.modelID("zzz") == MetricsLabels.none)
        let second = first.merging(models: ["c", "b"], groups: ["y", "x"])
        #expect(second.modelID("a") == 1)
        #expect(second.modelID("b") == 2)
        #expect(second.modelID("c") == 3)
        #expect(second.groupID("x") == 1)
        #expect(second.groupID("y") == 2)
        #expect(second.models == ["", "a", "b", "c"])
    }

    @Test func scrapesCopyOnTheOwningLoops() throws {
        let registry = MetricsRegistry(labels: MetricsTests.labels)
        let loops = [EventLoop(index: 0), EventLoop(index: 1)]
        let threads = loops.map { $0.startThread() }
        defer {
            for loop in loops { loop.execute { $0.stop() } }
            for thread in threads { Threads.join(thread) }
        }
        let metrics = loops.map { registry.makeThreadMetrics(for: $0) }
        for round in 1...3 {
            let done = Latch(count: 2)
            for (loop, threadMetrics) in zip(loops, metrics) {
                loop.execute { _ in
                    for _ in 0..<1000 {
                        threadMetrics.recordRequest(model: 1, group: 1, status: 200, durationNs: 1_000, overheadNs: 1_000)
                    }
                    done.countDown()
                }
            }
            done.wait()
            let (snapshot, stale) = registry.collect()
            #expect(stale == 0)
            #expect(snapshot.requests[RequestSeries(model: 1, group: 1, status: 200)] == UInt64(2000 * round))
            #expect(snapshot.requestDuration.count == UInt64(2000 * round))
        }
    }

    @Test func aLoopThatDoesNotAnswerContributesItsLastCopy() throws {
        let registry = MetricsRegistry(labels: MetricsTests.labels)
        let stopped = EventLoop(index: 0)
        let metrics = registry.makeThreadMetrics(for: stopped)
        let thread = stopped.startThread()
        let recorded = Latch(count: 1)
        stopped.execute { _ in
            metrics.recordRejection(.budgetExceeded)
            recorded.countDown()
        }
        recorded.wait()
        #expect(registry.collect().snapshot.rejections[RejectionReason.budgetExceeded.rawValue] == 1)
        stopped.execute { $0.stop() }
        Threads.join(thread)
        let start = Clock.monotonicNs()
        let (snapshot, stale) = registry.collect(timeoutNs: 50_000_000)
        #expect(Clock.monotonicNs() - start < 1_000_000_000)
        #expect(stale == 1)
        #expect(snapshot.rejections[RejectionReason.budgetExceeded.rawValue] == 1, "counters never go backwards")
        let parsed = try Exposition(registry.render(timeoutNs: 50_000_000))
        #expect(parsed.value("gateway_metrics_stale_threads") == 1)
    }

    @Test func snapshotSums() {
        var a = MetricsSnapshot()
        a.requests[RequestSeries(model: 1, group: 1, status: 200)] = 2
        a.upstreamDuration[1] = HistogramSnapshot(buckets: .latency)
        a.upstreamDuration[1]!.counts[0] = 4
        var b = MetricsSnapshot()
        b.requests[RequestSeries(model: 1, group: 1, status: 200)] = 3
        b.upstreamDuration[1] = HistogramSnapshot(buckets: .latency)
        b.upstreamDuration[1]!.counts[0] = 1
        b.upstreamDuration[2] = HistogramSnapshot(buckets: .latency)
        let total = MetricsSnapshot.sum([a, b])
        #expect(total.requests[RequestSeries(model: 1, group: 1, status: 200)] == 5)
        #expect(total.upstreamDuration[1]?.counts[0] == 5)
        #expect(total.upstreamDuration.count == 2)
    }
}

/// Waits for `count` check-ins (tests only).
final class Latch: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var remaining: Int

    init(count: Int) {
        remaining = count
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    func countDown() {
        pthread_mutex_lock(lock)
        remaining -= 1
        pthread_mutex_unlock(lock)
    }

    func wait() {
        while true {
            pthread_mutex_lock(lock)
            let left = remaining
            pthread_mutex_unlock(lock)
            if left <= 0 { return }
            usleep(1000)
        }
    }
}
