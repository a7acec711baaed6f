/// How gwmock runs: where it listens and the defaults that the per-request `x-mock-*` headers override.
public struct MockOptions: Sendable {
    /// "HOST:PORT"; port 0 picks a free port.
    public var listen: String
    /// Reactor threads, each with its own SO_REUSEPORT listener.
    public var threads = 1
    /// Delay before the response head (`x-mock-latency-ms`).
    public var latencyMs = 0
    /// Delay between the head and the first stream event (`x-mock-ttft-ms`).
    public var ttftMs = 0
    /// Delay between stream events (`x-mock-itl-ms`).
    public var itlMs = 0
    /// Content chunks per response, and so completion tokens (`x-mock-chunks`).
    public var chunks = 16
    /// The fraction of API requests answered with `failStatus`: every round(1 / failRate)-th one per thread.
    public var failRate = 0.0
    public var failStatus = 500
    /// The providers this gwmock plays besides the plain `/v1/...` one (`--profile NAME:key=value,...`).
    public var profiles: [MockProfile] = []
    public var tlsCert: String?
    public var tlsKey: String?
    /// HTTP/2: the SETTINGS_MAX_CONCURRENT_STREAMS a client may open on one connection.
    public var h2MaxStreams = 100
    /// HTTP/2: after this many streams on a connection, send a graceful GOAWAY (0: never), as providers do when they
    /// recycle connections.
    public var h2GoAwayAfter = 0

    public init(listen: String) {
        self.listen = listen
    }

    /// Checks the values; the message names the flag.
    func validate() throws(MockServer.StartupError) {
        func fail(_ text: String) -> MockServer.StartupError { MockServer.StartupError(description: text) }
        if (tlsCert == nil) != (tlsKey == nil) { throw fail("--tls-cert and --tls-key go together") }
        guard threads >= 1, threads <= 1024 else { throw fail("--threads must be between 1 and 1024") }
        guard latencyMs >= 0, ttftMs >= 0, itlMs >= 0 else { throw fail("--latency-ms, --ttft-ms and --itl-ms must be >= 0") }
        guard chunks >= 0, chunks <= MockLimits.maxChunks else { throw fail("--chunks must be between 0 and \(MockLimits.maxChunks)") }
        guard failRate >= 0, failRate <= 1 else { throw fail("--fail-rate must be between 0 and 1") }
        var names = Set<String>()
        for profile in profiles where !names.insert(profile.name).inserted {
            throw fail("--profile \(profile.name) is given twice")
        }
        guard failStatus >= 100, failStatus <= 999 else { throw fail("--fail-status must be an HTTP status (100-999)") }
        guard h2MaxStreams >= 1, h2MaxStreams <= 1_000_000 else { throw fail("--h2-max-streams must be between 1 and 1000000") }
        guard h2GoAwayAfter >= 0 else { throw fail("--h2-goaway-after must be >= 0") }
    }

    /// Answer every n-th API request with `failStatus`; 0 means never.
    var failEvery: Int {
        failRate > 0 ? max(1, Int((1 / failRate).rounded())) : 0
    }
}

enum MockLimits {
    static let maxChunks = 1_000_000
    /// Echoed model names are cut to this many bytes.
    static let maxModelBytes = 256
    /// Of a body too large for the read buffer, this much is kept for the `model` and `stream` lookup.
    static let scanBytes = 64 * 1024
    /// Embedding objects rendered at most, whatever the input count.
    static let maxEmbeddingInputs = 4096
    /// Past this many response bytes waiting for the socket, stop generating more.
    static let outputHighWater = 64 * 1024
}
