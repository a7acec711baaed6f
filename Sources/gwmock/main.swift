import ArgumentParser
import GatewayMock

/// gwmock: a fast mock LLM provider (OpenAI and Anthropic shapes) for tests and benchmarks.
/// All logic lives in GatewayMock; this file only turns flags into `MockOptions`.
struct GWMock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gwmock",
        abstract: "A fast mock LLM provider for tests and benchmarks.",
        discussion: """
            Per-request headers override the defaults: x-mock-status, x-mock-latency-ms, x-mock-ttft-ms, \
            x-mock-itl-ms, x-mock-chunks, x-mock-usage: P,C and x-mock-fault: reset|stall|close-mid-body. \
            GET /mock/stats returns the request counts.
            """)

    @Option(help: "HOST:PORT to listen on; port 0 picks a free port.")
    var listen: String

    @Option(help: "Reactor threads.")
    var threads = 1

    @Option(help: "Default delay before the response head, in ms.")
    var latencyMs = 0

    @Option(help: "Default delay before the first stream event, in ms.")
    var ttftMs = 0

    @Option(help: "Default delay between stream events, in ms.")
    var itlMs = 0

    @Option(help: "Default content chunks per response (= completion tokens).")
    var chunks = 16

    @Option(help: "Fraction of model requests answered with --fail-status (every round(1/P)-th).")
    var failRate = 0.0

    @Option(help: "The status of the requests picked by --fail-rate.")
    var failStatus = 500

    @Option(help: ArgumentHelp(
        "A provider to play at /NAME/v1/...: NAME:key=value,... with status, retry-after, latency-ms, ttft-ms, itl-ms, "
            + "chunks, fault (reset|stall|close-mid-body). Repeatable; POST /mock/profiles/NAME?key=value&... changes one at run time.",
        valueName: "NAME:SETTINGS"))
    var profile: [String] = []

    @Option(help: "TLS certificate chain (PEM): serve HTTPS, HTTP/2 (h2) or HTTP/1.1 as ALPN chooses.")
    var tlsCert: String?

    @Option(help: "TLS private key (PEM), with --tls-cert.")
    var tlsKey: String?

    @Option(name: .customLong("h2-max-streams"), help: "HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS, the streams a client may open at once on one connection.")
    var h2MaxStreams = 100

    @Option(name: .customLong("h2-goaway-after"), help: "HTTP/2: send a graceful GOAWAY after this many streams on a connection (0: never).")
    var h2GoAwayAfter = 0

    func run() throws {
        var options = MockOptions(listen: listen)
        options.threads = threads
        options.latencyMs = latencyMs
        options.ttftMs = ttftMs
        options.itlMs = itlMs
        options.chunks = chunks
        options.failRate = failRate
        options.failStatus = failStatus
        options.profiles = try profile.map { flag in
            do throws(MockProfile.ParseError) { return try MockProfile(flag: flag) } catch {
                throw ValidationError("--profile: \(error)")
            }
        }
        options.tlsCert = tlsCert
        options.tlsKey = tlsKey
        options.h2MaxStreams = h2MaxStreams
        options.h2GoAwayAfter = h2GoAwayAfter
        let code = try MockServer(options: options).run()
        if code != 0 { throw ExitCode(code) }
    }
}

GWMock.main()
