#if canImport(Glibc)
import Glibc
#endif
import CShims

/// An errno from a system call that the caller may want to handle (ECONNREFUSED, EPIPE, ...).
public struct IOError: Error, CustomStringConvertible, Sendable {
    public let errno: Int32
    public let function: StaticString

    public init(errno: Int32, function: StaticString) {
        self.errno = errno
        self.function = function
    }

    public var description: String {
        "\(function): errno \(errno)"
    }
}

/// The outcome of a nonblocking call: it did something, or it would have blocked.
public enum IOResult<T> {
    case processed(T)
    case wouldBlock
}

/// Runs a system call once, in the one way every caller needs:
/// - EINTR is retried;
/// - EAGAIN becomes `.wouldBlock`;
/// - EBADF and EFAULT mean a bug in this process, so they trap;
/// - any other errno is thrown.
@inline(__always)
func syscall<T: FixedWidthInteger>(
    _ function: StaticString, _ body: () -> T
) throws(IOError) -> IOResult<T> {
    while true {
        let result = body()
        if result >= 0 { return .processed(result) }
        let code = errno
        switch code {
        case EINTR:
            continue
        case EAGAIN, EWOULDBLOCK, EINPROGRESS:
            return .wouldBlock
        case EBADF, EFAULT:
            fatalError("\(function) failed with errno \(code): a bug in the caller")
        default:
            throw IOError(errno: code, function: function)
        }
    }
}

/// Thin, typed wrappers of the POSIX calls the reactor uses. Nothing else calls these C functions.
public enum Posix {
    @inline(__always)
    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(IOError) -> IOResult<Int> {
        try syscall("read") { Glibc.read(fd, buffer, count) }
    }

    @inline(__always)
    public static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(IOError) -> IOResult<Int> {
        try syscall("write") { Glibc.write(fd, buffer, count) }
    }

    @inline(__always)
    public static func writev(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32) throws(IOError) -> IOResult<Int> {
        try syscall("writev") { Glibc.writev(fd, iov, count) }
    }

    /// send(2) with MSG_NOSIGNAL, for one contiguous buffer.
    @inline(__always)
    public static func send(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(IOError) -> IOResult<Int> {
        try syscall("send") { Glibc.send(fd, buffer, count, Int32(MSG_NOSIGNAL)) }
    }

    public static func close(_ fd: Int32) {
        // Linux always frees the descriptor, even when close reports EINTR: never retry.
        _ = Glibc.close(fd)
    }

    public static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    public static func socket(domain: Int32, type: Int32) throws(IOError) -> Int32 {
        let flags = type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard case .processed(let fd) = try syscall("socket", { Glibc.socket(domain, flags, 0) }) else {
            throw IOError(errno: EAGAIN, function: "socket")
        }
        return fd
    }

    public static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) {
        var value = value
        _ = setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    public static func accept(_ fd: Int32, address: UnsafeMutablePointer<sockaddr_storage>) throws(IOError) -> IOResult<Int32> {
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let flags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        return try address.withMemoryRebound(to: sockaddr.self, capacity: 1) { (pointer) throws(IOError) -> IOResult<Int32> in
            try syscall("accept4") { CShims_accept4(fd, pointer, &length, flags) }
        }
    }

    /// The pending error of a socket (SO_ERROR), for a nonblocking connect that finished.
    public static func socketError(_ fd: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length)
        return value
    }

    public static func epollCreate() -> Int32 {
        let fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(fd >= 0, "epoll_create1 failed: \(errno)")
        return fd
    }

    public static func epollControl(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, data: UInt64) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = data
        let result = epoll_ctl(epfd, op, fd, &event)
        if result != 0 {
            let code = errno
            // ENOENT on delete or EEXIST on add mean our bookkeeping is wrong.
            fatalError("epoll_ctl(op \(op), fd \(fd)) failed with errno \(code)")
        }
    }

    public static func epollWait(_ epfd: Int32, _ events: UnsafeMutablePointer<epoll_event>, _ max: Int32, timeoutMs: Int32) -> Int {
        while true {
            let n = epoll_wait(epfd, events, max, timeoutMs)
            if n >= 0 { return Int(n) }
            if errno == EINTR { continue }
            fatalError("epoll_wait failed with errno \(errno)")
        }
    }

    /// A nonblocking CLOCK_MONOTONIC timerfd, for wakeups finer than epoll_wait's milliseconds.
    public static func timerfd() -> Int32 {
        let fd = CShims_timerfd_create()
        precondition(fd >= 0, "timerfd_create failed: \(errno)")
        return fd
    }

    /// Arms a timerfd to fire once at an absolute monotonic time.
    public static func armTimerfd(_ fd: Int32, at deadlineNs: UInt64) {
        _ = CShims_timerfd_arm_at(fd, deadlineNs)
    }

    public static func eventfd() -> Int32 {
        let fd = CShims.eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        precondition(fd >= 0, "eventfd failed: \(errno)")
        return fd
    }
}

/// Monotonic and wall clocks in nanoseconds.
public enum Clock {
    @inline(__always) public static func monotonicNs() -> UInt64 { CShims_monotonic_ns() }
    @inline(__always) public static func realtimeNs() -> UInt64 { CShims_realtime_ns() }
    public static func processCPUNs() -> UInt64 { CShims_process_cpu_ns() }
}

public enum CPU {
    /// The number of CPUs this process may run on.
    public static var available: Int { Int(CShims_available_cpus()) }

    @discardableResult
    public static func pinCurrentThread(to cpu: Int) -> Bool { CShims_pin_current_thread_to_cpu(Int32(cpu)) == 0 }

    /// Pins another process (a child we started) to one CPU.
    @discardableResult
    public static func pin(pid: Int32, to cpu: Int) -> Bool { CShims_pin_pid_to_cpu(pid, Int32(cpu)) == 0 }
}

/// A thread's scheduling class, for background threads that must not delay the reactors.
public enum ThreadScheduling: Sendable, Equatable {
    /// SCHED_OTHER: the normal, fair-share policy.
    case normal
    /// SCHED_IDLE: runs only on CPU time that no normal thread wants.
    case idle

    /// The calling thread's kernel id (what `set` and `current` take).
    public static var currentThreadID: Int32 { CShims_gettid() }

    /// Moves a thread (0: the calling one) to `policy`. Leaving `.idle` needs CAP_SYS_NICE or an RLIMIT_NICE of 20.
    @discardableResult
    public static func set(_ policy: ThreadScheduling, thread: Int32 = 0) -> Bool {
        CShims_sched_setscheduler(thread, policy == .idle ? Int32(CShims_SCHED_IDLE) : Int32(CShims_SCHED_OTHER)) == 0
    }

    /// Whether a thread of this process can leave `.idle` again (CAP_SYS_NICE, or an RLIMIT_NICE of 20). Asked of
    /// the kernel on a short-lived thread of its own, so that a refusal leaves no thread stuck at `.idle`.
    public static var canLeaveIdle: Bool {
        var thread = pthread_t()
        var result: Int32 = 0
        return withUnsafeMutablePointer(to: &result) { resultPointer in
            let rc = pthread_create(&thread, nil, { argument in
                let reversible = CShims_sched_setscheduler(0, Int32(CShims_SCHED_IDLE)) == 0
                    && CShims_sched_setscheduler(0, Int32(CShims_SCHED_OTHER)) == 0
                argument!.assumingMemoryBound(to: Int32.self).pointee = reversible ? 1 : 0
                return nil
            }, resultPointer)
            guard rc == 0 else { return false }
            pthread_join(thread, nil)
            return resultPointer.pointee == 1
        }
    }

    /// A thread's policy (0: the calling one); nil when it is neither of these or the thread is gone.
    public static func current(thread: Int32 = 0) -> ThreadScheduling? {
        switch CShims_sched_getscheduler(thread) {
        case Int32(CShims_SCHED_IDLE): .idle
        case Int32(CShims_SCHED_OTHER): .normal
        default: nil
        }
    }
}
