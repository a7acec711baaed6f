/// One reactor thread's counters, gauges and histograms.
///
/// Only the owning thread touches it: recording is a plain integer add into preallocated memory, with
/// no atomics, no locks, no hashing and no allocation (an id or a status seen for the first time grows
/// a table once). `MetricsRegistry` takes copies by posting `snapshot()` to the owning loop and sums the
/// copies at scrape time.
///
/// Label values are small ids from `MetricsLabels` (0 = none). Statuses are interned here: the first
/// response with a given status code adds a table for it.
///
/// `@unchecked Sendable` only so that it can be handed to its thread; it is not safe to share.
public final class ThreadMetrics: @unchecked Sendable {
    public let latencyBuckets: HistogramBuckets
    public let overheadBuckets: HistogramBuckets

    /// Requests in flight on this thread; the gateway's `gateway_inflight_requests` is the sum.
    public var inflight = 0

    /// Called on the owning thread at the start of each `snapshot()`: the place to set gauges that are
    /// cheaper to read than to track, such as the pools' connection counts.
    public var gaugeSampler: ((ThreadMetrics) -> Void)?

    // Histograms: one row per label value, one column per bucket, and a last column with the sum in ns.
    private var durationGrid: CounterGrid
    private var overheadGrid: CounterGrid
    private var upstreamGrid: CounterGrid
    private let latencyBounds: UnsafeMutablePointer<UInt64>
    private let latencyBoundCount: Int
    private let overheadBounds: UnsafeMutablePointer<UInt64>
    private let overheadBoundCount: Int

    /// Status code → index in `requestGrids`, or -1. Codes outside 0..<1000 count as 0.
    private let statusSlots: UnsafeMutablePointer<Int16>
    private var statusCodes: [Int] = []
    /// One model × group table per status seen.
    private var requestGrids: [CounterGrid] = []

    private var promptGrid: CounterGrid
    private var completionGrid: CounterGrid
    private var costGrid: CounterGrid
    /// Deployment × {active, idle}.
    private var connectionGrid: CounterGrid
    private let rejectionCounts: UnsafeMutablePointer<UInt64>

    /// The largest id accepted; a larger one (a bug in the caller) counts under `none` rather than
    /// allocating a huge table.
    static let maxID = 1 << 16

    /// - Parameters: the label sets to size the tables for; more ids can be used later.
    public init(labels: MetricsLabels = MetricsLabels(), latencyBuckets: HistogramBuckets = .latency,
                overheadBuckets: HistogramBuckets = .overhead) {
        self.latencyBuckets = latencyBuckets
        self.overheadBuckets = overheadBuckets
        let models = labels.models.count
        let groups = labels.groups.count
        let deployments = labels.deployments.count
        durationGrid = CounterGrid(rows: 1, columns: latencyBuckets.count + 1)
        overheadGrid = CounterGrid(rows: 1, columns: overheadBuckets.count + 1)
        upstreamGrid = CounterGrid(rows: deployments, columns: latencyBuckets.count + 1)
        latencyBoundCount = latencyBuckets.boundsNs.count
        latencyBounds = .allocate(capacity: latencyBoundCount)
        latencyBounds.initialize(from: latencyBuckets.boundsNs, count: latencyBoundCount)
        overheadBoundCount = overheadBuckets.boundsNs.count
        overheadBounds = .allocate(capacity: overheadBoundCount)
        overheadBounds.initialize(from: overheadBuckets.boundsNs, count: overheadBoundCount)
        statusSlots = .allocate(capacity: 1000)
        statusSlots.initialize(repeating: -1, count: 1000)
        promptGrid = CounterGrid(rows: models, columns: groups)
        completionGrid = CounterGrid(rows: models, columns: groups)
        costGrid = CounterGrid(rows: models, columns: groups)
        connectionGrid = CounterGrid(rows: deployments, columns: 2)
        rejectionCounts = .allocate(capacity: RejectionReason.allCases.count)
        rejectionCounts.initialize(repeating: 0, count: RejectionReason.allCases.count)
        // The statuses nearly every gateway answers, so that their tables exist before the first request.
        for status in [200, 400, 401, 429] { _ = slot(for: status, capacity: (models, groups)) }
    }

    deinit {
        durationGrid.deallocate()
        overheadGrid.deallocate()
        upstreamGrid.deallocate()
        latencyBounds.deallocate()
        overheadBounds.deallocate()
        statusSlots.deallocate()
        for grid in requestGrids { grid.deallocate() }
        promptGrid.deallocate()
        completionGrid.deallocate()
        costGrid.deallocate()
        connectionGrid.deallocate()
        rejectionCounts.deallocate()
    }

    // MARK: Recording (owning thread only)

    /// Counts a finished request in `gateway_requests_total` and observes its total time and the
    /// gateway's own part of it.
    /// - Parameters:
    ///   - model, group: label ids (0 when not known, as for a request refused before authentication).
    ///   - status: the status sent to the client.
    ///   - durationNs: from the request's first byte to its last response byte.
    ///   - overheadNs: `durationNs` minus the time spent waiting on upstreams.
    @inline(__always)
    public func recordRequest(model: Int, group: Int, status: Int, durationNs: UInt64, overheadNs: UInt64) {
        let model = ThreadMetrics.clamp(model)
        let group = ThreadMetrics.clamp(group)
        let code = status >= 0 && status < 1000 ? status : 0
        var slot = Int(statusSlots[code])
        if slot < 0 { slot = self.slot(for: code, capacity: (promptGrid.rows, promptGrid.columns)) }
        requestGrids[slot].add(1, row: model, column: group)
        observe(durationNs, in: &durationGrid, row: 0, bounds: latencyBounds, boundCount: latencyBoundCount)
        observe(overheadNs, in: &overheadGrid, row: 0, bounds: overheadBounds, boundCount: overheadBoundCount)
    }

    /// Observes one upstream attempt's time, from sending the request to the end of the response.
    @inline(__always)
    public func recordUpstream(deployment: Int, durationNs: UInt64) {
        observe(durationNs, in: &upstreamGrid, row: ThreadMetrics.clamp(deployment), bounds: latencyBounds,
                boundCount: latencyBoundCount)
    }

    /// Adds a request's tokens, once its usage is known.
    @inline(__always)
    public func recordTokens(model: Int, group: Int, prompt: Int, completion: Int) {
        let model = ThreadMetrics.clamp(model)
        let group = ThreadMetrics.clamp(group)
        if prompt > 0 { promptGrid.add(UInt64(prompt), row: model, column: group) }
        if completion > 0 { completionGrid.add(UInt64(completion), row: model, column: group) }
    }

    /// Adds a request's cost. Kept in nano-dollars: a sum of integers stays exact.
    @inline(__always)
    public func recordCost(model: Int, group: Int, usd: Double) {
        guard usd > 0, usd.isFinite else { return }
        costGrid.add(UInt64((usd * 1e9).rounded()), row: ThreadMetrics.clamp(model), column: ThreadMetrics.clamp(group))
    }

    /// Counts a request the gateway refused itself.
    @inline(__always)
    public func recordRejection(_ reason: RejectionReason) {
        rejectionCounts[reason.rawValue] &+= 1
    }

    @inline(__always) public func requestStarted() { inflight += 1 }
    @inline(__always) public func requestEnded() { inflight -= 1 }

    private var deploymentStates: [Int: Int] = [:]

    /// Sets a deployment's health state (`gateway_deployment_state`), read at scrape time.
    public func setDeploymentState(deployment: Int, state: Int) {
        deploymentStates[deployment] = max(state, deploymentStates[deployment] ?? 0)
    }

    /// Sets this thread's connection counts for a deployment (`gateway_upstream_connections`).
    public func setUpstreamConnections(deployment: Int, active: Int, idle: Int) {
        let row = ThreadMetrics.clamp(deployment)
        // The grid only adds: write the difference.
        let oldActive = connectionGrid.value(row: row, column: 0)
        let oldIdle = connectionGrid.value(row: row, column: 1)
        connectionGrid.add(UInt64(max(0, active)) &- oldActive, row: row, column: 0)
        connectionGrid.add(UInt64(max(0, idle)) &- oldIdle, row: row, column: 1)
    }

    @inline(__always)
    private static func clamp(_ id: Int) -> Int {
        UInt(bitPattern: id) < UInt(maxID) ? id : MetricsLabels.none
    }

    @inline(__always)
    private func observe(_ ns: UInt64, in grid: inout CounterGrid, row: Int, bounds: UnsafeMutablePointer<UInt64>, boundCount: Int) {
        var bucket = 0
        while bucket < boundCount && ns > bounds[bucket] { bucket += 1 }
        grid.add(1, row: row, column: bucket)
        grid.add(ns, row: row, column: boundCount + 1)
    }

    /// Adds a table for a status seen for the first time.
    private func slot(for status: Int, capacity: (Int, Int)) -> Int {
        if statusSlots[status] >= 0 { return Int(statusSlots[status]) }
        let slot = requestGrids.count
        requestGrids.append(CounterGrid(rows: capacity.0, columns: capacity.1))
        statusCodes.append(status)
        statusSlots[status] = Int16(slot)
        return slot
    }

    // MARK: Snapshots

    /// A copy of everything recorded so far. Call on the owning thread (the registry posts it there).
    public func snapshot() -> MetricsSnapshot {
        deploymentStates.removeAll(keepingCapacity: true)
        gaugeSampler?(self)
        var result = MetricsSnapshot(latencyBuckets: latencyBuckets, overheadBuckets: overheadBuckets)
        for (slot, status) in statusCodes.enumerated() {
            requestGrids[slot].forEachNonzero { model, group, value in
                result.requests[RequestSeries(model: model, group: group, status: status)] = value
            }
        }
        result.requestDuration = ThreadMetrics.histogram(durationGrid, row: 0, buckets: latencyBuckets)
        result.overhead = ThreadMetrics.histogram(overheadGrid, row: 0, buckets: overheadBuckets)
        for deployment in 0..<upstreamGrid.rows {
            let histogram = ThreadMetrics.histogram(upstreamGrid, row: deployment, buckets: latencyBuckets)
            if histogram.count > 0 { result.upstreamDuration[deployment] = histogram }
        }
        promptGrid.forEachNonzero { result.promptTokens[ModelGroup(model: $0, group: $1)] = $2 }
        completionGrid.forEachNonzero { result.completionTokens[ModelGroup(model: $0, group: $1)] = $2 }
        costGrid.forEachNonzero { result.costNanoUSD[ModelGroup(model: $0, group: $1)] = $2 }
        result.inflight = inflight
        for deployment in 0..<connectionGrid.rows {
            let active = Int(connectionGrid.value(row: deployment, column: 0))
            let idle = Int(connectionGrid.value(row: deployment, column: 1))
            if active != 0 || idle != 0 {
                result.upstreamConnections[deployment] = ConnectionCounts(active: active, idle: idle)
            }
        }
        for i in 0..<RejectionReason.allCases.count { result.rejections[i] = rejectionCounts[i] }
        result.deploymentStates = deploymentStates
        return result
    }

    private static func histogram(_ grid: CounterGrid, row: Int, buckets: HistogramBuckets) -> HistogramSnapshot {
        var histogram = HistogramSnapshot(buckets: buckets)
        for bucket in 0..<buckets.count { histogram.counts[bucket] = grid.value(row: row, column: bucket) }
        histogram.sumNs = grid.value(row: row, column: buckets.count)
        return histogram
    }
}
