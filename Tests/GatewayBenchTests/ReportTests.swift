import Foundation
import Testing
@testable import GatewayBench

@Suite struct ReportTests {
    static func sampleResult() throws -> RunResult {
        var config = LoadConfig(target: try BenchTarget(parsing: "127.0.0.1:9000"), request: RequestSpec())
        config.mode = .open(rate: 500)
        config.request.stream = true
        config.request.headers = [("Authorization", "Bearer secret"), ("x-test", "1")]
        let stats = BenchStats()
        for value in stride(from: UInt64(50_000), to: 5_000_000, by: 10_000) {
            stats.latency.record(value)
            stats.latencyUncorrected.record(value / 2)
            stats.ttfb.record(value / 4)
            stats.ttft.record(value / 3)
            stats.interEventGap.record(1_000)
            stats.legToUpstream.record(20_000)
            stats.legFromUpstream.record(30_000)
            stats.eventsPerResponse.record(17)
            stats.bytesPerResponse.record(2100)
        }
        stats.statuses[200] = 490
        stats.statuses[429] = 5
        stats.counters.responses = 495
        stats.counters.responsesInWindow = 495
        stats.counters.requestsSent = 495
        return RunResult(
            name: "global", config: config, stats: stats, workers: [stats], windowNs: 1_000_000_000, cpuNs: 250_000_000,
            processes: [ProcessCPUUsage(name: "gw", pid: 1, cpuNs: 100_000_000)], preciseTimer: true)
    }

    /// Encode a run, decode it with JSONSerialization, and check the keys a reader (and `gwbench check`) needs.
    @Test func runJSONHasNighthawksShape() throws {
        let result = try ReportTests.sampleResult()
        let report = RunReport(result: result, arrangement: "gwbench on CPU 1")
        let text = try JSONOutput.encode(report)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        for key in ["options", "machine", "results", "tool", "schema_version", "kind", "arrangement"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        let machine = try #require(object["machine"] as? [String: Any])
        for key in ["cores", "cpu_model", "kernel"] { #expect(machine[key] != nil, "machine.\(key)") }
        let options = try #require(object["options"] as? [String: Any])
        for key in ["url", "mode", "rate", "connections", "threads", "warmup_s", "timeout_s", "method", "stream"] {
            #expect(options[key] != nil, "options.\(key)")
        }
        #expect((options["headers"] as? [String])?.contains("Authorization: <redacted>") == true)
        #expect(!text.contains("secret"))

        let results = try #require(object["results"] as? [[String: Any]])
        #expect(results.count == 2)  // global and worker_0
        let global = results[0]
        #expect(global["name"] as? String == "global")
        for key in ["id", "statistics", "counters", "rps", "duration_s", "cpu_s"] { #expect(global[key] != nil, "results[0].\(key)") }
        #expect(global["rps"] as? Double == 495)
        #expect(global["cpu_per_request_us"] != nil)
        let statistics = try #require(global["statistics"] as? [[String: Any]])
        let ids = statistics.compactMap { $0["id"] as? String }
        for id in ["latency", "latency_uncorrected", "ttfb", "ttft", "inter_event_gap", "leg_to_upstream", "leg_from_upstream", "send_delay"] {
            #expect(ids.contains(id), "statistic \(id)")
        }
        for statistic in statistics {
            for key in ["id", "count", "mean", "pstdev", "min", "max", "percentiles", "unit"] {
                #expect(statistic[key] != nil, "\(statistic["id"] ?? "?").\(key)")
            }
            let percentiles = try #require(statistic["percentiles"] as? [[String: Any]])
            #expect(percentiles.count == ResultRecord.percentiles.count)
            for entry in percentiles { #expect(entry["percentile"] is Double && entry["value"] is Double) }
        }
        let latency = try #require(statistics.first { $0["id"] as? String == "latency" })
        #expect(latency["unit"] as? String == "us")
        #expect(latency["count"] as? Int == 495)
        let p99 = try #require((latency["percentiles"] as? [[String: Any]])?.first { $0["percentile"] as? Double == 0.99 })
        let expected = Double(result.stats.latency.valueAtPercentile(99)) / 1000
        #expect(abs((p99["value"] as? Double ?? 0) - expected) < 0.001)
        let counters = try #require(global["counters"] as? [[String: Any]])
        let names = Dictionary(uniqueKeysWithValues: counters.map { ($0["name"] as! String, $0["value"] as! Int) })
        for name in ["requests_sent", "responses", "connect_errors", "resets", "timeouts", "backlogged", "missed", "status_2xx", "status_4xx", "status_429"] {
            #expect(names[name] != nil, "counter \(name)")
        }
        #expect(names["status_429"] == 5)
        let processes = try #require(global["processes"] as? [[String: Any]])
        #expect(processes.first?["cpu_per_request_us"] as? Double != nil)

        // And it decodes back into the same value with the Codable types `check` will use.
        #expect(try JSONOutput.decode(RunReport.self, from: text) == report)
    }

    @Test func hgrmIsTheClassicFormat() throws {
        let result = try ReportTests.sampleResult()
        let text = HgrmOutput.text(result.stats.latency)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first?.contains("Value") == true && lines.first?.contains("Percentile") == true
            && lines.first?.contains("TotalCount") == true && lines.first?.contains("1/(1-Percentile)") == true)
        #expect(text.contains("#[Mean    ="))
        #expect(text.contains("#[Max     ="))
        #expect(text.contains("#[Buckets ="))
        // Values are in milliseconds: the largest latency is about 5 ms.
        let values = lines.dropFirst(2).prefix(while: { !$0.hasPrefix("#") }).compactMap { Double($0.split(separator: " ").first ?? "") }
        #expect(values.last.map { $0 > 4.5 && $0 < 5.5 } == true)
    }

    @Test func textReportNamesTheFigures() throws {
        let text = TextReport.run(try ReportTests.sampleResult())
        for word in ["req/s", "p50", "p99", "p99.9", "max", "mean", "latency", "uncorrected", "429 ×5", "CPU"] {
            #expect(text.contains(word), "\(word)")
        }
    }
}
