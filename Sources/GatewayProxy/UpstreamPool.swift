import GatewayIO

/// A thread's connections to one provider, at most `max_connections` of them.
/// - HTTP/1.1: keep-alive connections, one request each at a time.
/// - HTTP/2 (`protocol: h2|h2c`): each connection carries up to the provider's SETTINGS_MAX_CONCURRENT_STREAMS
///   requests; a new one opens only when every open connection is full, so requests share few connections.
/// Requests beyond that wait in FIFO order until a connection (or a stream) frees up or the connect timeout passes.
final class UpstreamPool {
    let route: ProviderRoute
    unowned(unsafe) let context: LoopContext
    private var idle: [UpstreamConnection] = []
    /// HTTP/2 providers: the open connections, oldest first (the first with room takes the next request).
    private var multiplexed: [UpstreamH2Connection] = []
    private(set) var openCount = 0
    private var waiters: [any UpstreamExchange] = []
    /// https: the session a new connection resumes (this thread's latest for this provider).
    let tlsSession = TLSSessionSlot()

    init(route: ProviderRoute, context: LoopContext) {
        self.route = route
        self.context = context
        if !route.http2 { idle.reserveCapacity(route.maxConnections) }
    }

    /// Connections without a request in flight.
    var idleCount: Int { route.http2 ? multiplexed.reduce(0) { $0 + ($1.isIdle ? 1 : 0) } : idle.count }

    /// Finds a connection for `exchange`: an idle one (unless `fresh`), a new one, or a place in the queue.
    /// On HTTP/2, `fresh` changes nothing: a connection that failed is already closed or going away.
    func acquire(for exchange: any UpstreamExchange, fresh: Bool = false) {
        if route.http2 {
            acquireStream(for: exchange)
            return
        }
        if !fresh, let connection = idle.popLast() {
            connection.assign(exchange)
            return
        }
        if openCount < route.maxConnections {
            openCount += 1
            let connection = UpstreamConnection(pool: self, loop: context.loop)
            connection.connect(for: exchange)
            return
        }
        if fresh, let connection = idle.popLast() {
            // At the limit: replace an idle connection with a new one rather than queue.
            connection.close()
            acquire(for: exchange, fresh: true)
            return
        }
        waiters.append(exchange)
    }

    private func acquireStream(for exchange: any UpstreamExchange) {
        for connection in multiplexed where connection.hasRoom {
            connection.add(exchange)
            return
        }
        if openCount < route.maxConnections {
            openCount += 1
            let connection = UpstreamH2Connection(pool: self, loop: context.loop)
            multiplexed.append(connection)
            connection.add(exchange)
            connection.connect()
            return
        }
        waiters.append(exchange)
    }

    /// The exchange stopped waiting (timeout or client gone).
    func cancelWait(_ exchange: any UpstreamExchange) {
        if let index = waiters.firstIndex(where: { $0 === exchange }) {
            waiters.remove(at: index)
            return
        }
        for connection in multiplexed where connection.cancelWaiting(exchange) { return }
    }

    func release(_ connection: UpstreamConnection) {
        if !waiters.isEmpty {
            connection.assign(waiters.removeFirst())
            return
        }
        idle.append(connection)
    }

    /// A stream ended, or the peer's SETTINGS arrived: waiting requests may take the room.
    func roomAvailable(on connection: UpstreamH2Connection) {
        while !waiters.isEmpty && connection.hasRoom {
            connection.add(waiters.removeFirst())
        }
    }

    /// The provider sent GOAWAY on `connection`: waiting requests need a new connection, which may open once this one
    /// closes (it still counts against `max_connections` while its streams finish).
    func connectionGoingAway(_ connection: UpstreamH2Connection) {
        serveWaiters()
    }

    func connectionClosed(_ connection: UpstreamConnection) {
        if let index = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: index) }
        openCount -= 1
        if !waiters.isEmpty && openCount < route.maxConnections {
            let next = waiters.removeFirst()
            openCount += 1
            UpstreamConnection(pool: self, loop: context.loop).connect(for: next)
        }
    }

    func connectionClosed(_ connection: UpstreamH2Connection) {
        guard let index = multiplexed.firstIndex(where: { $0 === connection }) else { return }
        multiplexed.remove(at: index)
        openCount -= 1
        serveWaiters()
    }

    private func serveWaiters() {
        while !waiters.isEmpty {
            let before = waiters.count
            let next = waiters.removeFirst()
            acquireStream(for: next)
            // Queued again: no connection has room and none may open.
            if waiters.count == before { return }
        }
    }

    /// Closes every idle connection (drain or reload). HTTP/2 connections with streams in flight take no new ones
    /// and close once those finish.
    func closeIdle() {
        // close() takes the connection out of `idle` through connectionClosed.
        while let connection = idle.last { connection.close() }
        for connection in multiplexed { connection.retire() }
    }
}
