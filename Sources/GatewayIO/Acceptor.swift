#if canImport(Glibc)
import Glibc
#endif

/// A reactor thread's own SO_REUSEPORT listening socket. Each accepted connection is handed to
/// `onAccept` with TCP_NODELAY set, and stays on this thread.
public final class Acceptor: EventHandler {
    private let loop: EventLoop
    private let fd: Int32
    private var registration = Registration.none
    private var peer = sockaddr_storage()
    private let onAccept: (Int32, SocketAddress) -> Void

    public init(fd: Int32, loop: EventLoop, onAccept: @escaping (Int32, SocketAddress) -> Void) {
        self.fd = fd
        self.loop = loop
        self.onAccept = onAccept
        registration = loop.register(fd: fd, interest: EventBits.readable, handler: self)
    }

    public func handleEvent(_ events: UInt32) {
        // Bounded, so that a flood of new connections cannot starve the ones already accepted.
        for _ in 0..<64 {
            let result: IOResult<Int32>
            do {
                result = try Posix.accept(fd, address: &peer)
            } catch {
                if error.errno == ECONNABORTED { continue }
                Log.error("accept failed: \(error)")
                return
            }
            guard case .processed(let client) = result else { return }
            Sockets.setNoDelay(client)
            onAccept(client, SocketAddress(storage: peer, length: socklen_t(MemoryLayout<sockaddr_storage>.size)))
        }
    }

    public func tick(now: UInt64) {}

    /// Stops accepting and closes the listening socket.
    public func close() {
        loop.deregisterAndClose(registration)
        registration = .none
    }
}
