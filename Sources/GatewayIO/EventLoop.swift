#if canImport(Glibc)
import Glibc
#endif
import CShims
import Synchronization

/// Something that owns a file descriptor registered with an event loop.
public protocol EventHandler: AnyObject {
    /// Called on the loop's thread with the epoll event bits (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLERR, EPOLLHUP).
    func handleEvent(_ events: UInt32)
    /// Called about every `EventLoop.tickIntervalNs` with the loop's clock: the place to enforce coarse timeouts.
    func tick(now: UInt64)
}

/// Something that asked for a precise timer. The token lets it ignore a timer it no longer wants.
public protocol TimerTarget: AnyObject {
    func timerFired(token: UInt64)
}

/// A registration in an event loop: the slot plus a generation, so that an event for a closed and reused
/// descriptor is ignored.
public struct Registration: Equatable, Sendable {
    public let slot: UInt32
    public let generation: UInt32
    public static let none = Registration(slot: .max, generation: 0)
    var epollData: UInt64 { UInt64(generation) << 32 | UInt64(slot) }
}

public enum Interest {
    public static let read = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    public static let write = EPOLLOUT.rawValue
    public static let readWrite = read | write
    public static let none: UInt32 = 0
}

public enum EventBits {
    public static let readable = EPOLLIN.rawValue
    public static let writable = EPOLLOUT.rawValue
    public static let readHangup = EPOLLRDHUP.rawValue
    public static let hangup = EPOLLHUP.rawValue
    public static let error = EPOLLERR.rawValue
}

/// One reactor thread: an epoll instance, its handlers, coarse ticks, a precise timer heap,
/// an eventfd for work posted from other threads, and the thread's buffer pools.
public final class EventLoop: @unchecked Sendable {
    public static let tickIntervalNs: UInt64 = 50_000_000

    /// When the first timer is due within this window, the loop polls (epoll_wait without sleeping, yielding the
    /// CPU between polls) instead of sleeping until it: on a VM a sleep and its wakeup cost tens of microseconds,
    /// more than the wait. 0, the default, never polls. For a load generator's pacer, not for the gateway.
    public var pollWindowNs: UInt64 = 0

    public let index: Int
    public let buffers = Buffers()
    /// The loop's clock, refreshed after each epoll_wait. Cheap to read; precise to a wakeup.
    public private(set) var now: UInt64

    private let epfd: Int32
    private let wakeFD: Int32
    private static let wakeData: UInt64 = .max

    private struct Slot {
        var handler: (any EventHandler)?
        var generation: UInt32
        var fd: Int32
        var interest: UInt32
    }
    private var slots: [Slot] = []
    private var freeSlots: [UInt32] = []
    public private(set) var registeredCount = 0

    private struct TimerEntry {
        var deadline: UInt64
        var sequence: UInt64
        var target: any TimerTarget
        var token: UInt64
    }
    private var timers: [TimerEntry] = []
    private var timerSequence: UInt64 = 0
    private var nextTick: UInt64

    /// Called on every tick after the handlers: loop-wide housekeeping such as ending a drain.
    public var tickHook: ((UInt64) -> Void)?

    private let posted = Mutex<[@Sendable (EventLoop) -> Void]>([])
    private var running = false
    private let eventCapacity: Int32 = 256
    private let events: UnsafeMutablePointer<epoll_event>

    public init(index: Int) {
        self.index = index
        self.epfd = Posix.epollCreate()
        self.wakeFD = Posix.eventfd()
        self.events = .allocate(capacity: Int(eventCapacity))
        self.now = Clock.monotonicNs()
        self.nextTick = now + EventLoop.tickIntervalNs
        slots.reserveCapacity(1024)
        Posix.epollControl(epfd, EPOLL_CTL_ADD, wakeFD, events: EPOLLIN.rawValue, data: EventLoop.wakeData)
    }

    deinit {
        Posix.close(epfd)
        Posix.close(wakeFD)
        events.deallocate()
    }

    // MARK: Registrations

    public func register(fd: Int32, interest: UInt32, handler: any EventHandler) -> Registration {
        let slot: UInt32
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = UInt32(slots.count)
            slots.append(Slot(handler: nil, generation: 0, fd: -1, interest: 0))
        }
        slots[Int(slot)].generation &+= 1
        slots[Int(slot)].handler = handler
        slots[Int(slot)].fd = fd
        slots[Int(slot)].interest = interest
        registeredCount += 1
        let registration = Registration(slot: slot, generation: slots[Int(slot)].generation)
        Posix.epollControl(epfd, EPOLL_CTL_ADD, fd, events: interest, data: registration.epollData)
        return registration
    }

    /// Changes the events a registration waits for; does nothing when they are unchanged.
    @inline(__always)
    public func setInterest(_ registration: Registration, _ interest: UInt32) {
        let index = Int(registration.slot)
        guard slots[index].generation == registration.generation, slots[index].interest != interest else { return }
        slots[index].interest = interest
        Posix.epollControl(epfd, EPOLL_CTL_MOD, slots[index].fd, events: interest, data: registration.epollData)
    }

    /// Hands a registration's events to another handler (a connection that turned out to speak HTTP/2).
    public func replaceHandler(_ registration: Registration, with handler: any EventHandler) {
        let index = Int(registration.slot)
        guard slots[index].generation == registration.generation, slots[index].handler != nil else { return }
        slots[index].handler = handler
    }

    /// Removes the registration and closes its descriptor.
    public func deregisterAndClose(_ registration: Registration) {
        let index = Int(registration.slot)
        guard registration != .none, index < slots.count, slots[index].generation == registration.generation,
              slots[index].handler != nil else { return }
        let fd = slots[index].fd
        Posix.epollControl(epfd, EPOLL_CTL_DEL, fd, events: 0, data: 0)
        Posix.close(fd)
        slots[index].handler = nil
        slots[index].fd = -1
        slots[index].generation &+= 1
        freeSlots.append(registration.slot)
        registeredCount -= 1
    }

    /// Every live handler, for drains and reloads.
    public func forEachHandler(_ body: (any EventHandler) -> Void) {
        for slot in slots { if let handler = slot.handler { body(handler) } }
    }

    // MARK: Timers

    /// Calls `target.timerFired(token:)` at or soon after `deadline` (monotonic ns). The loop holds the
    /// target until then.
    public func schedule(at deadline: UInt64, target: any TimerTarget, token: UInt64) {
        timerSequence &+= 1
        timers.append(TimerEntry(deadline: deadline, sequence: timerSequence, target: target, token: token))
        siftUp(timers.count - 1)
    }

    private func earlier(_ a: Int, _ b: Int) -> Bool {
        timers[a].deadline != timers[b].deadline ? timers[a].deadline < timers[b].deadline
            : timers[a].sequence < timers[b].sequence
    }

    private func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard earlier(child, parent) else { break }
            timers.swapAt(child, parent)
            child = parent
        }
    }

    private func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < timers.count else { break }
            var best = left
            if left + 1 < timers.count, earlier(left + 1, left) { best = left + 1 }
            guard earlier(best, parent) else { break }
            timers.swapAt(best, parent)
            parent = best
        }
    }

    private func runTimers() {
        while let first = timers.first, first.deadline <= now {
            let last = timers.removeLast()
            if !timers.isEmpty {
                timers[0] = last
                siftDown(0)
            }
            first.target.timerFired(token: first.token)
        }
    }

    // MARK: Cross-thread work

    /// Runs `work` on this loop's thread. Safe from any thread.
    public func execute(_ work: @escaping @Sendable (EventLoop) -> Void) {
        posted.withLock { $0.append(work) }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    private func runPosted() {
        var value: UInt64 = 0
        _ = Glibc.read(wakeFD, &value, 8)
        let work = posted.withLock { queue -> [@Sendable (EventLoop) -> Void] in
            let taken = queue
            queue.removeAll()
            return taken
        }
        for item in work { item(self) }
    }

    // MARK: Running

    /// Asks the loop to return from `run()` after the current iteration. Call on the loop's thread.
    public func stop() { running = false }

    /// False once `stop()` was called.
    public var isRunning: Bool { running }

    /// Runs until `stop()`. Call on the thread that owns the loop.
    public func run() {
        running = true
        while running {
            var timeoutMs: Int32 = Int32(EventLoop.tickIntervalNs / 1_000_000)
            if let first = timers.first {
                let current = Clock.monotonicNs()
                if first.deadline <= current {
                    timeoutMs = 0
                } else if first.deadline - current <= pollWindowNs {
                    timeoutMs = 0
                    sched_yield()
                } else {
                    timeoutMs = min(timeoutMs, Int32((first.deadline - current + 999_999) / 1_000_000))
                }
            }
            let count = Posix.epollWait(epfd, events, eventCapacity, timeoutMs: timeoutMs)
            now = Clock.monotonicNs()
            for i in 0..<count {
                let data = events[i].data.u64
                if data == EventLoop.wakeData {
                    runPosted()
                    continue
                }
                let slot = Int(UInt32(truncatingIfNeeded: data))
                let generation = UInt32(truncatingIfNeeded: data >> 32)
                guard slot < slots.count, slots[slot].generation == generation,
                      let handler = slots[slot].handler else { continue }
                handler.handleEvent(events[i].events)
            }
            if !timers.isEmpty { runTimers() }
            if now >= nextTick {
                nextTick = now + EventLoop.tickIntervalNs
                var i = 0
                while i < slots.count {
                    if let handler = slots[i].handler { handler.tick(now: now) }
                    i += 1
                }
                tickHook?(now)
            }
        }
    }

    /// Starts `run()` on a new thread, optionally pinned to a CPU.
    public func startThread(pinTo cpu: Int? = nil) -> pthread_t {
        let context = ThreadContext(loop: self, cpu: cpu)
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, eventLoopThreadEntry, Unmanaged.passRetained(context).toOpaque())
        precondition(result == 0, "pthread_create failed: \(result)")
        return thread
    }
}

private final class ThreadContext {
    let loop: EventLoop
    let cpu: Int?
    init(loop: EventLoop, cpu: Int?) {
        self.loop = loop
        self.cpu = cpu
    }
}

/// A free function, not a closure: a closure made inside a MainActor context would inherit its isolation
/// and die on the new thread (SWIFT-NOTES.md).
private func eventLoopThreadEntry(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<ThreadContext>.fromOpaque(argument!).takeRetainedValue()
    if let cpu = context.cpu { CPU.pinCurrentThread(to: cpu) }
    context.loop.run()
    return nil
}

public enum Threads {
    public static func join(_ thread: pthread_t) {
        _ = pthread_join(thread, nil)
    }
}
