#if canImport(Glibc)
import Glibc
#endif
import GatewayConfig
import GatewayIO

/// The admin API's HTTP/1.1 server on `admin.listen`: its own event loop thread (admin traffic is light
/// and must not share a reactor with client traffic) plus one worker thread for backend calls.
///
/// Routes (DESIGN.md, "Admin API"): `GET /health`, `GET /ready` and `GET /metrics` need no key;
/// everything under `/admin/` needs `Authorization: Bearer <admin key>` and answers 503 when no admin
/// key is configured. The server prints nothing: `start()` returns the bound address, and the caller
/// prints `admin http://HOST:PORT`.
public final class AdminServer: @unchecked Sendable {
    public struct Options: Sendable {
        /// The largest request body accepted (413 beyond).
        public var maxBodyBytes: Int
        /// How long a request's head and body may take to arrive.
        public var headerTimeoutNs: UInt64
        /// How long a keep-alive connection may stay idle, or a response wait for the client to read it.
        public var idleTimeoutNs: UInt64
        /// Connections beyond this are closed as they are accepted.
        public var maxConnections: Int

        public init(maxBodyBytes: Int = 1 << 20, headerTimeoutMs: Int = 10_000, idleTimeoutMs: Int = 60_000, maxConnections: Int = 256) {
            self.maxBodyBytes = maxBodyBytes
            self.headerTimeoutNs = UInt64(max(1, headerTimeoutMs)) * 1_000_000
            self.idleTimeoutNs = UInt64(max(1, idleTimeoutMs)) * 1_000_000
            self.maxConnections = maxConnections
        }
    }

    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    private let listen: String
    private let router: AdminRouter
    private let options: Options
    private var loop: EventLoop?
    private var host: AdminLoop?
    private var thread: pthread_t?
    private let worker = AdminWorker()
    /// The bound address, once started.
    public private(set) var address: SocketAddress?

    /// - Parameters:
    ///   - listen: "HOST:PORT" (an `http://` prefix is accepted); port 0 picks a free port.
    ///   - adminKey: the bearer key for `/admin/`; nil or empty disables those routes (503).
    ///   - keyEnv: the variable the key is read from, named in the 503 message.
    public init(listen: String, adminKey: String?, keyEnv: String? = nil, backend: any AdminBackend, options: Options = Options()) {
        self.listen = listen
        self.router = AdminRouter(backend: backend, adminKey: adminKey, keyEnv: keyEnv)
        self.options = options
    }

    /// From the config's `admin` section.
    public convenience init(settings: AdminSettings, backend: any AdminBackend, options: Options = Options()) {
        self.init(listen: settings.listen, adminKey: settings.key, keyEnv: settings.keyEnv, backend: backend, options: options)
    }

    /// Replaces the admin key, for a reload that changed it. Safe from any thread.
    public func setAdminKey(_ key: String?) {
        router.setAdminKey(key)
    }

    /// Binds and starts the threads. Call once.
    /// - Returns: the bound address, with the real port when asked for port 0.
    public func start() throws -> SocketAddress {
        precondition(loop == nil, "AdminServer.start() called twice")
        var hostPort = listen
        if hostPort.hasPrefix("http://") { hostPort.removeFirst(7) }
        let requested: SocketAddress
        do {
            requested = try SocketAddress(parsing: hostPort)
        } catch {
            throw StartupError(description: "admin.listen: \(error)")
        }
        let fd: Int32
        let bound: SocketAddress
        do {
            (fd, bound) = try Sockets.listen(on: requested, backlog: 128)
        } catch {
            throw StartupError(description: "cannot listen on \(requested) (admin.listen): \(error)")
        }
        let loop = EventLoop(index: 0)
        let host = AdminLoop(loop: loop, router: router, worker: worker, options: options)
        host.listen(fd: fd)
        self.loop = loop
        self.host = host
        worker.start()
        thread = loop.startThread()
        address = bound
        return bound
    }

    /// Stops accepting, closes every admin connection, and waits for both threads to end. Idempotent.
    public func shutdown() {
        guard let loop, let thread else { return }
        nonisolated(unsafe) let host = self.host
        loop.execute { loop in
            host?.close()
            loop.stop()
        }
        Threads.join(thread)
        self.thread = nil
        worker.stop()
    }

    deinit {
        shutdown()
    }
}

/// What the admin loop's thread owns: the acceptor, the connection count, and the shared parts the
/// connections use.
final class AdminLoop {
    let loop: EventLoop
    let router: AdminRouter
    let worker: AdminWorker
    let options: AdminServer.Options
    private var acceptor: Acceptor?
    private(set) var connections = 0
    private(set) var stopping = false

    init(loop: EventLoop, router: AdminRouter, worker: AdminWorker, options: AdminServer.Options) {
        self.loop = loop
        self.router = router
        self.worker = worker
        self.options = options
    }

    func listen(fd: Int32) {
        acceptor = Acceptor(fd: fd, loop: loop) { [unowned self] client, _ in
            guard !stopping, connections < options.maxConnections else {
                Posix.close(client)
                return
            }
            connections += 1
            AdminConnection(fd: client, host: self).start()
        }
    }

    func connectionClosed() {
        connections -= 1
    }

    /// On the loop's thread: stop accepting and close every connection.
    func close() {
        stopping = true
        acceptor?.close()
        acceptor = nil
        loop.forEachHandler { ($0 as? AdminConnection)?.closeNow() }
    }
}
