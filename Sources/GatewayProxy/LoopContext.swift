import GatewayHTTP
import GatewayIO
import GatewayMetrics
import GatewayPolicy
import GatewayStore

/// What one reactor thread owns besides its event loop: its view of the configuration, its upstream
/// pools, its client count and its request-id sequence. Nothing here is shared with other threads.
final class LoopContext {
    let loop: EventLoop
    private(set) var config: RuntimeConfig
    private(set) var pools: [UpstreamPool] = []
    var listeners: [Acceptor] = []
    var clientCount = 0
    /// Where audit records go; nil for a bare proxy (open mode without a `store` section).
    let audit: AuditLog?
    /// This thread's metrics; the admin listener sums every thread's at scrape time.
    let metrics: ThreadMetrics?
    /// The keys this thread authenticated last; emptied with every new configuration.
    private let keyCache = KeyCache()
    private(set) var draining = false
    private var drainDeadline: UInt64 = 0
    private var requestSequence: UInt64 = 0
    private let requestIDSeed: UInt64

    init(loop: EventLoop, config: RuntimeConfig, audit: AuditLog? = nil, metrics: ThreadMetrics? = nil) {
        self.loop = loop
        self.config = config
        self.audit = audit
        self.metrics = metrics
        var seed = UInt64(0)
        withUnsafeMutableBytes(of: &seed) { raw in
            for i in 0..<raw.count { raw[i] = UInt8.random(in: 0...255) }
        }
        requestIDSeed = seed
        pools = config.providers.map { UpstreamPool(route: $0, context: self) }
        pickers = LoopContext.makePickers(config, seed: seed)
        // One thread probes for all: health is shared.
        if loop.index == 0 { prober = HealthProber(context: self) }
        loop.tickHook = { [unowned self] now in self.tick(now: now) }
        // Connection gauges are read at scrape time, on this thread. Pools are per provider, so the
        // deployments of one provider show the same pool.
        metrics?.gaugeSampler = { [unowned self] metrics in
            let now = Clock.monotonicNs()
            for model in self.config.models {
                for deployment in model.deployments {
                    metrics.setDeploymentState(deployment: deployment.metricsID, state: deployment.health.state(nowNs: now).rawValue)
                }
                for deployment in model.deployments where deployment.providerIndex < self.pools.count {
                    let pool = self.pools[deployment.providerIndex]
                    metrics.setUpstreamConnections(
                        deployment: deployment.metricsID, active: pool.openCount - pool.idleCount, idle: pool.idleCount)
                }
            }
        }
    }

    /// Swaps in a new configuration. Requests in flight finish on the pools they hold; idle
    /// connections of the old pools close.
    func apply(_ newConfig: RuntimeConfig) {
        let old = pools
        config = newConfig
        keyCache.removeAll()
        lastGroupMetric = nil
        pools = newConfig.providers.map { UpstreamPool(route: $0, context: self) }
        pickers = LoopContext.makePickers(newConfig, seed: requestIDSeed &+ requestSequence)
        pickerGeneration &+= 1
        for pool in old { pool.closeIdle() }
    }

    private var prober: HealthProber?

    /// This thread's routing state, one picker per model (by model index).
    var pickers: [DeploymentPicker] = []
    /// Bumped when a reload replaces the pickers: a request admitted before reports nothing to the new ones.
    private(set) var pickerGeneration = 0

    private static func makePickers(_ config: RuntimeConfig, seed: UInt64) -> [DeploymentPicker] {
        config.models.map { model in
            DeploymentPicker(strategy: model.strategy, weights: model.deployments.map(\.weight), seed: seed &+ UInt64(model.index))
        }
    }

    /// Whether provider `index`'s pool on this thread can take a request without queueing.
    @inline(__always)
    func poolHasRoom(_ index: Int) -> Bool {
        let pool = pools[index]
        return pool.idleCount > 0 || pool.openCount < pool.route.maxConnections
    }

    /// The key a client presented, if valid: from this thread's cache, else hashed and looked up in the policy.
    func authenticate(bearer: UnsafeRawBufferPointer, nowSeconds: Int64) -> KeyPolicy? {
        if let key = keyCache.lookup(bearer, nowSeconds: nowSeconds) { return key }
        guard let key = config.policy.authenticate(bearer: bearer, nowSeconds: nowSeconds) else { return nil }
        keyCache.insert(bearer, key)
        return key
    }

    /// Writes a new request id at `out` and returns its length: "gw-" and 60 bits in 12 base-32 digits (0-9, a-v).
    /// 15 bytes: a Swift string of up to 15 is stored inline, so the audit record's copy of the id costs no
    /// allocation (with 16 hex digits it was the one allocation of an audited request). The 60 bits are a bijection
    /// of this thread's sequence number (an odd multiplier modulo 2^60), with the thread's index in the top six.
    func writeRequestID(_ out: UnsafeMutableRawPointer) -> Int {
        requestSequence &+= 1
        let mask: UInt64 = (1 << 60) - 1
        var value = ((requestIDSeed &+ requestSequence &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(loop.index & 63) << 54)) & mask
        let prefix: StaticString = "gw-"
        out.copyMemory(from: prefix.utf8Start, byteCount: 3)
        let digits: StaticString = "0123456789abcdefghijklmnopqrstuv"
        for i in stride(from: LoopContext.requestIDLength - 1, through: 3, by: -1) {
            out.storeBytes(of: digits.utf8Start[Int(value & 31)], toByteOffset: i, as: UInt8.self)
            value >>= 5
        }
        return LoopContext.requestIDLength
    }

    static let requestIDLength = 15

    // MARK: Metrics

    func recordMetrics(
        _ record: RequestRecord, modelMetricsID model: Int, key: KeyPolicy?, deployment: DeploymentRoute?, usage: Usage?,
        costMicroUSD: Int64
    ) {
        guard let metrics else { return }
        let group = key.map(groupMetricID) ?? 0
        metrics.recordRequest(model: model, group: group, status: record.status, durationNs: record.totalNs, overheadNs: record.overheadNs)
        if let deployment, record.upstreamStartNs > 0 {
            metrics.recordUpstream(deployment: deployment.metricsID, durationNs: record.upstreamNs)
        }
        if let usage {
            metrics.recordTokens(model: model, group: group, prompt: usage.promptTokens, completion: usage.completionTokens)
        }
        if costMicroUSD > 0 { metrics.recordCost(model: model, group: group, usd: Double(costMicroUSD) / 1e6) }
        if let code = record.errorCode, let reason = RejectionReason.allCases.first(where: { $0.label == code.rawValue }) {
            metrics.recordRejection(reason)
        }
        metrics.requestEnded()
    }

    /// The metric label id of a key's first group. The last answer is kept (with the key, so that it cannot be
    /// mistaken for a new object at the same address): most requests on a thread carry the same key, and this
    /// saves a String-keyed dictionary probe per request. Forgotten with every new configuration.
    private func groupMetricID(_ key: KeyPolicy) -> Int {
        if let last = lastGroupMetric, last.key === key { return last.id }
        let id = key.groups.first.flatMap { config.groupMetricIDs[$0] } ?? 0
        lastGroupMetric = (key, id)
        return id
    }

    private var lastGroupMetric: (key: KeyPolicy, id: Int)?

    // MARK: Drain

    /// Stops accepting, closes idle clients, and lets requests in flight finish within the drain timeout.
    func beginDrain() {
        guard !draining else { return }
        draining = true
        drainDeadline = loop.now + config.drainTimeoutNs
        for listener in listeners { listener.close() }
        listeners.removeAll()
        loop.forEachHandler { handler in
            (handler as? ClientConnection)?.drain()
            (handler as? H2ClientConnection)?.drain()
        }
        for pool in pools { pool.closeIdle() }
        finishDrainIfDone()
    }

    func clientClosed() {
        clientCount -= 1
        if draining { finishDrainIfDone() }
    }

    private func finishDrainIfDone() {
        if clientCount == 0 { loop.stop() }
    }

    private func tick(now: UInt64) {
        prober?.tick(now: now)
        guard draining else { return }
        if now > drainDeadline {
            if clientCount > 0 { Log.warning("drain timeout: closing \(clientCount) connections with requests in flight") }
            loop.stop()
        } else {
            finishDrainIfDone()
        }
    }
}
