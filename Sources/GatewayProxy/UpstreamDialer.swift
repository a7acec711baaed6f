#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// Opens a connection to a provider: a nonblocking TCP connect, then for https the TLS handshake (SNI, the host name
/// check and session resumption from the pool's slot). The HTTP/1.1 and the HTTP/2 upstream connections each hold one
/// and read and write through its `fd` and `tls` once it is open.
struct UpstreamDialer {
    enum Progress { case waiting, open, failed(UpstreamFailure) }

    var fd: Int32 = -1
    var registration = Registration.none
    /// https: the TLS session over `fd`, made once TCP is connected.
    var tls: TLSStream?
    /// TCP is up and the TLS handshake is under way.
    private(set) var handshaking = false

    /// Starts the connect, with `handler` registered for the socket's events. `.open` when it completed at once.
    mutating func start(_ pool: UpstreamPool, handler: any EventHandler) -> Progress {
        do {
            let (fd, result) = try Sockets.connect(to: pool.route.address)
            self.fd = fd
            registration = pool.context.loop.register(fd: fd, interest: Interest.write, handler: handler)
            if case .processed = result { return connected(pool) }
            return .waiting
        } catch {
            return .failed(.connectFailed(errno: error.errno))
        }
    }

    /// A socket event while dialing.
    mutating func advance(_ pool: UpstreamPool, events: UInt32) -> Progress {
        if handshaking { return continueHandshake(pool) }
        let error = Posix.socketError(fd)
        if error != 0 || events & (EventBits.error | EventBits.hangup) != 0 {
            return .failed(.connectFailed(errno: error == 0 ? ECONNREFUSED : error))
        }
        return connected(pool)
    }

    private mutating func connected(_ pool: UpstreamPool) -> Progress {
        guard let context = pool.route.tls else { return .open }
        do {
            tls = try TLSStream(client: context, fd: fd, host: pool.route.tlsHost, slot: pool.tlsSession)
        } catch {
            return .failed(.tlsFailed(error.description))
        }
        handshaking = true
        return continueHandshake(pool)
    }

    private mutating func continueHandshake(_ pool: UpstreamPool) -> Progress {
        guard let tls else { return .failed(.tlsFailed("no TLS session")) }
        switch tls.handshake() {
        case .done:
            handshaking = false
            return .open
        case .wantRead:
            pool.context.loop.setInterest(registration, Interest.read)
            return .waiting
        case .wantWrite:
            pool.context.loop.setInterest(registration, Interest.write)
            return .waiting
        case .failed(let reason):
            return .failed(.tlsFailed(reason))
        }
    }

    /// Deregisters and closes the socket (once).
    mutating func close(_ loop: EventLoop) {
        if fd >= 0 {
            loop.deregisterAndClose(registration)
            fd = -1
        }
        registration = .none
    }
}
