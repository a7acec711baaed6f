#if canImport(Glibc)
import Glibc
#endif
import GatewayIO
import Synchronization

/// Every thread's metrics and the names for their label ids; the scrape side of the metrics.
///
/// A scrape posts `snapshot()` to each reactor loop, so each copy is taken by the thread that writes the
/// counters, and waits for the copies (at most `timeoutNs`). A loop that does not answer in time, one
/// that is stopped or stuck, contributes its last copy, so that counters never go backwards; the
/// `gateway_metrics_stale_threads` gauge counts such loops.
public final class MetricsRegistry: Sendable {
    private struct Entry {
        let metrics: ThreadMetrics
        let loop: EventLoop?
        /// The last copy the loop sent, and the scrape that asked for it.
        var last: MetricsSnapshot?
        var lastScrape: UInt64 = 0
    }

    private struct State {
        var labels: MetricsLabels
        var entries: [Entry] = []
        var audit: (@Sendable () -> AuditMetrics)?
        var scrapes: UInt64 = 0
    }

    private let state: Mutex<State>
    public let latencyBuckets: HistogramBuckets
    public let overheadBuckets: HistogramBuckets

    public init(labels: MetricsLabels, latencyBuckets: HistogramBuckets = .latency, overheadBuckets: HistogramBuckets = .overhead) {
        state = Mutex(State(labels: labels))
        self.latencyBuckets = latencyBuckets
        self.overheadBuckets = overheadBuckets
    }

    /// The names for the label ids.
    public var labels: MetricsLabels { state.withLock { $0.labels } }

    /// Replaces the names, on reload. Build the new ones with `labels.merging(…)` so ids stay stable.
    /// No thread needs to be told: a thread's tables grow when it first records a new id.
    public func updateLabels(_ labels: MetricsLabels) {
        state.withLock { $0.labels = labels }
    }

    /// Makes the metrics of one thread and registers them.
    /// - Parameter loop: the loop whose thread records into them; the scrape copies them on that thread.
    ///   nil means the caller guarantees nobody records while a scrape runs (tests, a stopped thread).
    public func makeThreadMetrics(for loop: EventLoop?) -> ThreadMetrics {
        let metrics = ThreadMetrics(labels: labels, latencyBuckets: latencyBuckets, overheadBuckets: overheadBuckets)
        register(metrics, loop: loop)
        return metrics
    }

    /// Registers metrics made elsewhere; see `makeThreadMetrics(for:)` for `loop`.
    public func register(_ metrics: ThreadMetrics, loop: EventLoop?) {
        precondition(metrics.latencyBuckets == latencyBuckets && metrics.overheadBuckets == overheadBuckets,
                     "thread metrics must use the registry's buckets")
        state.withLock { $0.entries.append(Entry(metrics: metrics, loop: loop, last: nil)) }
    }

    /// Where the audit queue's gauges come from; called once per scrape, on the scraping thread.
    public func setAuditSource(_ source: (@Sendable () -> AuditMetrics)?) {
        state.withLock { $0.audit = source }
    }

    /// The sum over every thread, and how many threads contributed a stale copy. Blocks up to `timeoutNs`:
    /// call it from a thread that is not a registered loop's (the admin worker), or that loop's copy is stale.
    public func collect(timeoutNs: UInt64 = 1_000_000_000) -> (snapshot: MetricsSnapshot, staleThreads: Int) {
        let (entries, scrape) = state.withLock { state -> ([Entry], UInt64) in
            state.scrapes += 1
            return (state.entries, state.scrapes)
        }
        let latch = Latch(count: entries.filter { $0.loop != nil }.count)
        var total = MetricsSnapshot(latencyBuckets: latencyBuckets, overheadBuckets: overheadBuckets)
        for entry in entries {
            guard let loop = entry.loop else {
                total.add(entry.metrics.snapshot())
                continue
            }
            let metrics = entry.metrics
            loop.execute { [self] _ in
                let copy = metrics.snapshot()
                state.withLock { state in
                    if let index = state.entries.firstIndex(where: { $0.metrics === metrics }) {
                        state.entries[index].last = copy
                        state.entries[index].lastScrape = scrape
                    }
                }
                latch.countDown()
            }
        }
        _ = latch.wait(timeoutNs: timeoutNs)
        var stale = 0
        state.withLock { state in
            for entry in state.entries where entry.loop != nil {
                if entry.lastScrape != scrape { stale += 1 }
                if let copy = entry.last { total.add(copy) }
            }
        }
        return (total, stale)
    }

    /// A scrape: every thread's metrics, summed and rendered in the Prometheus text format.
    public func render(timeoutNs: UInt64 = 1_000_000_000) -> String {
        let (snapshot, stale) = collect(timeoutNs: timeoutNs)
        let (labels, audit) = state.withLock { ($0.labels, $0.audit) }
        return PrometheusText.render(snapshot, labels: labels, audit: audit?(), staleThreads: stale)
    }
}

/// Waits until `count` threads have checked in, or a timeout passes.
final class Latch: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var remaining: Int

    init(count: Int) {
        remaining = count
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func countDown() {
        pthread_mutex_lock(mutex)
        remaining -= 1
        if remaining <= 0 { pthread_cond_broadcast(condition) }
        pthread_mutex_unlock(mutex)
    }

    /// - Returns: true when every thread checked in before the timeout.
    func wait(timeoutNs: UInt64) -> Bool {
        let deadline = Clock.monotonicNs() + timeoutNs
        var until = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while remaining > 0 {
            if pthread_cond_timedwait(condition, mutex, &until) == ETIMEDOUT { return remaining <= 0 }
        }
        return true
    }
}
