#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// Something woken by a `PreciseTimer`.
protocol PreciseTimerTarget: AnyObject {
    func preciseTimerFired()
}

/// A one-shot timer with microsecond precision, for the open-loop pacer.
///
/// The event loop's own timers wake through epoll_wait's millisecond timeout, which would add up to a
/// millisecond to every open-loop latency; a timerfd on an absolute CLOCK_MONOTONIC deadline does not.
final class PreciseTimer: EventHandler {
    private unowned let loop: EventLoop
    private unowned let target: any PreciseTimerTarget
    private let fd: Int32
    private var registration = Registration.none
    /// The deadline armed, 0 when none.
    private var armed: UInt64 = 0

    init(loop: EventLoop, target: any PreciseTimerTarget) {
        self.loop = loop
        self.target = target
        fd = Posix.timerfd()
        registration = loop.register(fd: fd, interest: Interest.read, handler: self)
    }

    /// Fires once at `deadline` (monotonic ns), replacing any earlier arming.
    func arm(at deadline: UInt64) {
        guard deadline != armed else { return }
        armed = max(deadline, 1)
        Posix.armTimerfd(fd, at: armed)
    }

    func handleEvent(_ events: UInt32) {
        var expirations: UInt64 = 0
        _ = Glibc.read(fd, &expirations, 8)
        guard armed != 0 else { return }
        armed = 0
        target.preciseTimerFired()
    }

    func tick(now: UInt64) {}

    func close() {
        armed = 0
        loop.deregisterAndClose(registration)
    }
}
