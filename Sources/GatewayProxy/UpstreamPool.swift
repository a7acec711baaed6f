import GatewayIO

/// A thread's keep-alive connections to one provider, at most `max_connections` of them.
/// Requests beyond that wait in FIFO order until a connection frees up or the connect timeout passes.
final class UpstreamPool {
    let route: ProviderRoute
    unowned(unsafe) let context: LoopContext
    private var idle: [UpstreamConnection] = []
    private(set) var openCount = 0
    private var waiters: [any UpstreamExchange] = []
    /// https: the session a new connection resumes (this thread's latest for this provider).
    let tlsSession = TLSSessionSlot()

    init(route: ProviderRoute, context: LoopContext) {
        self.route = route
        self.context = context
        idle.reserveCapacity(route.maxConnections)
    }

    var idleCount: Int { idle.count }

    /// Finds a connection for `exchange`: an idle one (unless `fresh`), a new one, or a place in the queue.
    func acquire(for exchange: any UpstreamExchange, fresh: Bool = false) {
        if !fresh, let connection = idle.popLast() {
            connection.assign(exchange)
            return
        }
        if openCount < route.maxConnections {
            openCount += 1
            let connection = UpstreamConnection(pool: self, loop: context.loop)
            connection.connect(to: route.address, for: exchange)
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

    /// The exchange stopped waiting (timeout or client gone).
    func cancelWait(_ exchange: any UpstreamExchange) {
        if let index = waiters.firstIndex(where: { $0 === exchange }) { waiters.remove(at: index) }
    }

    func release(_ connection: UpstreamConnection) {
        if !waiters.isEmpty {
            connection.assign(waiters.removeFirst())
            return
        }
        idle.append(connection)
    }

    func connectionClosed(_ connection: UpstreamConnection) {
        if let index = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: index) }
        openCount -= 1
        if !waiters.isEmpty && openCount < route.maxConnections {
            let next = waiters.removeFirst()
            openCount += 1
            UpstreamConnection(pool: self, loop: context.loop).connect(to: route.address, for: next)
        }
    }

    /// Closes every idle connection (drain or reload).
    func closeIdle() {
        // close() takes the connection out of `idle` through connectionClosed.
        while let connection = idle.last { connection.close() }
    }
}
