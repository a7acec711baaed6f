#if canImport(Glibc)
import Glibc
#endif
import GatewayIO
import Histogram

/// `gwbench handshakes`: how many TLS handshakes per second a server completes. Each of `connections` clients loops
/// connect → handshake → close on one event loop; with `resume` each client reads the ticket the server sends after
/// the handshake and the next handshake offers the latest one, so the figure is resumed handshakes. No request is sent.
public struct HandshakeLoadConfig: Sendable {
    public var target: BenchTarget
    public var connections = 16
    public var durationNs: UInt64 = 5_000_000_000
    public var warmupNs: UInt64 = 500_000_000
    public var resume = false
    public var insecure = false
    public var observedProcesses: [ObservedProcess] = []

    public init(target: BenchTarget) {
        self.target = target
    }
}

public struct HandshakeLoadResult: Sendable {
    public var handshakes: UInt64 = 0
    public var resumed: UInt64 = 0
    public var failures: UInt64 = 0
    public var windowNs: UInt64 = 0
    /// Connect to handshake done, ns.
    public var latency = BenchHistogram.bench()
    /// CPU ns of each observed process over the window.
    public var processCPU: [(name: String, cpuNs: UInt64?)] = []
    public var clientCPUNs: UInt64 = 0
    public var lastFailure = ""

    public var perSecond: Double { windowNs > 0 ? Double(handshakes) * 1e9 / Double(windowNs) : 0 }
}

public enum HandshakeLoad {
    public enum Failure: Error, CustomStringConvertible {
        case notTLS
        case context(String)
        public var description: String {
            switch self {
            case .notTLS: "gwbench handshakes needs an https:// URL"
            case .context(let reason): reason
            }
        }
    }

    /// Runs the load on the calling thread and returns when the window is over.
    public static func run(_ config: HandshakeLoadConfig) throws(Failure) -> HandshakeLoadResult {
        guard config.target.tls else { throw .notTLS }
        let context: TLSContext
        do {
            context = try TLSContext.client(caFile: nil, verifyPeer: !config.insecure, alpn: [.http11])
        } catch {
            throw .context(error.description)
        }
        let driver = HandshakeDriver(config: config, context: context)
        return driver.run()
    }
}

/// The loop and its clients; everything runs on one thread.
final class HandshakeDriver: TimerTarget {
    let config: HandshakeLoadConfig
    let context: TLSContext
    let loop = EventLoop(index: 0)
    var result = HandshakeLoadResult()
    private(set) var measuring = false
    private var clients: [HandshakeClient] = []
    private var cpuAtStart: [UInt64?] = []
    private var clientCPUAtStart: UInt64 = 0
    private var windowStart: UInt64 = 0

    init(config: HandshakeLoadConfig, context: TLSContext) {
        self.config = config
        self.context = context
    }

    func run() -> HandshakeLoadResult {
        let start = Clock.monotonicNs()
        loop.schedule(at: start + config.warmupNs, target: self, token: 1)
        loop.schedule(at: start + config.warmupNs + config.durationNs, target: self, token: 2)
        clients = (0..<config.connections).map { _ in HandshakeClient(driver: self) }
        for client in clients { client.open() }
        loop.run()
        for client in clients { client.close() }
        return result
    }

    func timerFired(token: UInt64) {
        let now = Clock.monotonicNs()
        if token == 1 {
            measuring = true
            windowStart = now
            cpuAtStart = config.observedProcesses.map { ProcessCPU.read(pid: $0.pid) }
            clientCPUAtStart = ProcessCPU.read(pid: getpid()) ?? 0
        } else {
            measuring = false
            result.windowNs = now - windowStart
            result.processCPU = zip(config.observedProcesses, cpuAtStart).map { process, before in
                let after = ProcessCPU.read(pid: process.pid)
                return (process.name, before.flatMap { b in after.map { $0 &- b } })
            }
            result.clientCPUNs = (ProcessCPU.read(pid: getpid()) ?? 0) &- clientCPUAtStart
            loop.stop()
        }
    }
}

/// One client: connect, handshake, close, again.
final class HandshakeClient: EventHandler, TimerTarget {
    private unowned let driver: HandshakeDriver
    private var fd: Int32 = -1
    private var registration = Registration.none
    private var tls: TLSStream?
    private var startedAt: UInt64 = 0
    /// The handshake is done; waiting for the ticket the server sends after it (resume mode).
    private var awaitingTicket = false
    private var ticketsBefore = 0
    /// Each client resumes its own sessions: a TLS 1.3 ticket is for one use, by one client.
    private let session = TLSSessionSlot()

    init(driver: HandshakeDriver) {
        self.driver = driver
    }

    func open() {
        startedAt = Clock.monotonicNs()
        do {
            let (descriptor, result) = try Sockets.connect(to: driver.config.target.address)
            fd = descriptor
            registration = driver.loop.register(fd: descriptor, interest: Interest.write, handler: self)
            if case .processed = result { step() }
        } catch {
            failed("connect: \(error)")
        }
    }

    func handleEvent(_ events: UInt32) {
        if tls == nil && (Posix.socketError(fd) != 0 || events & (EventBits.error | EventBits.hangup) != 0) {
            failed("connect failed")
            return
        }
        if awaitingTicket {
            readTicket()
        } else {
            step()
        }
    }

    func tick(now: UInt64) {
        // A handshake that hangs for 10 s is a failure, not a stall of the whole run.
        if fd >= 0 && now > startedAt + 10_000_000_000 { failed("handshake timed out") }
    }

    private func step() {
        if tls == nil {
            do {
                if !driver.config.resume { session.clear() }
                tls = try TLSStream(client: driver.context, fd: fd, host: driver.config.target.host, slot: session)
            } catch {
                failed(error.description)
                return
            }
        }
        switch tls!.handshake() {
        case .done:
            if driver.measuring {
                driver.result.handshakes += 1
                if tls!.sessionReused { driver.result.resumed += 1 }
                driver.result.latency.record(Clock.monotonicNs() - startedAt)
            }
            if driver.config.resume {
                // TLS 1.3 tickets are single use: take this connection's fresh one before closing, as a client
                // that resumes again must.
                ticketsBefore = session.sessionsStored
                awaitingTicket = true
                readTicket()
            } else {
                again()
            }
        case .wantRead:
            driver.loop.setInterest(registration, Interest.read)
        case .wantWrite:
            driver.loop.setInterest(registration, Interest.write)
        case .failed(let reason):
            failed(reason)
        }
    }

    /// TLS 1.3 sends tickets after the handshake: read until one is kept, then start over.
    private func readTicket() {
        var byte: UInt8 = 0
        switch try? tls!.read(&byte, 1) {
        case .wouldBlock?:
            if session.sessionsStored > ticketsBefore {
                again()
            } else {
                driver.loop.setInterest(registration, Interest.read)
            }
        default:
            again()  // data or close: the server sent no ticket we can use; carry on without one
        }
    }

    private func again() {
        close()
        if driver.loop.isRunning { open() }
    }

    private func failed(_ reason: String) {
        if driver.measuring { driver.result.failures += 1 }
        driver.result.lastFailure = reason
        close()
        // Back off a little so that a refusing server is not hammered in a tight loop (a timer: the other clients
        // keep going meanwhile).
        if driver.loop.isRunning { driver.loop.schedule(at: Clock.monotonicNs() + 1_000_000, target: self, token: 0) }
    }

    func timerFired(token: UInt64) {
        if driver.loop.isRunning && fd < 0 { open() }
    }

    func close() {
        awaitingTicket = false
        tls = nil
        if fd >= 0 {
            driver.loop.deregisterAndClose(registration)
            fd = -1
        }
    }
}

/// The text and JSON forms of a handshake run.
public enum HandshakeReport {
    public static func text(_ result: HandshakeLoadResult, config: HandshakeLoadConfig) -> String {
        let kind = config.resume ? "resumed" : "full"
        var text = "gwbench handshakes \(config.target.description) — \(kind) handshakes, \(config.connections) clients\n"
        let seconds = Double(result.windowNs) / 1e9
        text += "  window \(Format.fixed(seconds, 2))s: \(result.handshakes) handshakes (\(result.resumed) resumed), "
        text += "\(Format.fixed(result.perSecond, 0)) per second, \(result.failures) failures\n"
        if result.handshakes > 0 {
            let p = [50.0, 99].map { Format.fixed(Double(result.latency.valueAtPercentile($0)) / 1000, 0) }
            text += "  connect to handshake done: p50 \(p[0])µs, p99 \(p[1])µs\n"
            text += "  CPU (gwbench) \(Format.fixed(Double(result.clientCPUNs) / 1000 / Double(result.handshakes), 1))µs per handshake\n"
            for (name, cpu) in result.processCPU {
                guard let cpu else { continue }
                text += "  CPU (\(name)) \(Format.fixed(Double(cpu) / 1000 / Double(result.handshakes), 1))µs per handshake\n"
            }
        }
        if result.failures > 0 || result.handshakes == 0 { text += "  last failure: \(result.lastFailure)\n" }
        return text
    }

    /// `{"url":…,"resume":…,"connections":N,"window_s":…,"handshakes":N,"resumed":N,"failures":N,"per_second":…,
    /// "p50_us":…,"p99_us":…,"cpu_us_per_handshake":{"gwbench":…,NAME:…}}`
    public static func json(_ result: HandshakeLoadResult, config: HandshakeLoadConfig) -> String {
        func per(_ ns: UInt64) -> String {
            result.handshakes > 0 ? Format.fixed(Double(ns) / 1000 / Double(result.handshakes), 2) : "null"
        }
        var cpu = ["\"gwbench\":\(per(result.clientCPUNs))"]
        for (name, ns) in result.processCPU { cpu.append("\"\(name)\":\(ns.map(per) ?? "null")") }
        return """
            {"url":"\(config.target.description)","resume":\(config.resume),"connections":\(config.connections),\
            "window_s":\(Format.fixed(Double(result.windowNs) / 1e9, 3)),"handshakes":\(result.handshakes),\
            "resumed":\(result.resumed),"failures":\(result.failures),"per_second":\(Format.fixed(result.perSecond, 1)),\
            "p50_us":\(Format.fixed(Double(result.latency.valueAtPercentile(50)) / 1000, 1)),\
            "p99_us":\(Format.fixed(Double(result.latency.valueAtPercentile(99)) / 1000, 1)),\
            "cpu_us_per_handshake":{\(cpu.joined(separator: ","))}}

            """
    }
}
