import Histogram
import Testing
@testable import GatewayBench

@Suite struct BenchStatsTests {
    @Test func mergedHistogramsEqualOneWithAllValues() {
        var one = BenchHistogram.bench()
        var a = BenchHistogram.bench()
        var b = BenchHistogram.bench()
        var seed: UInt64 = 42
        for i in 0..<20_000 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let value = (seed >> 33) % 5_000_000_000 + 1
            one.record(value)
            if i % 3 == 0 { a.record(value) } else { b.record(value) }
        }
        var merged = a
        merged.add(b)
        #expect(merged == one)
        #expect(merged.totalCount == 20_000)
        for p in [50.0, 90, 99, 99.9, 100] { #expect(merged.valueAtPercentile(p) == one.valueAtPercentile(p)) }
        #expect(merged.mean == one.mean)
    }

    @Test func statsMergeAddsHistogramsCountersAndStatuses() {
        let first = BenchStats()
        let second = BenchStats()
        let all = BenchStats()
        for value in [1_000, 2_000, 3_000] as [UInt64] {
            first.latency.record(value)
            all.latency.record(value)
        }
        for value in [50_000, 4_000_000_000] as [UInt64] {
            second.latency.record(value)
            all.latency.record(value)
        }
        first.statuses[200] = 3
        second.statuses[200] = 1
        second.statuses[503] = 1
        first.counters.responses = 3
        second.counters.responses = 2
        first.counters.maxBacklog = 7
        second.counters.maxBacklog = 4
        first.lastCompletion = 10
        second.lastCompletion = 20
        let merged = BenchStats.merged([first, second])
        #expect(merged.latency == all.latency)
        #expect(merged.statuses[200] == 4 && merged.statuses[503] == 1)
        #expect(merged.counters.responses == 5)
        #expect(merged.counters.maxBacklog == 7)
        #expect(merged.lastCompletion == 20)
        #expect(merged.successes == 4 && merged.errorResponses == 1)
        #expect(merged.statusClasses.map(\.0) == ["2xx", "5xx"])
    }

    @Test func valuesPastTheRangeAreClampedNotDropped() {
        var histogram = BenchHistogram.bench()
        histogram.recordClamped(.max)
        #expect(histogram.totalCount == 1)
    }
}
