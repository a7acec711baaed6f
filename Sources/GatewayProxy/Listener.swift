#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// A reactor thread's own SO_REUSEPORT listening socket; accepted connections stay on this thread.
final class Listener: EventHandler {
    private unowned let context: LoopContext
    private let fd: Int32
    private var registration = Registration.none
    private var peer = sockaddr_storage()

    init(fd: Int32, context: LoopContext) {
        self.fd = fd
        self.context = context
        registration = context.loop.register(fd: fd, interest: EventBits.readable, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        // Bounded, so one busy listener cannot starve the connections already accepted.
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
            let address = SocketAddress(storage: peer, length: socklen_t(MemoryLayout<sockaddr_storage>.size))
            context.clientCount += 1
            ClientConnection(fd: client, peer: address, context: context).start()
        }
    }

    func tick(now: UInt64) {}

    func close() {
        context.loop.deregisterAndClose(registration)
        registration = .none
    }
}
