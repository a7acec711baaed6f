// Deployment health: a circuit breaker per deployment, shared by every reactor thread without a lock.
//
//   healthy ──N retryable failures within the window──▶ cooling down ──duration passes──▶ half-open
//      ▲                                                      ▲                              │
//      └──────────────── the probe succeeds ───────────────────┼──────── the probe fails ──────┘
//
// Half-open admits one request at a time (the probe): its success closes the breaker, its failure
// opens it for another duration. A probe whose request never reports (its client vanished) is
// presumed lost after one duration, and another may go.
//
// Three atomic words: the failure count with the start of its window, the end of the cooldown, and
// the start of the probe in flight. Threads only read them on the request path (two loads); writes
// happen on failures and on recovery.
import GatewayConfig
import Synchronization

public final class DeploymentHealth: Sendable {
    public enum State: Int, Sendable {
        case healthy = 0, coolingDown = 1, halfOpen = 2
    }

    /// How a request may use the deployment now.
    public enum Admission: Sendable, Equatable {
        case open
        /// Half-open, and this request is the one probe.
        case probe
        case closed
    }

    private let failureThreshold: UInt64
    private let windowNs: UInt64
    private let durationNs: UInt64
    /// Window start in ms (high 40 bits) and the failures counted in it (low 24 bits).
    private let failures = Atomic<UInt64>(0)
    /// Monotonic ns when the cooldown ends; 0 when healthy.
    private let cooldownUntilNs = Atomic<UInt64>(0)
    /// Monotonic ns when the half-open probe went; 0 when none is out.
    private let probeStartNs = Atomic<UInt64>(0)

    public init(_ policy: CooldownPolicy) {
        failureThreshold = UInt64(policy.failures)
        windowNs = UInt64(policy.windowMs) * 1_000_000
        durationNs = UInt64(policy.durationMs) * 1_000_000
    }

    public func state(nowNs: UInt64) -> State {
        let until = cooldownUntilNs.load(ordering: .relaxed)
        if until == 0 { return .healthy }
        return nowNs < until ? .coolingDown : .halfOpen
    }

    /// Whether a request could go now, without claiming the probe (for choosing among deployments).
    @inline(__always)
    public func isAvailable(nowNs: UInt64) -> Bool {
        let until = cooldownUntilNs.load(ordering: .relaxed)
        if until == 0 { return true }
        guard nowNs >= until else { return false }
        let probe = probeStartNs.load(ordering: .relaxed)
        return probe == 0 || nowNs - probe > durationNs
    }

    /// Admits a request that chose this deployment; in half-open state only the first one gets through.
    public func admit(nowNs: UInt64) -> Admission {
        let until = cooldownUntilNs.load(ordering: .relaxed)
        if until == 0 { return .open }
        guard nowNs >= until else { return .closed }
        let probe = probeStartNs.load(ordering: .relaxed)
        guard probe == 0 || nowNs - probe > durationNs else { return .closed }
        let claimed = probeStartNs.compareExchange(expected: probe, desired: nowNs, ordering: .relaxed).exchanged
        return claimed ? .probe : .closed
    }

    /// A response head arrived that is not a failure (the deployment works).
    public func recordSuccess(probe: Bool) {
        if probe || cooldownUntilNs.load(ordering: .relaxed) != 0 {
            cooldownUntilNs.store(0, ordering: .relaxed)
            probeStartNs.store(0, ordering: .relaxed)
        }
        if failures.load(ordering: .relaxed) != 0 { failures.store(0, ordering: .relaxed) }
    }

    /// A retryable failure (connect error, timeout, reset, 429, 5xx). Opens the breaker when the
    /// window's count reaches the threshold, or at once when the failure was the half-open probe.
    /// - Parameter retryAfterNs: the upstream's `retry-after`, which sets a cooldown of at least that long.
    public func recordFailure(nowNs: UInt64, probe: Bool, retryAfterNs: UInt64 = 0) {
        if probe {
            coolDown(untilNs: nowNs + max(durationNs, retryAfterNs))
            return
        }
        let nowMs = nowNs / 1_000_000
        var current = failures.load(ordering: .relaxed)
        var count: UInt64
        while true {
            let start = current >> 24
            count = current & 0xFF_FFFF
            let next: UInt64
            if count == 0 || nowMs &- start > windowNs / 1_000_000 {
                count = 1
                next = nowMs << 24 | 1
            } else {
                count = min(count + 1, 0xFF_FFFF)
                next = start << 24 | count
            }
            let (exchanged, original) = failures.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        if count >= failureThreshold {
            failures.store(0, ordering: .relaxed)
            coolDown(untilNs: nowNs + max(durationNs, retryAfterNs))
        } else if retryAfterNs > 0 {
            // A 429 that names its wait: skip the deployment that long, whatever the count.
            coolDown(untilNs: nowNs + retryAfterNs)
        }
    }

    /// Opens the breaker until `untilNs` (a failed health check, a long retry-after); never shortens one.
    public func coolDown(untilNs: UInt64) {
        var current = cooldownUntilNs.load(ordering: .relaxed)
        while current < untilNs {
            let (exchanged, original) = cooldownUntilNs.compareExchange(expected: current, desired: untilNs, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        probeStartNs.store(0, ordering: .relaxed)
    }

    /// The probe's request ended without an answer either way (its client left): let another probe go.
    public func releaseProbe() {
        probeStartNs.store(0, ordering: .relaxed)
    }
}
