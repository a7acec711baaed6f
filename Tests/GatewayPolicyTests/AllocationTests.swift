// The request path allocates nothing: authenticate, access, admit, complete, the rate-limit headers,
// the usage tap and the include_usage plan. Counted with scripts/bench/malloc-counter.c, so it runs
// only when that library is preloaded:
//   cc -O2 -shared -fPIC -o /tmp/libmalloccounter.so scripts/bench/malloc-counter.c -ldl
//   MALLOC_COUNTER_OUT=/tmp/policy-mallocs LD_PRELOAD=/tmp/libmalloccounter.so \
//     swift test -c release --scratch-path .build-policy --filter AllocationTests
// (It asserts only in release builds: 6 allocations for 10,000 requests when measured, all strays.)
import Foundation
import GatewayConfig
import GatewayHTTP
import GatewayIO
import GatewayPolicy
import Testing

@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["MALLOC_COUNTER_OUT"] != nil))
struct AllocationTests {
    static let iterations = 10_000

    /// Allocating calls made by `body`, per the preloaded counter (SIGUSR1 resets, SIGUSR2 reports).
    /// The signals go to the process (test threads may block them), so each waits for the report file.
    func allocations(_ body: () -> Void) throws -> Int {
        let path = try #require(ProcessInfo.processInfo.environment["MALLOC_COUNTER_OUT"])
        func signalAndWait(_ signal: Int32) {
            unlink(path)
            kill(getpid(), signal)
            while access(path, F_OK) != 0 { usleep(100) }
        }
        signalAndWait(SIGUSR1)
        body()
        signalAndWait(SIGUSR2)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let total = text.split(separator: "\n").first { $0.hasPrefix("total ") }
        return try #require(total.flatMap { Int($0.dropFirst(6)) })
    }

    @Test func theRequestPathAllocatesNothing() throws {
        let counters = PolicyCounters()
        let snapshot = Fixture.snapshot(
            groups: [GroupSettings(name: "team", models: ["gpt-*"], budget: Budget(usd: 1000, period: .monthly),
                                   limits: Limits(rpm: 1_000_000, tpm: 100_000_000, concurrency: 100))],
            keys: [KeySettings(name: "a", source: .plain("sk-alloc-test-key"), groups: ["team"],
                               limits: Limits(rpm: 1_000_000, tpm: 100_000_000, concurrency: 10), budget: Budget(usd: 1000, period: .daily))],
            counters: counters)
        let bearer = Array("sk-alloc-test-key".utf8)
        let model = Array("gpt-4o-mini".utf8)
        let body = Array(#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let sse = Array(("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\n"
            + "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":16}}\n\ndata: [DONE]\n\n").utf8)
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
        defer { memory.deallocate() }
        var buffer = ByteBuffer()
        buffer.attach(memory, capacity: 4096, origin: 0)
        defer { _ = buffer.detach() }
        let price = Price(inputPerMTok: 0.15, outputPerMTok: 0.6)
        var admitted = 0
        let wall = Fixture.noon
        // Warm up: one-time lazy initialization is not per request.
        for _ in 0..<2 { _ = snapshot.authenticate("sk-alloc-test-key") }
        let count = try allocations {
            for i in 0..<AllocationTests.iterations {
                let now = Fixture.t0 + UInt64(i) * 1_000_000
                let key = bearer.withUnsafeBytes { snapshot.authenticate(bearer: $0, nowSeconds: wall) }
                guard let key else { continue }
                let access = model.withUnsafeBytes { snapshot.access(key, modelIndex: 0, modelName: $0) }
                guard access == .allowed else { continue }
                let plan = body.withUnsafeBytes { includeUsagePlan(body: $0, fields: JSONFieldScanner.scan($0)) }
                guard case .splice = plan else { continue }
                guard case .admitted(let ticket) = counters.admit(key, estimatedTokens: body.count / 4, nowNs: now, nowSeconds: wall) else { continue }
                buffer.clear()
                counters.headers(key, nowNs: now).write(into: &buffer)
                var tap = UsageTap(mode: .openAISSE)
                sse.withUnsafeBytes { tap.feed($0) }
                let usage = tap.usage
                counters.complete(ticket, usage: usage, costMicroUSD: costMicroUSD(usage: usage, price: price), nowNs: now, nowSeconds: wall)
                admitted += 1
            }
        }
        print("allocations for \(AllocationTests.iterations) requests through the policy path: \(count)")
        #expect(admitted == AllocationTests.iterations)
        #if !DEBUG
        // A handful of stray allocations from other threads is tolerated; one per request is not.
        // (Unoptimized builds allocate closure contexts and unspecialized generics, so only release counts.)
        #expect(count < AllocationTests.iterations / 100)
        #endif
    }
}
