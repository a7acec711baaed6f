// How a run flows: `LoadRunner.run` fixes a `RunPlan` (start, warm-up, window, each thread's share), starts one
// `BenchWorker` per thread on its own `EventLoop`, and waits on the main thread, sampling CPU at the window's
// edges and drawing the progress line. Each worker drives its `BenchConnection`s: closed loop (send again
// on every response) or open loop (`OpenLoopSchedule` plus a `PreciseTimer` pacer). Connections record
// into their thread's `BenchStats`; the runner merges them into a `RunResult`, which `TextReport`,
// `RunReport` (JSON), `HgrmOutput` and `CompareRunner` turn into output.
#if canImport(Glibc)
import Glibc
#endif
import GatewayIO
import Synchronization

/// The CPU another process used over a run's measured window.
public struct ProcessCPUUsage: Sendable, Equatable {
    public var name: String
    public var pid: Int32
    /// nil when /proc/PID/stat could not be read at the start or the end.
    public var cpuNs: UInt64?
}

/// What one run measured, merged across its threads.
public final class RunResult: @unchecked Sendable {
    public let name: String
    public let config: LoadConfig
    public let stats: BenchStats
    public let workers: [BenchStats]
    /// The measured window.
    public let windowNs: UInt64
    /// This process's CPU time (user + system) over the window.
    public let cpuNs: UInt64
    public let processes: [ProcessCPUUsage]
    /// Whether the open-loop pacer had microsecond timers (timerfd) or only the loop's millisecond ones;
    /// nil for a closed loop.
    public let preciseTimer: Bool?

    init(name: String, config: LoadConfig, stats: BenchStats, workers: [BenchStats], windowNs: UInt64, cpuNs: UInt64,
         processes: [ProcessCPUUsage], preciseTimer: Bool?) {
        self.name = name
        self.config = config
        self.stats = stats
        self.workers = workers
        self.windowNs = windowNs
        self.cpuNs = cpuNs
        self.processes = processes
        self.preciseTimer = preciseTimer
    }

    /// Responses per second: responses completed inside the window, over the window.
    public var rps: Double {
        windowNs > 0 ? Double(stats.counters.responsesInWindow) / (Double(windowNs) / 1e9) : 0
    }

    public var durationSeconds: Double { Double(windowNs) / 1e9 }

    /// CPU per response of a process observed with `--pid`, in nanoseconds.
    public func cpuPerResponse(ofProcess name: String) -> Double? {
        guard let usage = processes.first(where: { $0.name == name }), let cpu = usage.cpuNs,
              stats.counters.responses > 0 else { return nil }
        return Double(cpu) / Double(stats.counters.responses)
    }

    /// The corrected latency at a percentile (0...100), in nanoseconds.
    public func latency(_ percentile: Double) -> UInt64 {
        stats.latency.valueAtPercentile(percentile)
    }
}

/// Runs one load: starts a worker thread per `-t`, waits for them, and merges what they measured.
public enum LoadRunner {
    public static func run(_ config: LoadConfig, name: String = "global") throws(LoadConfig.ValidationError) -> RunResult {
        try config.validate()
        let request = RequestTemplate(spec: config.request, target: config.target)
        let plan = RunPlan(config: config, now: Clock.monotonicNs())
        let control = RunControl()
        let workers = (0..<config.threads).map {
            BenchWorker(index: $0, config: config, plan: plan, request: request, control: control)
        }
        var threads: [pthread_t] = []
        for worker in workers {
            worker.loop.execute { _ in worker.start() }
            let pin = config.pinCPUs.isEmpty ? nil : config.pinCPUs[worker.index % config.pinCPUs.count]
            threads.append(worker.loop.startThread(pinTo: pin))
        }

        let showProgress = config.progress && isatty(1) == 1
        var progress = ProgressLine(plan: plan, workers: workers, enabled: showProgress)
        var cpuStart: UInt64?
        var cpuEnd: UInt64?
        var processStart: [UInt64?] = []
        var processEnd: [UInt64?] = []
        func sampleProcesses() -> [UInt64?] { config.observedProcesses.map { ProcessCPU.read(pid: $0.pid) } }

        while control.finished.load(ordering: .acquiring) < workers.count {
            let now = Clock.monotonicNs()
            if cpuStart == nil, now >= plan.measureStart {
                cpuStart = Clock.processCPUNs()
                processStart = sampleProcesses()
            }
            if cpuEnd == nil, !plan.endsOnCount, now >= plan.measureEnd {
                cpuEnd = Clock.processCPUNs()
                processEnd = sampleProcesses()
            }
            progress.update(now: now)
            var wake = now + (showProgress ? BenchWorker.progressIntervalNs : 50_000_000)
            if cpuStart == nil { wake = min(wake, plan.measureStart) }
            if cpuEnd == nil, !plan.endsOnCount { wake = min(wake, plan.measureEnd) }
            sleepUntil(max(wake, now + 100_000), cap: 50_000_000)
        }
        for thread in threads { Threads.join(thread) }
        progress.clear()
        let finishedAt = Clock.monotonicNs()
        if cpuStart == nil {
            cpuStart = Clock.processCPUNs()
            processStart = sampleProcesses()
        }
        if cpuEnd == nil {
            cpuEnd = Clock.processCPUNs()
            processEnd = sampleProcesses()
        }

        let parts = workers.map(\.stats)
        let merged = BenchStats.merged(parts)
        var window = plan.windowNs
        if plan.endsOnCount {
            let end = merged.lastCompletion > plan.measureStart ? merged.lastCompletion : finishedAt
            window = max(1, end - min(plan.measureStart, end))
        }
        let processes = config.observedProcesses.enumerated().map { index, process -> ProcessCPUUsage in
            var cpu: UInt64?
            if index < processStart.count, index < processEnd.count, let start = processStart[index], let end = processEnd[index] {
                cpu = end >= start ? end - start : 0
            }
            return ProcessCPUUsage(name: process.name, pid: process.pid, cpuNs: cpu)
        }
        return RunResult(
            name: name, config: config, stats: merged, workers: parts, windowNs: window,
            cpuNs: (cpuEnd ?? 0) &- (cpuStart ?? 0), processes: processes,
            preciseTimer: workers.first?.usesPreciseTimer.map { _ in workers.allSatisfy { $0.usesPreciseTimer == true } })
    }

    /// Sleeps until the monotonic time `deadline`, at most `cap` at a time.
    static func sleepUntil(_ deadline: UInt64, cap: UInt64) {
        let now = Clock.monotonicNs()
        guard deadline > now else { return }
        let wait = min(deadline - now, cap)
        var request = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
        _ = nanosleep(&request, nil)
    }
}

/// The live line on a terminal: elapsed of total, current RPS, p99 so far, errors. Redrawn with `\r`.
struct ProgressLine {
    let plan: RunPlan
    let workers: [BenchWorker]
    let enabled: Bool
    private var lastAt: UInt64 = 0
    private var lastResponses: UInt64 = 0
    private var drawn = false

    init(plan: RunPlan, workers: [BenchWorker], enabled: Bool) {
        self.plan = plan
        self.workers = workers
        self.enabled = enabled
    }

    mutating func update(now: UInt64) {
        guard enabled, now >= plan.start, now - lastAt >= BenchWorker.progressIntervalNs - 5_000_000 else { return }
        var responses: UInt64 = 0
        var errors: UInt64 = 0
        var p99: UInt64 = 0
        for worker in workers {
            responses += worker.live.responsesTotal.load(ordering: .relaxed)
            errors += worker.live.errors.load(ordering: .relaxed)
            p99 = max(p99, worker.live.p99.load(ordering: .relaxed))
        }
        let rps = lastAt == 0 ? 0 : Double(responses &- lastResponses) / (Double(now - lastAt) / 1e9)
        lastAt = now
        lastResponses = responses
        let elapsed = Double(now - plan.start) / 1e9
        let total = plan.endsOnCount ? "" : " / " + Format.fixed(Double(plan.measureEnd - plan.start) / 1e9, 1) + "s"
        let phase = now < plan.measureStart ? " (warm-up)" : ""
        let line = "\r  \(Format.fixed(elapsed, 1))s\(total)\(phase)  \(Format.fixed(rps, 0)) req/s  p99 "
            + (p99 > 0 ? Format.latency(Double(p99)) : "-") + "  errors \(errors)\u{1B}[K"
        Log.writeStdout(line)
        drawn = true
    }

    mutating func clear() {
        guard drawn else { return }
        Log.writeStdout("\r\u{1B}[2K")
        drawn = false
    }
}

extension Log {
    /// Writes to stdout without a newline (the progress line).
    static func writeStdout(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
