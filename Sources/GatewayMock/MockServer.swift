#if canImport(Glibc)
import Glibc
#endif
import CShims
import GatewayHTTP
import GatewayIO

/// Runs gwmock: one reactor thread per `--threads`, each with its own SO_REUSEPORT listener, counters and
/// buffers. The calling thread waits for SIGTERM or SIGINT and then stops the loops (no drain: a mock).
public final class MockServer {
    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    private let options: MockOptions

    /// - Throws: `StartupError` when an option is out of range.
    public init(options: MockOptions) throws(StartupError) {
        try options.validate()
        self.options = options
    }

    /// Binds, prints `listening http://HOST:PORT`, serves until SIGTERM/SIGINT, and returns the exit code.
    public func run() throws(StartupError) -> Int32 {
        // Block the signals before any thread exists, so that every thread inherits the mask.
        let signalFD = CShims_signalfd_for_shutdown_signals()
        guard signalFD >= 0 else { throw StartupError(description: "cannot create a signalfd") }
        var hostPort = options.listen
        if hostPort.hasPrefix("http://") { hostPort.removeFirst(7) }
        let address: SocketAddress
        do {
            address = try SocketAddress(parsing: hostPort)
        } catch {
            throw StartupError(description: "--listen: \(error)")
        }
        var tls: TLSContext?
        if let cert = options.tlsCert, let key = options.tlsKey {
            do {
                tls = try TLSContext.server(certificateFile: cert, keyFile: key, alpn: [.h2, .http11])
            } catch {
                throw StartupError(description: "--tls-cert/--tls-key: \(error)")
            }
        }
        let shared = MockShared(options: options)
        var bound = address
        for context in shared.contexts {
            let fd: Int32
            do {
                (fd, bound) = try Sockets.listen(on: bound)
            } catch {
                throw StartupError(description: "cannot listen on \(bound): \(error)")
            }
            context.listener = Acceptor(fd: fd, loop: context.loop) { [unowned context] client, _ in
                context.stats.connections += 1
                MockConnection(fd: client, context: context, tls: tls).start()
            }
        }
        printLine("listening \(tls == nil ? "http" : "https")://\(bound)")
        let threads = shared.contexts.map { $0.loop.startThread() }
        waitForShutdown(signalFD)
        for context in shared.contexts {
            context.loop.execute { loop in loop.stop() }
        }
        for thread in threads { Threads.join(thread) }
        Posix.close(signalFD)
        return 0
    }

    private func waitForShutdown(_ signalFD: Int32) {
        var pollFD = pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)
        while true {
            if poll(&pollFD, 1, -1) < 0 { continue }
            let signal = CShims_read_signalfd(signalFD)
            if signal == SIGTERM || signal == SIGINT { return }
        }
    }
}

/// What the threads share: the options and every loop's context. Built before the threads start and
/// never changed after; a context's mutable state is touched only on its own loop's thread.
final class MockShared: @unchecked Sendable {
    let options: MockOptions
    let contexts: [MockLoopContext]
    let profiles: MockProfiles

    init(options: MockOptions) {
        self.options = options
        profiles = MockProfiles(options.profiles)
        contexts = (0..<options.threads).map { MockLoopContext(loop: EventLoop(index: $0), options: options) }
        for context in contexts { context.shared = self }
    }
}

/// One reactor thread's own state: its loop, listener, counters and the request defaults.
final class MockLoopContext {
    let loop: EventLoop
    weak var shared: MockShared?
    var listener: Acceptor?
    let stats = ThreadStats()
    /// The plan every request starts from: the command-line defaults.
    let defaults: RequestPlan
    let failEvery: Int
    let failStatus: Int
    /// HTTP/2 connections: their SETTINGS, and the streams after which they send GOAWAY (0: never).
    let h2Settings: HTTP2Session.Settings
    let h2GoAwayAfter: Int
    private var failCounter = 0
    private var sequence = 0
    /// Wall-clock seconds for `created`, refreshed on every tick rather than read per request.
    private(set) var createdSeconds: Int

    init(loop: EventLoop, options: MockOptions) {
        self.loop = loop
        var plan = RequestPlan()
        plan.latencyNs = UInt64(options.latencyMs) * 1_000_000
        plan.ttftNs = UInt64(options.ttftMs) * 1_000_000
        plan.itlNs = UInt64(options.itlMs) * 1_000_000
        plan.chunks = options.chunks
        defaults = plan
        failEvery = options.failEvery
        failStatus = options.failStatus
        var settings = MockH2Connection.settings
        settings.maxConcurrentStreams = UInt32(options.h2MaxStreams)
        h2Settings = settings
        h2GoAwayAfter = options.h2GoAwayAfter
        createdSeconds = Int(Clock.realtimeNs() / 1_000_000_000)
        loop.tickHook = { [unowned self] _ in
            self.createdSeconds = Int(Clock.realtimeNs() / 1_000_000_000)
        }
    }

    private var profileTable = ProfileTable()

    /// The profile a request target names (`/NAME/v1/...`), with the rest of the target.
    func profile(for target: UnsafeRawBufferPointer) -> (profile: MockProfile, index: Int, rest: UnsafeRawBufferPointer)? {
        // Plain API paths, the common case, never look at the shared table.
        guard target.count > 4, !(target[1] == UInt8(ascii: "v") && target[2] == UInt8(ascii: "1")),
              let shared else { return nil }
        profileTable.refresh(from: shared.profiles)
        if stats.profileNames.count != profileTable.names.count { stats.profileNames = profileTable.names }
        return profileTable.match(target)
    }

    /// The next response id number.
    func nextSequence() -> Int {
        sequence &+= 1
        return sequence
    }

    /// True when `--fail-rate` picks this model request to fail.
    func pickedToFail() -> Bool {
        guard failEvery > 0 else { return false }
        failCounter &+= 1
        return failCounter % failEvery == 0
    }
}

