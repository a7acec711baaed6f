#if canImport(Glibc)
import Glibc
#endif

/// The admin API's worker thread: runs backend calls (store queries, reloads) one at a time, so the
/// listener's thread stays free to answer `/health` and `/ready` while a long report runs.
final class AdminWorker: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    // Guarded by `mutex`.
    private var jobs: [@Sendable () -> Void] = []
    private var stopping = false
    private var thread: pthread_t?

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func start() {
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, adminWorkerEntry, Unmanaged.passRetained(self).toOpaque())
        precondition(result == 0, "pthread_create failed: \(result)")
        self.thread = thread
    }

    /// Queues `job`; jobs run in order.
    func submit(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Lets the job in progress finish, drops the queued ones, and waits for the thread to end.
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        jobs.removeAll()
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        if let thread {
            _ = pthread_join(thread, nil)
            self.thread = nil
        }
    }

    fileprivate func run() {
        while true {
            pthread_mutex_lock(mutex)
            while jobs.isEmpty && !stopping { pthread_cond_wait(condition, mutex) }
            if stopping {
                pthread_mutex_unlock(mutex)
                return
            }
            let job = jobs.removeFirst()
            pthread_mutex_unlock(mutex)
            job()
        }
    }
}

/// A free function, not a closure: see SWIFT-NOTES.md on thread entry points.
private func adminWorkerEntry(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let worker = Unmanaged<AdminWorker>.fromOpaque(argument!).takeRetainedValue()
    worker.run()
    return nil
}
