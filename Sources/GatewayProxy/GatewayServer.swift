#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import GatewayAdmin
import GatewayConfig
import GatewayIO

/// Runs the gateway: one reactor thread per core, each with its own listener, pools and buffers, plus
/// the admin listener when `admin` is configured. The calling thread waits for signals: SIGTERM and
/// SIGINT drain (and flush the audit log), SIGHUP reloads the configuration.
public final class GatewayServer {
    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    public let control: GatewayControl
    private let configuration: GatewayConfiguration
    private let threadCount: Int
    private let listenOverride: String?
    private var loops: [EventLoop] = []
    private var contexts: [LoopContext] = []
    private var threads: [pthread_t] = []
    private var admin: AdminServer?
    /// The admin listener's address, once started.
    public private(set) var adminAddress: SocketAddress?
    /// For each address `start()` returned: true when it is a tls:// listener.
    public private(set) var boundTLS: [Bool] = []
    /// SIGTERM, SIGINT and SIGHUP arrive here, blocked in every thread (they are blocked before the first
    /// thread, the audit writer's, starts), so no signal can kill a thread mid-write.
    private let signalFD: Int32

    /// - Parameters:
    ///   - configPath: re-read on SIGHUP and `POST /admin/reload`; nil disables reload.
    ///   - listen: replaces `server.listen` ("HOST:PORT").
    ///   - threads: replaces `server.threads`.
    public init(configuration: GatewayConfiguration, configPath: String?, listen: String? = nil, threads: Int? = nil) throws {
        self.configuration = configuration
        signalFD = CShims_signalfd_for_shutdown_signals()
        guard signalFD >= 0 else { throw StartupError(description: "cannot create a signalfd") }
        control = try GatewayControl(
            configuration: configuration, configPath: configPath, environment: ProcessInfo.processInfo.environment)
        self.listenOverride = listen
        self.threadCount = max(1, threads ?? configuration.server.threads ?? CPU.available)
    }

    /// Binds, prints the `listening` lines, serves until SIGTERM/SIGINT, drains, and returns the exit code.
    public func run() throws -> Int32 {
        for (address, tls) in zip(try start(), boundTLS) {
            printLine("listening \(tls ? "https" : "http")://\(address)")
        }
        if let adminAddress { printLine("admin http://\(adminAddress)") }
        waitForSignals()
        join()
        Log.info("drained; exiting")
        return 0
    }

    /// Binds every listener and starts the reactor threads and the admin listener; returns the bound
    /// addresses of the client API. For embedding (benchmarks, tests); `run()` is the process entry point.
    public func start() throws -> [SocketAddress] {
        var addresses: [(SocketAddress, tls: Bool)] = []
        if let listenOverride {
            addresses.append((try parseListen(listenOverride), false))
        } else {
            for listen in configuration.server.listen {
                addresses.append((try parseListen(listen.hostPort), listen.tls))
            }
        }
        var serverTLS: TLSContext?
        if addresses.contains(where: { $0.tls }), let files = configuration.server.tls {
            do {
                serverTLS = try TLSContext.server(certificateFile: files.cert, keyFile: files.key, alpn: [.h2, .http11])
            } catch {
                throw StartupError(description: "server.tls: \(error)")
            }
        }
        for warning in configuration.warnings { Log.warning("\(warning.field): \(warning.message)") }
        if !control.runtime.authRequired {
            Log.warning("no keys, groups or admin API configured: serving without authentication (open mode)")
        }
        for index in 0..<threadCount {
            let loop = EventLoop(index: index)
            loops.append(loop)
            contexts.append(control.makeContext(loop: loop))
        }
        var bound: [SocketAddress] = []
        for (address, tls) in addresses {
            let listenerTLS = tls ? serverTLS : nil
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
                    if let listenerTLS {
                        guard let stream = try? TLSStream(server: listenerTLS, fd: client) else {
                            Posix.close(client)
                            context.clientCount -= 1
                            return
                        }
                        ClientConnection(fd: client, peer: peer, context: context, tls: stream).start()
                    } else {
                        ClientConnection(fd: client, peer: peer, context: context).start()
                    }
                })
            }
            bound.append(current)
            boundTLS.append(tls)
        }
        if let settings = configuration.admin {
            let server = AdminServer(settings: settings, backend: control)
            do {
                adminAddress = try server.start()
            } catch {
                throw StartupError(description: "admin.listen: cannot listen on \(settings.listen): \(error)")
            }
            admin = server
        }
        let cpus = CPU.available
        for (index, loop) in loops.enumerated() {
            threads.append(loop.startThread(pinTo: threadCount > 1 && cpus >= threadCount ? index % cpus : nil))
        }
        control.markReady()
        return bound
    }

    /// Starts a graceful drain on every thread: stop accepting, finish requests in flight.
    public func beginDrain() {
        for (loop, context) in zip(loops, contexts) {
            nonisolated(unsafe) let context = context
            loop.execute { _ in context.beginDrain() }
        }
    }

    /// Waits for every reactor thread to end (after a drain), stops the admin listener and flushes the
    /// audit log.
    public func join() {
        for thread in threads { Threads.join(thread) }
        threads.removeAll()
        admin?.shutdown()
        control.close()
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

    private func waitForSignals() {
        var pollFD = pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&pollFD, 1, -1)
            if ready < 0 { continue }
            let signal = CShims_read_signalfd(signalFD)
            switch signal {
            case SIGHUP:
                do {
                    let configuration = try control.reloadFromFile()
                    admin?.setAdminKey(configuration.admin?.key)
                    Log.info("configuration reloaded")
                } catch {
                    Log.error("reload failed, keeping the running configuration:\n\(error)")
                }
            case SIGTERM, SIGINT:
                Log.info("signal \(signal): draining")
                beginDrain()
                return
            default:
                continue
            }
        }
    }
}
