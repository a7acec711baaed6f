/// One load run, fully described: where, how hard, for how long, and what each request is.
public struct LoadConfig: Sendable {
    public enum Mode: Sendable, Equatable {
        /// Each connection keeps one request in flight.
        case closed
        /// Requests go out on a fixed schedule of `rate` per second, whatever the server does.
        case open(rate: Double)
    }

    /// What the connections speak.
    public enum HTTPProtocol: String, Sendable, Equatable {
        case http1 = "http/1.1"
        /// HTTP/2 over cleartext with prior knowledge.
        case h2c
        /// HTTP/2 over TLS, chosen by ALPN.
        case h2
    }

    public var target: BenchTarget
    public var mode: Mode = .closed
    public var httpProtocol = HTTPProtocol.http1
    public var connections = 32
    /// Streams per connection (HTTP/2): requests in flight on each connection at once.
    public var streamsPerConnection = 1
    public var threads = 1
    /// The measured window. With `requestCount` and no explicit duration, the run ends on the count.
    public var durationNs: UInt64? = 10_000_000_000
    public var warmupNs: UInt64 = 1_000_000_000
    /// Measured requests to send; nil means the duration decides.
    public var requestCount: Int?
    public var timeoutNs: UInt64 = 30_000_000_000
    public var request: RequestSpec
    /// CPUs for the worker threads, round robin; empty means no pinning.
    public var pinCPUs: [Int] = []
    /// Show a live progress line (only when stdout is a terminal).
    public var progress = false
    /// Processes whose CPU use (/proc/PID/stat) is measured over the window, by name.
    public var observedProcesses: [ObservedProcess] = []
    /// https targets: accept any certificate (a self-signed mock).
    public var insecure = false

    public init(target: BenchTarget, request: RequestSpec) {
        self.target = target
        self.request = request
    }

    public struct ValidationError: Error, CustomStringConvertible {
        public var description: String
    }

    public func validate() throws(ValidationError) {
        if streamsPerConnection > 1 && httpProtocol == .http1 {
            throw ValidationError(description: "-m \(streamsPerConnection): more than one stream per connection needs HTTP/2 (--h2 or --h2c)")
        }
        if httpProtocol == .h2 && !target.tls {
            throw ValidationError(description: "--h2 is HTTP/2 over TLS and needs an https:// URL (use --h2c for cleartext HTTP/2)")
        }
        if httpProtocol == .h2c && target.tls {
            throw ValidationError(description: "--h2c is cleartext HTTP/2 and needs an http:// URL (use --h2 for HTTP/2 over TLS)")
        }
        guard streamsPerConnection >= 1, streamsPerConnection <= LoadConfig.maxStreamsPerConnection else {
            throw ValidationError(description: "-m must be between 1 and \(LoadConfig.maxStreamsPerConnection)")
        }
        guard connections >= 1 else { throw ValidationError(description: "-c must be at least 1") }
        guard threads >= 1, threads <= 256 else { throw ValidationError(description: "-t must be between 1 and 256") }
        guard threads <= connections else {
            throw ValidationError(description: "-t \(threads) is more than -c \(connections): each thread needs a connection")
        }
        if case .open(let rate) = mode, !(rate > 0 && rate.isFinite) {
            throw ValidationError(description: "--rate must be a positive number of requests per second")
        }
        if let requestCount, requestCount < 1 { throw ValidationError(description: "-n must be at least 1") }
        if durationNs == nil && requestCount == nil { throw ValidationError(description: "give -d or -n") }
        if let durationNs, durationNs == 0 { throw ValidationError(description: "-d must be longer than 0") }
        guard timeoutNs > 0 else { throw ValidationError(description: "--timeout must be longer than 0") }
    }

    /// Past the 100 streams most servers allow, nghttp2 holds requests back until streams close: more would only
    /// queue inside the load generator.
    public static let maxStreamsPerConnection = 1000

    public var modeDescription: String {
        switch mode {
        case .closed: "closed loop"
        case .open(let rate): "open loop at \(Format.fixed(rate, rate < 100 ? 1 : 0)) req/s"
        }
    }
}

/// A process whose CPU time is read from /proc/PID/stat at the start and end of the measured window.
public struct ObservedProcess: Sendable, Equatable {
    public var name: String
    public var pid: Int32
    public init(name: String, pid: Int32) {
        self.name = name
        self.pid = pid
    }
}
