import ArgumentParser
import GatewayBench

struct GWBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gwbench",
        abstract: "The gateway's load generator: closed and open loop HTTP/1.1 and HTTP/2 (h2c, or h2 over TLS) load, HdrHistogram latencies.",
        subcommands: [RunCommand.self, CompareCommand.self, SuiteCommand.self, CheckCommand.self, HandshakesCommand.self])
}

/// The load options `run` and `compare` share.
struct LoadOptions: ParsableArguments {
    @Option(name: [.customShort("c", allowingJoined: true), .long], help: "Connections (closed loop: one request in flight on each).")
    var connections = 32
    @Option(name: [.customShort("m", allowingJoined: true), .long], help: "Streams per connection (HTTP/2: --h2 or --h2c).")
    var streams = 1
    @Flag(help: "HTTP/2 over cleartext with prior knowledge (h2c); every target of the run speaks it.")
    var h2c = false
    @Flag(help: "HTTP/2 over TLS, chosen by ALPN (https:// URLs); every target of the run speaks it.")
    var h2 = false
    @Option(name: [.customShort("t", allowingJoined: true), .long], help: "Threads, each with its own event loop and share of the connections.")
    var threads = 1
    @Option(name: [.customShort("d", allowingJoined: true), .long], help: "Measured duration, e.g. 5s, 500ms (default 10s unless -n is given).")
    var duration: String?
    @Option(help: "Warm-up before the measured window; its results are discarded.")
    var warmup = "1s"
    @Option(name: [.customShort("n", allowingJoined: true), .customLong("requests")], help: "Measured requests to send (instead of, or as well as, -d).")
    var requests: Int?
    @Option(help: "Open loop: requests per second on a fixed schedule, latency counted from each intended send time.")
    var rate: Double?
    @Option(help: "Per-request timeout.")
    var timeout = "30s"
    @Option(help: "HTTP method.")
    var method = "POST"
    @Option(name: .customLong("header"), help: "An extra request header, 'Name: value' (repeatable).")
    var headers: [String] = []
    @Option(help: "API key, sent as 'Authorization: Bearer KEY'.")
    var key: String?
    @Option(help: "The model of the built-in chat request.")
    var model = "gpt-4o-mini"
    @Option(help: "Send this file as the body instead of the built-in chat request.")
    var body: String?
    @Option(help: "The size of the built-in chat request body in bytes.")
    var promptBytes = 300
    @Flag(help: "Ask for a streamed (SSE) response: \"stream\": true.")
    var stream = false
    @Option(help: "Pin the worker threads to these CPUs, round robin, e.g. 1 or 0,1.")
    var pin: String?
    @Option(help: "Process CPU to measure over the window: NAME=PID (repeatable); 'direct=PID' for the direct target.")
    var pid: [String] = []
    @Option(help: "A note on where things run (pinning, cores), recorded in the JSON.")
    var arrangement: String?
    @Flag(help: "https targets: accept any certificate (a self-signed mock).")
    var insecure = false

    func config(target: BenchTarget, progress: Bool) throws -> LoadConfig {
        var spec = RequestSpec()
        spec.method = method.uppercased()
        spec.apiKey = key
        spec.model = model
        spec.promptBytes = promptBytes
        spec.stream = stream
        for header in headers {
            guard let parsed = RequestSpec.parseHeader(header) else {
                throw ValidationError("--header '\(header)': expected 'Name: value'")
            }
            spec.headers.append(parsed)
        }
        if let body {
            guard let bytes = Files.readBytes(body) else { throw ValidationError("--body: cannot read \(body)") }
            spec.body = bytes
        }
        if h2 && h2c { throw ValidationError("--h2 and --h2c: choose one (--h2 for https:// URLs, --h2c for http://)") }
        var config = LoadConfig(target: target, request: spec)
        if h2c { config.httpProtocol = .h2c }
        if h2 { config.httpProtocol = .h2 }
        config.connections = connections
        config.streamsPerConnection = streams
        config.insecure = insecure
        config.threads = threads
        if let duration {
            guard let ns = Durations.parse(duration) else { throw ValidationError("-d '\(duration)': expected e.g. 5s or 500ms") }
            config.durationNs = ns
        } else {
            config.durationNs = requests == nil ? 10_000_000_000 : nil
        }
        guard let warm = Durations.parse(warmup) else { throw ValidationError("--warmup '\(warmup)': expected e.g. 1s or 500ms") }
        config.warmupNs = warm
        guard let time = Durations.parse(timeout) else { throw ValidationError("--timeout '\(timeout)': expected e.g. 30s") }
        config.timeoutNs = time
        config.requestCount = requests
        if let rate { config.mode = .open(rate: rate) }
        if let pin {
            let cpus = pin.split(separator: ",").map { Int($0.trimmingCharacters()) }
            guard !cpus.isEmpty, cpus.allSatisfy({ $0 != nil && $0! >= 0 }) else { throw ValidationError("--pin '\(pin)': expected CPU numbers like 0,1") }
            config.pinCPUs = cpus.map { $0! }
        }
        for entry in pid {
            guard let equals = entry.firstIndex(of: "="), let number = Int32(entry[entry.index(after: equals)...]), number > 0 else {
                throw ValidationError("--pid '\(entry)': expected NAME=PID")
            }
            config.observedProcesses.append(ObservedProcess(name: String(entry[..<equals]), pid: number))
        }
        config.progress = progress
        do {
            try config.validate()
        } catch {
            throw ValidationError(error.description)
        }
        return config
    }
}

extension Substring {
    func trimmingCharacters() -> Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}

func parseTarget(_ url: String) throws -> BenchTarget {
    do {
        return try BenchTarget(parsing: url)
    } catch {
        throw ValidationError(error.description)
    }
}

func write(_ text: String, to path: String) throws {
    do {
        try Files.write(text, to: path)
    } catch {
        throw ValidationError(error.description)
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load one URL and report RPS, latency percentiles, errors and CPU.",
        discussion: """
            Closed loop by default (-c connections, one request in flight each). With --rate, open loop: requests \
            go out on a fixed schedule and latency counts from each request's intended send time (coordinated \
            omission corrected); the uncorrected latency is kept beside it. URL: http://HOST:PORT[/PATH]; the path \
            defaults to /v1/chat/completions.
            """)

    @Argument(help: "http://HOST:PORT[/PATH]")
    var url: String
    @OptionGroup var load: LoadOptions
    @Option(help: "Write the result as JSON (Nighthawk's shape) to FILE.")
    var json: String?
    @Option(help: "Write the corrected latency distribution in HdrHistogram's .hgrm format (ms) to FILE.")
    var hgrm: String?
    @Flag(help: "No live progress line.")
    var quiet = false

    func run() throws {
        let config = try load.config(target: try parseTarget(url), progress: !quiet)
        let result: RunResult
        do {
            result = try LoadRunner.run(config)
        } catch {
            throw ValidationError(error.description)
        }
        print(TextReport.run(result), terminator: "")
        if let json {
            let report = RunReport(result: result, arrangement: load.arrangement)
            try write(try JSONOutput.encode(report), to: json)
        }
        if let hgrm {
            try write(HgrmOutput.text(result.stats.latency), to: hgrm)
            let base = hgrm.hasSuffix(".hgrm") ? String(hgrm.dropLast(5)) : hgrm
            try write(HgrmOutput.text(result.stats.latencyUncorrected), to: base + ".uncorrected.hgrm")
        }
    }
}

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "The same load against direct and via targets, interleaved round by round: medians, spreads, deltas.",
        discussion: """
            Throughput mode (default): closed loop at saturation, RPS ratio via ÷ direct. Latency mode: open loop \
            at --rate, or at --rate-fraction of direct's maximum (measured first); Δp50…Δp99.9 via − direct. A \
            latency point where direct's p99 exceeds twice its low-load p99 is reported as saturated, not quoted.
            """)

    @Option(help: "The direct target, http://HOST:PORT[/PATH].")
    var direct: String
    @Option(help: "A target via something, NAME=URL (repeatable).")
    var via: [String] = []
    @Option(help: "Rounds; each target runs once per round, in order, each run with its own warm-up.")
    var rounds = 3
    @Option(help: "throughput (closed loop) or latency (open loop).")
    var mode = "throughput"
    @Option(help: "Latency mode: the rate as a fraction of direct's maximum (default 0.5 when --rate is not given).")
    var rateFraction: Double?
    @OptionGroup var load: LoadOptions
    @Option(help: "Write all rounds and the summary as JSON to FILE.")
    var json: String?
    @Flag(help: "No live progress line.")
    var quiet = false

    func run() throws {
        var vias: [(name: String, target: BenchTarget)] = []
        for entry in via {
            guard let equals = entry.firstIndex(of: "=") else { throw ValidationError("--via '\(entry)': expected NAME=URL") }
            vias.append((String(entry[..<equals]), try parseTarget(String(entry[entry.index(after: equals)...]))))
        }
        guard let compareMode = CompareOptions.Mode(rawValue: mode) else {
            throw ValidationError("--mode '\(mode)': expected throughput or latency")
        }
        let directTarget = try parseTarget(direct)
        var config = try load.config(target: directTarget, progress: !quiet)
        let rate = load.rate
        config.mode = .closed
        var options = CompareOptions(direct: directTarget, vias: vias, load: config)
        options.rounds = rounds
        options.mode = compareMode
        options.rate = rate
        options.rateFraction = rateFraction
        options.arrangement = load.arrangement
        let outcome: CompareOutcome
        do {
            outcome = try CompareRunner.run(options) { print($0) }
        } catch {
            throw ValidationError(error.description)
        }
        print("")
        print(CompareRunner.text(outcome), terminator: "")
        if let json {
            try write(try JSONOutput.encode(outcome.report()), to: json)
        }
    }
}
