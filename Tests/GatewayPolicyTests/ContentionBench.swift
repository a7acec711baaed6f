// Informational, not an assertion: admissions per second when 1, 2 and 4 threads admit and
// complete requests with every limit on: all threads on ONE key (and its group), each thread on its
// own key and group, and the one-key case with every call under one global mutex for comparison. Run it alone for clean numbers:
//   swift test -c release --scratch-path .build-policy --filter ContentionBench
import Foundation
import GatewayConfig
import GatewayPolicy
import Synchronization
import Testing

@Suite(.serialized) struct ContentionBench {
    static let seconds = 0.3

    @Test func admissionsPerSecond() throws {
        let counters = PolicyCounters()
        let huge = Limits(rpm: 6_000_000_000, tpm: 60_000_000_000, concurrency: 1_000)
        let names = ["hot", "k1", "k2", "k3"]
        let snapshot = Fixture.snapshot(
            groups: [
                GroupSettings(name: "team", models: ["*"], budget: Budget(usd: 1_000_000, period: .monthly), limits: huge),
            ] + names.map { GroupSettings(name: "team-" + $0, models: ["*"], budget: Budget(usd: 1_000_000, period: .monthly), limits: huge) },
            keys: names.map { name in
                KeySettings(name: name, source: .plain("sk-" + name), groups: [name == "hot" ? "team" : "team-" + name],
                            limits: huge, budget: Budget(usd: 1_000_000, period: .daily))
            },
            counters: counters)
        let keys = try names.map { try #require(snapshot.authenticate("sk-" + $0)) }
        let wall = Int64(Date().timeIntervalSince1970)
        let lock = Mutex(())
        let call: @Sendable (KeyPolicy, UInt64) -> Bool = { key, now in
            guard case .admitted(let ticket) = counters.admit(key, estimatedTokens: 100, nowNs: now, nowSeconds: wall) else {
                return false
            }
            counters.complete(ticket, usage: Usage(promptTokens: 90, completionTokens: 20), costMicroUSD: 1, nowNs: now, nowSeconds: wall)
            return true
        }
        var lines: [String] = []
        for threads in [1, 2, 4] {
            let oneKey = run(threads: threads) { _, now in call(keys[0], now) }
            let ownKeys = run(threads: threads, perThread: { thread in
                // Each thread holds its own references, as each reactor thread does.
                let key = keys[thread]
                let counters = counters
                return { now in
                    guard case .admitted(let ticket) = counters.admit(key, estimatedTokens: 100, nowNs: now, nowSeconds: wall) else {
                        return false
                    }
                    counters.complete(ticket, usage: Usage(promptTokens: 90, completionTokens: 20), costMicroUSD: 1, nowNs: now, nowSeconds: wall)
                    return true
                }
            })
            // The same calls, each under one process-wide mutex: what "a global lock" would cost.
            let locked = run(threads: threads) { _, now in
                guard case .admitted(let ticket) = lock.withLock({ _ in
                    counters.admit(keys[0], estimatedTokens: 100, nowNs: now, nowSeconds: wall)
                }) else { return false }
                lock.withLock { _ in
                    counters.complete(ticket, usage: Usage(promptTokens: 90, completionTokens: 20), costMicroUSD: 1, nowNs: now, nowSeconds: wall)
                }
                return true
            }
            lines.append("threads \(threads): one key \(format(oneKey))/s, a key per thread \(format(ownKeys))/s, one key under a global mutex \(format(locked))/s")
        }
        print("ContentionBench (admit + complete, key + group limits all on; \(ProcessInfo.processInfo.activeProcessorCount) cores)")
        for line in lines { print("  " + line) }
    }

    /// Informational: how fast the usage tap reads a stream and a large JSON body.
    @Test func usageTapThroughput() {
        var sse = ""
        for i in 0..<20_000 { sse += "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token \(i)\"}}],\"usage\":null}\n\n" }
        sse += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":20000}}\n\ndata: [DONE]\n\n"
        let json = "{\"data\":[" + (0..<100_000).map { "{\"embedding\":[0.0123,-0.456,\($0)]}" }.joined(separator: ",")
            + "],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":0}}"
        for (mode, text) in [(UsageTap.Mode.openAISSE, sse), (.openAIJSON, json)] {
            let bytes = Array(text.utf8)
            let start = Date()
            var rounds = 0
            var found = 0
            while Date().timeIntervalSince(start) < ContentionBench.seconds {
                var tap = UsageTap(mode: mode)
                bytes.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        let end = min(raw.count, offset + 16_384)
                        tap.feed(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                        offset = end
                    }
                }
                if tap.usage != nil { found += 1 }
                rounds += 1
            }
            let rate = Double(bytes.count * rounds) / Date().timeIntervalSince(start) / 1e6
            print("UsageTap \(mode): \(String(format: "%.0f", rate)) MB/s over a \(bytes.count / 1000) kB body (usage found \(found)/\(rounds))")
        }
    }

    func format(_ rate: Double) -> String {
        rate >= 1e6 ? String(format: "%.2fM", rate / 1e6) : String(format: "%.0fk", rate / 1e3)
    }

    func run(threads: Int, _ body: @escaping @Sendable (Int, UInt64) -> Bool) -> Double {
        run(threads: threads, perThread: { thread in { now in body(thread, now) } })
    }

    /// Runs the closure `perThread` makes on each of `threads` threads for `seconds`; returns
    /// successful calls per second.
    func run(threads: Int, perThread: @escaping @Sendable (Int) -> (UInt64) -> Bool) -> Double {
        let state = BenchState()
        let done = DispatchSemaphore(value: 0)
        for thread in 0..<threads {
            Thread {
                let body = perThread(thread)
                while !state.go.load(ordering: .acquiring) { sched_yield() }
                var count = 0
                var now = monotonicNs()
                while !state.stop.load(ordering: .relaxed) {
                    // Reactor threads read the clock once per loop turn, not per request.
                    for _ in 0..<256 where body(now) { count += 1 }
                    now = monotonicNs()
                }
                state.total.wrappingAdd(count, ordering: .relaxed)
                done.signal()
            }.start()
        }
        let start = Date()
        state.go.store(true, ordering: .releasing)
        Thread.sleep(forTimeInterval: ContentionBench.seconds)
        state.stop.store(true, ordering: .relaxed)
        for _ in 0..<threads { done.wait() }
        return Double(state.total.load(ordering: .relaxed)) / Date().timeIntervalSince(start)
    }
}

private func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

private final class BenchState: Sendable {
    let go = Atomic<Bool>(false)
    let stop = Atomic<Bool>(false)
    let total = Atomic<Int>(0)
}

