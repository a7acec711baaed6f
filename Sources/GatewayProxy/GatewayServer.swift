#if canImport(Glibc)
import Glibc
#endif
import CShims
import GatewayConfig
import GatewayIO

/// Runs the gateway: one reactor thread per core, each with its own listener, pools and buffers.
/// The calling thread waits for signals: SIGTERM and SIGINT drain, SIGHUP reloads the configuration.
public final class GatewayServer {
    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    private let configPath: String?
    private var config: RuntimeConfig
    private let threadCount: Int
    private let listenOverride: String?
    private var loops: [EventLoop] = []
    private var contexts: [LoopContext] = []
    private var threads: [pthread_t] = []

    /// - Parameters:
    ///   - configPath: re-read on SIGHUP; nil disables reload.
    ///   - listen: replaces `server.listen` ("HOST:PORT").
    ///   - threads: replaces `server.threads`.
    public init(configuration: GatewayConfiguration, configPath: String?, listen: String? = nil, threads: Int? = nil) throws {
        self.configPath = configPath
        self.config = try RuntimeConfig(configuration)
        self.listenOverride = listen
        self.threadCount = max(1, threads ?? configuration.server.threads ?? CPU.available)
    }

    /// Binds, prints the `listening` lines, serves until SIGTERM/SIGINT, drains, and returns the exit code.
    public func run() throws -> Int32 {
        // Block the signals before any thread exists, so that every thread inherits the mask.
        let signalFD = CShims_signalfd_for_shutdown_signals()
        guard signalFD >= 0 else { throw StartupError(description: "cannot create a signalfd") }
        for address in try start() {
            printLine("listening http://\(address)")
        }
        waitForSignals(signalFD)
        join()
        Log.info("drained; exiting")
        return 0
    }

    /// Binds every listener and starts the reactor threads; returns the bound addresses.
    /// For embedding (benchmarks, tests); `run()` is the process entry point.
    public func start() throws -> [SocketAddress] {
        var addresses: [SocketAddress] = []
        if let listenOverride {
            addresses.append(try parseListen(listenOverride))
        } else {
            for listen in config.source.server.listen {
                if listen.tls { throw StartupError(description: "server.listen: tls:// listeners arrive with the TLS issue") }
                addresses.append(try parseListen(listen.hostPort))
            }
        }
        for index in 0..<threadCount {
            let loop = EventLoop(index: index)
            loops.append(loop)
            contexts.append(LoopContext(loop: loop, config: config))
        }
        var bound: [SocketAddress] = []
        for address in addresses {
            var current = address
            for context in contexts {
                let (fd, actual): (Int32, SocketAddress)
                do {
                    (fd, actual) = try Sockets.listen(on: current)
                } catch {
                    throw StartupError(description: "cannot listen on \(current): \(error)")
                }
                current = actual
                context.listeners.append(Acceptor(fd: fd, loop: context.loop) { [unowned context] client, peer in
                    context.clientCount += 1
                    ClientConnection(fd: client, peer: peer, context: context).start()
                })
            }
            bound.append(current)
        }
        let cpus = CPU.available
        for (index, loop) in loops.enumerated() {
            threads.append(loop.startThread(pinTo: threadCount > 1 && cpus >= threadCount ? index % cpus : nil))
        }
        return bound
    }

    /// Starts a graceful drain on every thread: stop accepting, finish requests in flight.
    public func beginDrain() {
        for (loop, context) in zip(loops, contexts) {
            nonisolated(unsafe) let context = context
            loop.execute { _ in context.beginDrain() }
        }
    }

    /// Waits for every reactor thread to end (after a drain).
    public func join() {
        for thread in threads { Threads.join(thread) }
        threads.removeAll()
    }

    private func parseListen(_ text: String) throws -> SocketAddress {
        var hostPort = text
        if hostPort.hasPrefix("http://") { hostPort.removeFirst(7) }
        do {
            return try SocketAddress(parsing: hostPort)
        } catch {
            throw StartupError(description: "server.listen: \(error)")
        }
    }

    private func waitForSignals(_ signalFD: Int32) {
        var pollFD = pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&pollFD, 1, -1)
            if ready < 0 { continue }
            let signal = CShims_read_signalfd(signalFD)
            switch signal {
            case SIGHUP:
                reload()
            case SIGTERM, SIGINT:
                Log.info("signal \(signal): draining")
                beginDrain()
                return
            default:
                continue
            }
        }
    }

    private func reload() {
        guard let configPath else { return }
        do {
            let configuration = try GatewayConfiguration.load(path: configPath)
            let runtime = try RuntimeConfig(configuration)
            config = runtime
            for (loop, context) in zip(loops, contexts) {
                nonisolated(unsafe) let context = context
                loop.execute { _ in context.apply(runtime) }
            }
            Log.info("configuration reloaded from \(configPath)")
        } catch {
            Log.error("reload failed, keeping the running configuration:\n\(error)")
        }
    }
}
