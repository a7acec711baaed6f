import GatewayIO
import Synchronization

/// The times and shares of one run, fixed before any thread starts so that all threads agree on them.
struct RunPlan: Sendable {
    /// When sending begins (warm-up first).
    let start: UInt64
    let measureStart: UInt64
    /// The end of the measured window. For a closed loop ended by a count it is a cap, not a plan.
    let measureEnd: UInt64
    /// Nothing runs past this: late responses are given up on, the backlog is counted as missed.
    let hardDeadline: UInt64
    let endsOnCount: Bool
    /// Open loop: the rate, the warm-up requests (global indices below it) and the first unsent index.
    let rate: Double?
    let warmupCount: Int
    let scheduleEnd: Int
    /// Closed loop: measured requests per thread (Int.max when the duration decides).
    let budgets: [Int]
    let connections: [Int]

    /// The longest a run ended by a count may take.
    static let countCapNs: UInt64 = 600_000_000_000

    init(config: LoadConfig, now: UInt64) {
        let threads = config.threads
        // A short lead so that the threads are up and most connections made before the first request is due.
        start = now + 20_000_000 + UInt64(min(config.connections, 10_000)) * 20_000
        connections = (0..<threads).map { config.connections / threads + ($0 < config.connections % threads ? 1 : 0) }
        switch config.mode {
        case .closed:
            rate = nil
            warmupCount = 0
            scheduleEnd = 0
            endsOnCount = config.requestCount != nil && config.durationNs == nil
            measureStart = start + config.warmupNs
            measureEnd = measureStart + (config.durationNs ?? RunPlan.countCapNs)
            if let count = config.requestCount {
                budgets = (0..<threads).map { count / threads + ($0 < count % threads ? 1 : 0) }
            } else {
                budgets = Array(repeating: Int.max, count: threads)
            }
        case .open(let perSecond):
            rate = perSecond
            endsOnCount = false
            let warmup = Int((Double(config.warmupNs) / 1e9 * perSecond).rounded())
            var measured = Int.max / 2
            if let durationNs = config.durationNs { measured = max(1, Int((Double(durationNs) / 1e9 * perSecond).rounded())) }
            if let count = config.requestCount { measured = min(measured, count) }
            warmupCount = warmup
            scheduleEnd = warmup + measured
            budgets = Array(repeating: Int.max, count: threads)
            // The window is exactly the measured requests' span of the schedule.
            let schedule = OpenLoopSchedule(start: start, rate: perSecond, end: scheduleEnd)
            measureStart = schedule.intendedTime(of: warmup)
            measureEnd = schedule.intendedTime(of: scheduleEnd)
        }
        hardDeadline = measureEnd + config.timeoutNs + 1_000_000_000
    }

    var windowNs: UInt64 { measureEnd - measureStart }
}

/// Live numbers a worker publishes about 4 times a second, for the progress line.
final class LiveCounters: Sendable {
    let responsesTotal = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    let p99 = Atomic<UInt64>(0)
    let measured = Atomic<UInt64>(0)
}

/// What the threads of one run share: how many have finished.
final class RunControl: Sendable {
    let finished = Atomic<Int>(0)
}

/// A client connection of a worker: HTTP/1.1 (`BenchConnection`, one request at a time) or HTTP/2
/// (`BenchH2Connection`, several streams). It reports to its worker with `connectionReady` once for every request
/// it can take (a ticket), and `send` spends one.
protocol BenchClient: AnyObject {
    /// Starts connecting; `connectionReady` follows once it is up.
    func open()
    /// Sends a request on a ticket this connection gave. `intended` is when it was due.
    func send(intended: UInt64, measured: Bool)
    /// Closes for good at the end of the run.
    func shutdown()
}

extension BenchConnection: BenchClient {}

/// The loop's timers hold their targets; this relay holds the worker weakly, so that a run's worker,
/// loop and connections are freed when the run is over.
private final class WorkerTimers: TimerTarget {
    weak var worker: BenchWorker?
    func timerFired(token: UInt64) { worker?.timerFired(token: token) }
}

/// One load thread: its event loop, its share of the connections and of the schedule, and its statistics.
final class BenchWorker: @unchecked Sendable, PreciseTimerTarget {
    private enum Token {
        static let begin: UInt64 = 1
        static let windowEnd: UInt64 = 2
        static let hardDeadline: UInt64 = 3
        static let progress: UInt64 = 4
        static let finish: UInt64 = 5
        static let pace: UInt64 = 6
    }
    /// An open loop waits the last stretch before a request is due by polling the loop, not by sleeping on the
    /// timerfd: here a sleep, its timer and its wakeup cost ~15 µs of CPU per request, which at 70k requests/s
    /// saturated the load thread and sent most requests late, and a timerfd wakeup came ~36 µs late at the median
    /// (results/2026-12-02-gwbench-ceiling.md). Longer waits sleep until this window before the due time.
    static let pollWindowNs: UInt64 = 50_000
    static let progressIntervalNs: UInt64 = 250_000_000

    let index: Int
    let loop: EventLoop
    let stats = BenchStats()
    let live = LiveCounters()
    private let plan: RunPlan
    private let config: LoadConfig
    private let request: RequestTemplate
    private let control: RunControl
    private let timers = WorkerTimers()

    private var connections: [any BenchClient] = []
    /// Tickets: one entry per request a connection can take now (HTTP/2: per free stream).
    private var ready: [any BenchClient] = []
    private var inFlight = 0
    private var measuredInFlight = 0
    private var measuredSent = 0
    private let budget: Int
    private var sending = false
    private var stopped = false
    private var finishScheduled = false
    private(set) var finished = false
    private var schedule: OpenLoopSchedule?
    /// The deadline of the pending `Token.pace` loop timer, 0 when none.
    private var pacing: UInt64 = 0
    private var pacer: PreciseTimer?

    init(index: Int, config: LoadConfig, plan: RunPlan, request: RequestTemplate, control: RunControl) {
        self.index = index
        self.loop = EventLoop(index: index)
        self.config = config
        self.plan = plan
        self.request = request
        self.control = control
        self.budget = plan.budgets[index]
        if let rate = plan.rate {
            schedule = OpenLoopSchedule(start: plan.start, rate: rate, phase: index, stride: config.threads, end: plan.scheduleEnd)
            loop.pollWindowNs = BenchWorker.pollWindowNs
        }
        stats.windowEnd = plan.measureEnd
        timers.worker = self
    }

    /// New connections are wanted until the run is over.
    var wantsConnections: Bool { !finished }

    /// Open loop: whether the pacer has a timerfd; nil for a closed loop.
    var usesPreciseTimer: Bool? { pacer.map { _ in true } }

    /// Runs on the worker's thread: opens the connections and sets the timers.
    func start() {
        let count = plan.connections[index]
        connections.reserveCapacity(count)
        ready.reserveCapacity(count * config.streamsPerConnection)
        let scanEvents = config.request.stream
        var tls: BenchTLS?
        if config.target.tls {
            do {
                let alpn: [ALPNProtocol] = config.httpProtocol == .h2 ? [.h2] : [.http11]
                let context = try TLSContext.client(caFile: nil, verifyPeer: !config.insecure, alpn: alpn)
                tls = BenchTLS(context: context, host: config.target.host, session: TLSSessionSlot())
            } catch {
                Log.error("gwbench: \(error)")
            }
        }
        for _ in 0..<count {
            switch config.httpProtocol {
            case .http1:
                connections.append(BenchConnection(
                    worker: self, loop: loop, request: request, address: config.target.address, tls: tls,
                    timeoutNs: config.timeoutNs, scanEvents: scanEvents, openLoop: schedule != nil, stats: stats))
            case .h2c, .h2:
                connections.append(BenchH2Connection(
                    worker: self, loop: loop, request: request, address: config.target.address, tls: tls,
                    streams: config.streamsPerConnection, timeoutNs: config.timeoutNs, scanEvents: scanEvents,
                    openLoop: schedule != nil, stats: stats))
            }
        }
        if schedule != nil { pacer = PreciseTimer(loop: loop, target: self) }
        loop.schedule(at: plan.start, target: timers, token: Token.begin)
        if !plan.endsOnCount, plan.rate == nil { loop.schedule(at: plan.measureEnd, target: timers, token: Token.windowEnd) }
        loop.schedule(at: plan.endsOnCount ? plan.measureEnd : plan.hardDeadline, target: timers, token: Token.hardDeadline)
        if config.progress { loop.schedule(at: plan.start + BenchWorker.progressIntervalNs, target: timers, token: Token.progress) }
        for connection in connections { connection.open() }
    }

    fileprivate func timerFired(token: UInt64) {
        guard !finished else { return }
        switch token {
        case Token.begin:
            sending = true
            if schedule != nil {
                pump(freedWhileStarved: false)
            } else {
                while let connection = ready.popLast() {
                    sendClosedLoop(on: connection)
                    if stopped { break }
                }
            }
        case Token.windowEnd:
            stopSending()
        case Token.hardDeadline:
            finish()
        case Token.progress:
            publish()
            loop.schedule(at: loop.now + BenchWorker.progressIntervalNs, target: timers, token: Token.progress)
        case Token.finish:
            finish()
        case Token.pace:
            pacing = 0
            if sending { pump(freedWhileStarved: false) }
        default:
            break
        }
    }

    // MARK: Connections report here

    /// A connection can take a request (one ticket).
    @inline(__always)
    func connectionReady(_ connection: any BenchClient) {
        guard !finished else { return }
        if schedule != nil {
            let starved = ready.isEmpty
            ready.append(connection)
            if sending { pump(freedWhileStarved: starved) }
        } else if sending && !stopped {
            sendClosedLoop(on: connection)
        } else {
            ready.append(connection)
        }
    }

    @inline(__always)
    func requestCompleted(measured: Bool) {
        inFlight -= 1
        if measured { measuredInFlight -= 1 }
        if stopped && inFlight == 0 { scheduleFinish() }
    }

    func requestFailed(measured: Bool) {
        requestCompleted(measured: measured)
    }

    // MARK: Closed loop

    @inline(__always)
    private func sendClosedLoop(on connection: any BenchClient) {
        let now = Clock.monotonicNs()
        guard now < plan.measureEnd else {
            ready.append(connection)
            stopSending()
            return
        }
        let measured = now >= plan.measureStart
        if measured {
            guard measuredSent < budget else {
                ready.append(connection)
                stopSending()
                return
            }
            measuredSent += 1
            measuredInFlight += 1
            stats.counters.requestsSent += 1
        }
        inFlight += 1
        stats.counters.requestsSentTotal += 1
        connection.send(intended: now, measured: measured)
        if measured, measuredSent == budget { stopSending() }
    }

    /// A connection could not be made. In the measured window of a closed-loop `-n` run it counts against the
    /// request budget (the connect error is in the counters), so a refused port ends the run instead of
    /// being retried forever.
    func connectFailed() {
        guard schedule == nil, !stopped, budget != Int.max, Clock.monotonicNs() >= plan.measureStart else { return }
        measuredSent += 1
        if measuredSent >= budget { stopSending() }
    }

    private func stopSending() {
        guard !stopped else { return }
        stopped = true
        if inFlight == 0 { scheduleFinish() }
    }

    // MARK: Open loop

    /// Sends every due request that has a free connection, then waits: for the pacer when the next
    /// request is not due yet, or for a connection when requests are due and every connection is busy.
    /// - Parameter freedWhileStarved: a connection just came free while none was idle, so the request it
    ///   takes (if due) waited for a connection: it is counted as backlogged.
    private func pump(freedWhileStarved: Bool) {
        guard var current = schedule else { return }
        var waitedForConnection = freedWhileStarved
        while let connection = ready.last, let (globalIndex, intended) = current.take(at: Clock.monotonicNs()) {
            ready.removeLast()
            let measured = globalIndex >= plan.warmupCount
            if measured {
                if waitedForConnection { stats.counters.backlogged += 1 }
                measuredInFlight += 1
                stats.counters.requestsSent += 1
            }
            waitedForConnection = false
            inFlight += 1
            stats.counters.requestsSentTotal += 1
            schedule = current
            connection.send(intended: intended, measured: measured)
            // send may have failed and reported back; re-read the schedule it could not change.
            current = schedule!
        }
        schedule = current
        if current.isExhausted {
            stopped = true
            pacer?.close()
            if inFlight == 0 { scheduleFinish() }
            return
        }
        if ready.isEmpty {
            let due = current.dueCount(at: Clock.monotonicNs())
            if due > 0 {
                // Every connection is busy: the next completion sends the backlog, oldest first.
                stats.counters.maxBacklog = max(stats.counters.maxBacklog, UInt64(due))
                return
            }
        }
        guard let next = current.nextIntendedTime else { return }
        if next <= loop.now + BenchWorker.pollWindowNs {
            guard next != pacing else { return }
            pacing = next
            loop.schedule(at: next, target: timers, token: Token.pace)
        } else {
            // Wake a window early: the timerfd's wakeup is tens of microseconds late here, and the poll is not.
            pacer?.arm(at: next - BenchWorker.pollWindowNs)
        }
    }

    func preciseTimerFired() {
        guard !finished, sending else { return }
        pump(freedWhileStarved: false)
    }

    // MARK: The end

    private func scheduleFinish() {
        guard !finishScheduled else { return }
        finishScheduled = true
        // After the current event: the connection that reported is still on the stack.
        loop.schedule(at: 0, target: timers, token: Token.finish)
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        if let schedule {
            func count(from next: Int, below bound: Int) -> Int {
                next < bound ? (bound - 1 - next) / schedule.stride + 1 : 0
            }
            let unsent = count(from: schedule.next, below: schedule.end)
            let unsentWarmup = count(from: schedule.next, below: min(plan.warmupCount, schedule.end))
            stats.counters.missed += UInt64(unsent - unsentWarmup)
        }
        stats.counters.unfinished += UInt64(measuredInFlight)
        stats.counters.failuresTotal += UInt64(inFlight)
        pacer?.close()
        for connection in connections { connection.shutdown() }
        publish()
        ready.removeAll()
        _ = control.finished.add(1, ordering: .releasing)
        loop.stop()
    }

    private func publish() {
        live.responsesTotal.store(stats.counters.responsesTotal, ordering: .relaxed)
        live.measured.store(stats.counters.responses, ordering: .relaxed)
        live.errors.store(stats.counters.failuresTotal + stats.errorResponses, ordering: .relaxed)
        if config.progress { live.p99.store(stats.latency.valueAtPercentile(99), ordering: .relaxed) }
    }
}
