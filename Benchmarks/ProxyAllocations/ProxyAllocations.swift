// Allocations per proxied keep-alive request in steady state (the target is 0; above 4 must be explained).
//
// The malloc interposer counts the whole process. So the gateway runs embedded here (GatewayServer, one reactor
// thread) while gwmock runs as a child process and is not counted; the client is a blocking socket with
// preallocated buffers. Two benchmarks, run side by side:
//   Direct: the client talks to gwmock itself. This measures what the client and the framework allocate (~0).
//   Via gateway: client → embedded gateway → gwmock. Its count minus Direct's is the gateway's cost per request.
// One iteration is 1,000 keep-alive requests on one connection (scalingFactor .kilo): the default text output
// shows counts per request; `--scale` shows them per 1,000 requests (that is, with three more digits).
// Run it with scripts/bench-allocations.sh, which builds gwmock and passes GWMOCK_BIN.
import Benchmark

#if canImport(Glibc)
import Glibc
#endif

let fixture = Fixture()

/// The metrics. Not `.cpuTotal`: its sampling allocates 16 times per iteration in this process (measured), which
/// would hide a client or gateway allocation in the baseline. Not `.instructions`: perf counters are "not
/// supported" on these VMs; set BENCH_INSTRUCTIONS=1 to add them where `perf stat -e instructions true` counts.
let allocationMetrics: [BenchmarkMetric] = {
    var metrics: [BenchmarkMetric] = [
        .mallocCountTotal,
        .freeCountTotal,
        .mallocBytesCount,
        .mallocFreeDelta,
        .memoryLeakedBytes,
        .wallClock,
        .throughput,
    ]
    if getenv("BENCH_INSTRUCTIONS") != nil { metrics.append(.instructions) }
    return metrics
}()

/// Iteration count: BENCH_ITERATIONS (default 100), each of 1,000 requests. The gateway replaces an upstream
/// connection every 10,000 requests (UpstreamConnection.maxRequestsPerConnection), so a run should span several
/// of those for the mean to be the steady state.
let iterations: Int = {
    if let text = getenv("BENCH_ITERATIONS"), let value = Int(String(cString: text)), value > 0 { return value }
    return 100
}()

func configuration(viaGateway: Bool) -> Benchmark.Configuration {
    .init(
        metrics: allocationMetrics,
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(60),
        maxIterations: iterations,
        setup: {
            try fixture.start(viaGateway: viaGateway)
            print("setup: \(fixture.describe())")
        },
        teardown: {
            fixture.stop()
        }
    )
}

/// The measured body: `scaledIterations` (1,000) round trips, nothing else.
func measure(_ benchmark: Benchmark) {
    guard let client = fixture.client else {
        benchmark.error("no client: setup did not run")
        return
    }
    var failures = 0
    var lastFailure = 0
    for _ in benchmark.scaledIterations {
        let status = client.roundTrip()
        if status != 200 {
            failures += 1
            lastFailure = status
        }
    }
    if failures > 0 {
        benchmark.error("\(failures) of \(benchmark.scaledIterations.count) requests failed; last: \(lastFailure)")
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark("Direct client to gwmock", configuration: configuration(viaGateway: false)) { benchmark in
        measure(benchmark)
    }
    Benchmark("Via gateway, keep-alive, non-streaming", configuration: configuration(viaGateway: true)) { benchmark in
        measure(benchmark)
    }
}
