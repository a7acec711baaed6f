#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with a condition variable on CLOCK_MONOTONIC, for the few places where a thread sleeps until
/// another wakes it: the writer thread between batches, and `flush()` callers until the writer catches up.
/// The enqueue path does not use it, except to wake the writer once per full batch.
final class Condition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a signal or until the monotonic deadline. Call with the lock held (inside `withLock`).
    /// Spurious wakeups happen: callers loop on their own predicate.
    func wait(untilMonotonicNs deadline: Int64) {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(cond, mutex, &ts)
    }

    /// Call with the lock held.
    func broadcast() { pthread_cond_broadcast(cond) }

    /// A wakeup that is not lost when it comes before the sleeper waits. Guarded by the mutex.
    private var signaled = false

    /// Wakes the thread in `waitForSignal` (or makes its next wait return at once).
    func signal() {
        withLock {
            signaled = true
            pthread_cond_signal(cond)
        }
    }

    /// Sleeps until `signal()` or the deadline, and consumes the signal.
    func waitForSignal(untilMonotonicNs deadline: Int64) {
        withLock {
            while !signaled && UTCTime.monotonicNs() < deadline { wait(untilMonotonicNs: deadline) }
            signaled = false
        }
    }
}

/// A value behind a pthread mutex. Used instead of `Synchronization.Mutex` because ThreadSanitizer sees pthread
/// locks (it intercepts them) but not the stdlib's futex-based `Mutex`, whose uninstrumented atomics make every
/// access under it look like a race. The cost is the same for an uncontended lock.
final class Locked<State>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var state: State

    init(_ state: State) {
        self.state = state
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<T>(_ body: (inout State) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}
