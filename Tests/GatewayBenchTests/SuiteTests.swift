import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import GatewayBench

/// The suite's pieces that need no servers: the SVG chart, the parsers of what valgrind, the malloc counter and
/// /proc write, peers, and the best-of-rounds gate figures.
@Suite struct SuiteTests {
    // MARK: SVG

    final class SVGReader: NSObject, XMLParserDelegate {
        var elements: [String] = []
        var seriesNames: [String] = []
        var pointCounts: [Int] = []
        var rootAttributes: [String: String] = [:]

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if elements.isEmpty { rootAttributes = attributes }
            elements.append(name)
            if name == "polyline", attributes["class"] == "series" {
                seriesNames.append(attributes["data-name"] ?? "")
                pointCounts.append(attributes["points"]?.split(separator: " ").count ?? 0)
            }
        }
    }

    static func histogram(_ base: UInt64, tail: UInt64) -> BenchHistogram {
        var histogram = BenchHistogram.bench()
        for i in 0..<10_000 as Range<UInt64> { histogram.record(base + i * 10) }
        for i in 0..<100 as Range<UInt64> { histogram.record(tail + i * 1_000) }
        return histogram
    }

    @Test func svgIsWellFormedXMLWithBothSeries() throws {
        let direct = LatencySeries(name: "direct", histogram: SuiteTests.histogram(40_000, tail: 300_000))
        let via = LatencySeries(name: "gateway <via> & \"co\"", histogram: SuiteTests.histogram(120_000, tail: 900_000))
        let svg = LatencyChart.svg(title: "Latency: direct & via", subtitle: "open loop at 1000 req/s", series: [direct, via])
        let parser = XMLParser(data: Data(svg.utf8))
        let reader = SVGReader()
        parser.delegate = reader
        #expect(parser.parse(), "not well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
        #expect(reader.elements.first == "svg")
        #expect(reader.rootAttributes["xmlns"] == "http://www.w3.org/2000/svg")
        #expect(reader.seriesNames == ["direct", "gateway <via> & \"co\""])
        #expect(reader.pointCounts == [LatencySeries.chartPercentiles.count, LatencySeries.chartPercentiles.count])
        #expect(svg.contains("99.99%"))
        #expect(svg.contains("latency (log scale)"))  // 40 µs … 1 ms spans more than a decade
    }

    @Test func chartPercentilesRunFrom50To9999Evenly() {
        let list = LatencySeries.chartPercentiles
        #expect(abs(list.first! - 50) < 0.01)
        #expect(abs(list.last! - 99.99) < 0.001)
        #expect(zip(list, list.dropFirst()).allSatisfy { $0 < $1 })
        #expect(list.contains { abs($0 - 99) < 0.5 })
    }

    @Test func aNarrowChartUsesALinearAxisAndDashesTheSecondRate() throws {
        var second = LatencySeries(name: "direct, quarter load", points: [(50, 40), (99, 60), (99.99, 80)])
        second.dashed = true
        let first = LatencySeries(name: "direct, half load", points: [(50, 45), (99, 70), (99.99, 90)])
        let svg = LatencyChart.svg(title: "t", series: [first, second])
        #expect(XMLParser(data: Data(svg.utf8)).parse())
        #expect(!svg.contains("log scale"))
        #expect(svg.contains("stroke-dasharray"))
    }

    // MARK: Parsers

    @Test func mallocCounterParsing() {
        let text = "malloc 8\ncalloc 1\nrealloc 2\nposix_memalign 20\naligned_alloc 0\nmemalign 0\nvalloc 0\nfree 30\ntotal 31\n"
        let counts = MallocCounterReport.parse(text)
        #expect(counts?["total"] == 31)
        #expect(counts?["posix_memalign"] == 20)
        #expect(counts?["free"] == 30)
        // Every name must be there: a half-written file is not a count.
        #expect(MallocCounterReport.parse("malloc 8\ncalloc 1\n") == nil)
        #expect(MallocCounterReport.parse("") == nil)
        // Stray lines are ignored.
        #expect(MallocCounterReport.parse("# note\n" + text + "junk\n")?["malloc"] == 8)
    }

    @Test func callgrindDumpTotals() {
        let dump = """
            version: 1
            creator: callgrind-3.19.0
            events: Ir
            summary: 100958672
            fl=(1) gateway
            totals: 101008746
            """
        #expect(CallgrindOutput.total(dump)?.value == 100_958_672)
        #expect(CallgrindOutput.total(dump)?.line == "summary: 100958672")
        #expect(CallgrindOutput.total("events: Ir\ntotals: 42 7\n")?.value == 42)
        #expect(CallgrindOutput.total("events: Ir\n") == nil)
    }

    @Test func procStatusMemory() {
        let status = "Name:\tgateway\nVmPeak:\t  300000 kB\nVmHWM:\t   26512 kB\nVmRSS:\t   25904 kB\nThreads:\t2\n"
        #expect(ProcessMemory.parseStatus(status) == ProcessMemory(rss_kib: 25_904, hwm_kib: 26_512))
        #expect(ProcessMemory.parseStatus("Name:\tx\n") == nil)
        #expect(ProcessMemory.read(pid: getpid()).map { $0.rss_kib > 0 && $0.hwm_kib >= $0.rss_kib } == true)
    }

    @Test func foreignCPUShares() throws {
        let start = try #require(CPUTimes.parse("""
            cpu  300 0 100 5000 0 0 0 0 0 0
            cpu0 100 0 50 2500 0 0 0 0 0 0
            cpu1 200 0 50 2500 0 0 0 0 0 0
            intr 1
            """))
        #expect(start.busy == [0: 150, 1: 250])
        // 10 s later (100 ticks a second): CPU 0 busy 5 s, of which 2 s ours; CPU 1 busy 9 s, 8 s ours, 1 s stolen.
        let end = try #require(CPUTimes.parse("""
            cpu0 500 0 150 3000 0 0 0 0 0 0
            cpu1 900 0 150 2600 0 0 0 100 0 0
            """))
        let ticks = Double(ProcessCPU.ticksPerSecond)
        guard ticks == 100 else { return }
        let noise = NoiseRecord.make(window: "w", seconds: 10, start: start, end: end, ours: [0: 2_000_000_000, 1: 8_000_000_000])
        #expect(noise.cpus.map(\.cpu) == [0, 1])
        #expect(abs(noise.cpus[0].foreign_share - 0.3) < 1e-9)
        #expect(abs(noise.cpus[1].foreign_share - 0.1) < 1e-9)
        #expect(noise.cpus[1].steal_s == 1)
        #expect(noise.summary == "CPU 0 30%, CPU 1 10%")
        #expect(CPUTimes.read() != nil)
    }

    @Test func listeningURLs() {
        #expect(ChildProcess.findURL(in: "info: starting\nlistening http://127.0.0.1:4242\n") == "http://127.0.0.1:4242")
        #expect(ChildProcess.findURL(in: "see http://127.0.0.1:1/docs\n") == nil)
        #expect(ChildProcess.findURL(in: "INFO: Uvicorn running on http://127.0.0.1:4000 (Press CTRL+C)\n", anyURL: true)
            == "http://127.0.0.1:4000")
        #expect(ChildProcess.findURL(in: "http://example\n", anyURL: true) == nil)
    }

    @Test func peers() throws {
        #expect(try PeerSpec.parse("nginx=http://127.0.0.1:8080") == PeerSpec(name: "nginx", url: "http://127.0.0.1:8080", command: nil))
        let command = try PeerSpec.parse("litellm=litellm --port {port} --config cfg.yaml")
        #expect(command.command == "litellm --port {port} --config cfg.yaml")
        #expect(try PeerSpec.parse("x=/usr/sbin/nginx").command == "/usr/sbin/nginx")
        #expect(throws: SuiteError.self) { try PeerSpec.parse("nginx") }
        #expect(throws: SuiteError.self) { try PeerSpec.parse("direct=http://127.0.0.1:1") }
        #expect(throws: SuiteError.self) { try PeerSpec.parse("nginx=localhost:80") }
        #expect(PeerSpec.expand("p --listen {port} --to {upstream} --up-port {upstream_port}", port: 5000, upstreamPort: 9000)
            == "p --listen 5000 --to http://127.0.0.1:9000 --up-port 9000")
    }

    @Test func gatewayConfigIsTheMinimalOne() {
        let yaml = SuiteRunner.gatewayConfig(mockPort: 9123)
        #expect(yaml.contains(#"listen: ["127.0.0.1:0"], threads: 1"#))
        #expect(yaml.contains("base_url: \"http://127.0.0.1:9123/v1\", max_connections: 256"))
        #expect(yaml.contains("{provider: mock, model: gpt-4o-mini}"))
    }

    @Test func everyScenarioHasASlot() {
        #expect(SuiteScenarios.all.map(\.number) == Array(1...10))
        let notYet = SuiteScenarios.all.filter { $0.waitsFor != nil }.map(\.number)
        #expect(notYet == [3, 9])
    }

    // MARK: Best of rounds

    static func run(_ name: String, rps: Double, p50: UInt64, p99: UInt64, cpuNs: UInt64? = nil, process: String = "direct") throws -> RunResult {
        var config = LoadConfig(target: try BenchTarget(parsing: "127.0.0.1:9000"), request: RequestSpec())
        config.mode = .open(rate: rps)
        let stats = BenchStats()
        // 100 values: 50 at p50, 48 between, the top 2 at p99.
        for _ in 0..<50 { stats.latency.record(p50) }
        for _ in 0..<48 { stats.latency.record(p50 + (p99 - p50) / 2) }
        for _ in 0..<2 { stats.latency.record(p99) }
        stats.counters.responses = UInt64(rps)
        stats.counters.responsesInWindow = UInt64(rps)
        return RunResult(
            name: name, config: config, stats: stats, workers: [stats], windowNs: 1_000_000_000, cpuNs: 0,
            processes: cpuNs.map { [ProcessCPUUsage(name: process, pid: 1, cpuNs: $0)] } ?? [], preciseTimer: true)
    }

    @Test func bestOfRoundsTakesEachTargetsBestRound() throws {
        let direct = try BenchTarget(parsing: "127.0.0.1:1")
        let via = try BenchTarget(parsing: "127.0.0.1:2")
        let load = LoadConfig(target: direct, request: RequestSpec())
        var options = CompareOptions(direct: direct, vias: [("gateway", via)], load: load)
        options.mode = .latency
        let rounds: [[RunResult]] = [
            [try SuiteTests.run("direct", rps: 1000, p50: 50_000, p99: 100_000, cpuNs: 10_000_000),
             try SuiteTests.run("gateway", rps: 900, p50: 150_000, p99: 400_000, cpuNs: 18_000_000, process: "gateway")],
            // Direct hit by a stall (p99 3 ms): paired with its own round, the gateway would look only 100 µs slower.
            [try SuiteTests.run("direct", rps: 1000, p50: 50_000, p99: 3_000_000, cpuNs: 10_000_000),
             try SuiteTests.run("gateway", rps: 950, p50: 150_000, p99: 3_100_000, cpuNs: 20_000_000, process: "gateway")],
            [try SuiteTests.run("direct", rps: 1000, p50: 50_000, p99: 100_000, cpuNs: 12_000_000),
             try SuiteTests.run("gateway", rps: 800, p50: 150_000, p99: 600_000, cpuNs: 20_000_000, process: "gateway")],
        ]
        let outcome = CompareOutcome(options: options, rounds: rounds, rate: 1000, directMaxRPS: 4000, lowLoadP99Ns: 150_000,
                                     summary: [])
        // (400 µs, the gateway's lowest p99 − 100 µs, direct's lowest) ÷ 50 µs, not (3.1 ms − 3 ms) ÷ 50 µs = 2.
        let delta = try #require(SuiteRunner.bestDeltaP99OverDirectP50(outcome, via: 1))
        #expect(abs(delta - 6) < 0.1, "\(delta)")
        // 950 (the gateway's best) ÷ 1000 (direct's best).
        #expect(SuiteRunner.bestRPSRatio(outcome, via: 1) == 0.95)
        // CPU per response: the gateway's lowest, 18 ms / 900 = 20 µs, ÷ direct's lowest, 10 ms / 1000 = 10 µs.
        let cpu = try #require(SuiteRunner.bestCPURatio(outcome, via: 1))
        #expect(abs(cpu - 2.0) < 0.001, "\(cpu)")
        // Without CPU samples there is no CPU ratio.
        let bare = CompareOutcome(options: options, rounds: [[try SuiteTests.run("direct", rps: 1, p50: 1, p99: 2),
                                                             try SuiteTests.run("gateway", rps: 1, p50: 1, p99: 2)]],
                                  rate: nil, directMaxRPS: nil, lowLoadP99Ns: nil, summary: [])
        #expect(SuiteRunner.bestCPURatio(bare, via: 1) == nil)
    }

    // MARK: The malloc counter itself

    /// Builds scripts/bench/malloc-counter.c and preloads it into `sleep`: SIGUSR2 writes counts, SIGUSR1 zeroes
    /// them. Skipped without a C compiler.
    @Test func mallocCounterLibraryCountsAndResets() throws {
        let source = GateTests.repositoryRoot + "/scripts/bench/malloc-counter.c"
        guard Tool.find("cc") != nil, FileManager.default.fileExists(atPath: source) else { return }
        let dir = NSTemporaryDirectory() + "malloc-counter-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let library = dir + "/libmalloccounter.so"
        let built = Tool.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, source, "-ldl"], in: dir)
        #expect(built.ok, "\(built.output)")
        let out = dir + "/counts.txt"
        let child = try ChildProcess.spawn(
            name: "sleep", executable: "sleep", arguments: ["30"], environment: ["LD_PRELOAD": library, "MALLOC_COUNTER_OUT": out],
            logPath: dir + "/sleep.log")
        defer { child.stop(signal: SIGKILL, timeoutNs: 5_000_000_000) }
        // Before the library's constructor has run, a SIGUSR would end the process: give it time to start.
        usleep(200_000)
        func counts(after signal: Int32) -> [String: UInt64]? {
            unlink(out)
            child.signal(signal)
            for _ in 0..<2_000 {
                if let text = Files.read(out), let parsed = MallocCounterReport.parse(text) { return parsed }
                usleep(1_000)
            }
            return nil
        }
        let first = try #require(counts(after: SIGUSR2), "no counts from the preloaded library: \(child.log)")
        #expect(first["total"]! >= first["malloc"]!)
        let reset = try #require(counts(after: SIGUSR1))
        #expect(reset["total"] == 0)
        #expect(child.isRunning)
    }
}
