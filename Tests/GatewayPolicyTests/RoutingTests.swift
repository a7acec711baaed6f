// The deployment picker's strategies and the per-deployment circuit breaker, as pure values.
import GatewayConfig
import GatewayPolicy
import Testing

@Suite("routing")
struct RoutingTests {
    static func counts(_ picker: inout DeploymentPicker, _ n: Int, excluding: UInt64 = 0,
                       available: (Int) -> Bool = { _ in true }, hasRoom: (Int) -> Bool = { _ in true }) -> [Int] {
        var counts = [Int](repeating: 0, count: picker.count)
        for _ in 0..<n {
            if let index = picker.pick(excluding: excluding, available: available, hasRoom: hasRoom) { counts[index] += 1 }
        }
        return counts
    }

    @Test func smoothWeightedGivesExactSharesInterleaved() {
        var picker = DeploymentPicker(strategy: .weighted, weights: [5, 1, 1], seed: 1)
        var sequence: [Int] = []
        for _ in 0..<7 { sequence.append(picker.pick(excluding: 0, available: { _ in true }, hasRoom: { _ in true })!) }
        // nginx's example: a a b a c a a, not a a a a a b c.
        #expect(sequence == [0, 0, 1, 0, 2, 0, 0])
        #expect(Self.counts(&picker, 7000) == [5000, 1000, 1000])
    }

    @Test func excludedAndCoolingDeploymentsAreSkipped() {
        var picker = DeploymentPicker(strategy: .weighted, weights: [3, 1], seed: 1)
        #expect(Self.counts(&picker, 100, excluding: 0b01) == [0, 100])
        #expect(Self.counts(&picker, 100, available: { $0 == 0 }) == [100, 0])
        #expect(picker.pick(excluding: 0b11, available: { _ in true }, hasRoom: { _ in true }) == nil)
        #expect(picker.pick(excluding: 0, available: { _ in false }, hasRoom: { _ in true }) == nil)
    }

    @Test func aFullPoolIsAvoidedWhileAnotherHasRoom() {
        var picker = DeploymentPicker(strategy: .ordered, weights: [1, 1, 1], seed: 1)
        #expect(Self.counts(&picker, 10, hasRoom: { $0 != 0 }) == [0, 10, 0])
        // All full: the first in order still gets it (it queues).
        #expect(Self.counts(&picker, 10, hasRoom: { _ in false }) == [10, 0, 0])
    }

    @Test func leastBusyFollowsInFlightOverWeight() {
        var picker = DeploymentPicker(strategy: .least_busy, weights: [2, 1], seed: 1)
        // A slow deployment piles up requests; new ones go elsewhere.
        for _ in 0..<4 { picker.started(1) }
        #expect(Self.counts(&picker, 20) == [20, 0])
        // Four on 0 (weight 2) weigh as two on 1 (weight 1): 0 has 4/2 = 2 < 4/1.
        for _ in 0..<4 { picker.started(0) }
        #expect(picker.pick(excluding: 0, available: { _ in true }, hasRoom: { _ in true }) == 0)
        for _ in 0..<4 { picker.finished(1) }
        #expect(picker.pick(excluding: 0, available: { _ in true }, hasRoom: { _ in true }) == 1)
        #expect(picker.inFlightCount(1) == 0)
    }

    @Test func latencyPrefersTheFasterAndStillRetriesTheSlower() {
        var picker = DeploymentPicker(strategy: .latency, weights: [1, 1], seed: 42)
        let latency: [UInt64] = [1_000_000, 20_000_000]
        var counts = [0, 0]
        for _ in 0..<2000 {
            let index = picker.pick(excluding: 0, available: { _ in true }, hasRoom: { _ in true })!
            counts[index] += 1
            picker.observeLatency(index, ns: latency[index])
        }
        #expect(counts[0] > 1900, "\(counts)")
        // The slow one's average decays while it loses, so it is measured again now and then.
        #expect(counts[1] >= 3, "\(counts)")
        // An unmeasured deployment counts as fastest.
        var fresh = DeploymentPicker(strategy: .latency, weights: [1, 1, 1], seed: 7)
        fresh.observeLatency(0, ns: 1_000)
        fresh.observeLatency(1, ns: 1_000)
        #expect(Self.counts(&fresh, 50).last! > 20)
    }

    @Test func breakerOpensAfterFailuresInTheWindowThenProbesOnce() {
        var policy = CooldownPolicy()
        policy.failures = 3
        policy.windowMs = 1_000
        policy.durationMs = 500
        let health = DeploymentHealth(policy)
        let second: UInt64 = 1_000_000_000
        var now: UInt64 = 10 * second
        health.recordFailure(nowNs: now, probe: false)
        health.recordFailure(nowNs: now, probe: false)
        #expect(health.state(nowNs: now) == .healthy)
        health.recordFailure(nowNs: now, probe: false)
        #expect(health.state(nowNs: now) == .coolingDown)
        #expect(!health.isAvailable(nowNs: now))
        #expect(health.admit(nowNs: now) == .closed)
        now += second / 2 + 1
        #expect(health.state(nowNs: now) == .halfOpen)
        #expect(health.isAvailable(nowNs: now))
        #expect(health.admit(nowNs: now) == .probe)
        // One probe at a time.
        #expect(health.admit(nowNs: now) == .closed)
        #expect(!health.isAvailable(nowNs: now))
        // The probe fails: cooling down again.
        health.recordFailure(nowNs: now, probe: true)
        #expect(health.state(nowNs: now) == .coolingDown)
        now += second / 2 + 1
        #expect(health.admit(nowNs: now) == .probe)
        health.recordSuccess(probe: true)
        #expect(health.state(nowNs: now) == .healthy)
        #expect(health.admit(nowNs: now) == .open)
    }

    @Test func failuresOutsideTheWindowDoNotAddUp() {
        var policy = CooldownPolicy()
        policy.failures = 2
        policy.windowMs = 100
        let health = DeploymentHealth(policy)
        var now: UInt64 = 5_000_000_000
        for _ in 0..<5 {
            health.recordFailure(nowNs: now, probe: false)
            now += 200_000_000
        }
        #expect(health.state(nowNs: now) == .healthy)
        // A success resets the count.
        health.recordFailure(nowNs: now, probe: false)
        health.recordSuccess(probe: false)
        health.recordFailure(nowNs: now, probe: false)
        #expect(health.state(nowNs: now) == .healthy)
    }

    @Test func aLostProbeIsReplacedAfterOneDuration() {
        var policy = CooldownPolicy()
        policy.failures = 1
        policy.durationMs = 100
        let health = DeploymentHealth(policy)
        var now: UInt64 = 1_000_000_000
        health.recordFailure(nowNs: now, probe: false)
        now += 100_000_001
        #expect(health.admit(nowNs: now) == .probe)
        #expect(health.admit(nowNs: now + 50_000_000) == .closed)
        #expect(health.admit(nowNs: now + 100_000_001) == .probe)
    }

    @Test func retryAfterCoolsDownForAtLeastThatLong() {
        let health = DeploymentHealth(CooldownPolicy())
        let now: UInt64 = 1_000_000_000
        health.recordFailure(nowNs: now, probe: false, retryAfterNs: 2_000_000_000)
        #expect(health.state(nowNs: now + 1_900_000_000) == .coolingDown)
        #expect(health.state(nowNs: now + 2_000_000_001) == .halfOpen)
    }
}
