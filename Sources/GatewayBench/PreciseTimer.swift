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
/// Swift's Glibc module hides `timerfd_create` (it lives in <sys/timerfd.h>) and CShims does not wrap it
/// yet, so the two functions are looked up once with dlsym. Without them the timer falls back to the
/// loop's millisecond timers.
final class PreciseTimer: EventHandler, TimerTarget {
    private typealias Create = @convention(c) (Int32, Int32) -> Int32
    private typealias SetTime = @convention(c) (Int32, Int32, UnsafePointer<itimerspec>?, UnsafeMutablePointer<itimerspec>?) -> Int32
    private static let timerAbsolute: Int32 = 1  // TFD_TIMER_ABSTIME

    private static let functions: (create: Create, setTime: SetTime)? = {
        guard let create = dlsym(nil, "timerfd_create"), let setTime = dlsym(nil, "timerfd_settime") else { return nil }
        return (unsafeBitCast(create, to: Create.self), unsafeBitCast(setTime, to: SetTime.self))
    }()

    private unowned let loop: EventLoop
    private unowned let target: any PreciseTimerTarget
    private var fd: Int32 = -1
    private var registration = Registration.none
    /// The deadline armed, 0 when none.
    private var armed: UInt64 = 0
    private var generation: UInt64 = 0

    /// Whether this timer wakes with a timerfd (precise) or with the loop's millisecond timers.
    private(set) var isPrecise = false

    init(loop: EventLoop, target: any PreciseTimerTarget) {
        self.loop = loop
        self.target = target
        if let functions = PreciseTimer.functions {
            let descriptor = functions.create(CLOCK_MONOTONIC, Int32(O_NONBLOCK) | Int32(O_CLOEXEC))
            if descriptor >= 0 {
                fd = descriptor
                isPrecise = true
                registration = loop.register(fd: descriptor, interest: Interest.read, handler: self)
            }
        }
    }

    /// Fires once at `deadline` (monotonic ns), replacing any earlier arming.
    func arm(at deadline: UInt64) {
        guard deadline != armed else { return }
        armed = max(deadline, 1)
        if let functions = PreciseTimer.functions, fd >= 0 {
            var spec = itimerspec()
            spec.it_value.tv_sec = Int(armed / 1_000_000_000)
            spec.it_value.tv_nsec = Int(armed % 1_000_000_000)
            _ = functions.setTime(fd, PreciseTimer.timerAbsolute, &spec, nil)
        } else {
            generation &+= 1
            loop.schedule(at: armed, target: self, token: generation)
        }
    }

    func handleEvent(_ events: UInt32) {
        var expirations: UInt64 = 0
        _ = Glibc.read(fd, &expirations, 8)
        fire()
    }

    func timerFired(token: UInt64) {
        guard token == generation else { return }
        fire()
    }

    private func fire() {
        guard armed != 0 else { return }
        armed = 0
        target.preciseTimerFired()
    }

    func tick(now: UInt64) {}

    func close() {
        armed = 0
        generation &+= 1
        if fd >= 0 {
            loop.deregisterAndClose(registration)
            fd = -1
        }
    }
}
