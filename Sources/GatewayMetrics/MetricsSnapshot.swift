/// Why the gateway refused a request before it reached an upstream: the `reason` label of
/// `gateway_rejections_total`. The names are the error codes of DESIGN.md's client API.
public enum RejectionReason: Int, Sendable, CaseIterable {
    case invalidRequest
    case invalidAPIKey
    case modelNotAllowed
    case modelNotFound
    case rateLimitExceeded
    case budgetExceeded
    case requestTooLarge
    case headersTooLarge
    case requestTimeout
    case notFound
    case methodNotAllowed
    case shuttingDown

    /// The label value, the same text as the error code the client sees.
    public var label: String {
        switch self {
        case .invalidRequest: "invalid_request"
        case .invalidAPIKey: "invalid_api_key"
        case .modelNotAllowed: "model_not_allowed"
        case .modelNotFound: "model_not_found"
        case .rateLimitExceeded: "rate_limit_exceeded"
        case .budgetExceeded: "budget_exceeded"
        case .requestTooLarge: "request_too_large"
        case .headersTooLarge: "headers_too_large"
        case .requestTimeout: "request_timeout"
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .shuttingDown: "shutting_down"
        }
    }
}

/// The audit writer's health, read at scrape time from whatever owns the queue.
public struct AuditMetrics: Sendable, Equatable {
    /// Records waiting for the writer thread.
    public var queueDepth: Int
    /// Records that found the queue full and went to the spill file instead.
    public var spilled: UInt64
    /// Records lost for good (the spill file full or failing too).
    public var dropped: UInt64
    /// Times the writer fell behind (its backlog mark) at its background priority and was raised to the normal one:
    /// the CPU is busy enough that audit writing competes with requests.
    public var writerRaises: UInt64

    public init(queueDepth: Int = 0, spilled: UInt64 = 0, dropped: UInt64 = 0, writerRaises: UInt64 = 0) {
        self.queueDepth = queueDepth
        self.spilled = spilled
        self.dropped = dropped
        self.writerRaises = writerRaises
    }
}

/// A histogram's counts: one per bucket (not cumulative; `+Inf` last) and the sum of the observations.
public struct HistogramSnapshot: Sendable, Equatable {
    public var buckets: HistogramBuckets
    public var counts: [UInt64]
    public var sumNs: UInt64

    public init(buckets: HistogramBuckets) {
        self.buckets = buckets
        counts = Array(repeating: 0, count: buckets.count)
        sumNs = 0
    }

    public var count: UInt64 { counts.reduce(0, &+) }

    public mutating func add(_ other: HistogramSnapshot) {
        precondition(other.counts.count == counts.count, "histograms with different buckets")
        for i in counts.indices { counts[i] &+= other.counts[i] }
        sumNs &+= other.sumNs
    }
}

/// One label combination of `gateway_requests_total`.
public struct RequestSeries: Hashable, Sendable, Comparable {
    public var model: Int
    public var group: Int
    public var status: Int

    public init(model: Int, group: Int, status: Int) {
        self.model = model
        self.group = group
        self.status = status
    }

    public static func < (a: RequestSeries, b: RequestSeries) -> Bool {
        (a.model, a.group, a.status) < (b.model, b.group, b.status)
    }
}

/// A model and a group: the labels of the token and cost counters.
public struct ModelGroup: Hashable, Sendable, Comparable {
    public var model: Int
    public var group: Int

    public init(model: Int, group: Int) {
        self.model = model
        self.group = group
    }

    public static func < (a: ModelGroup, b: ModelGroup) -> Bool { (a.model, a.group) < (b.model, b.group) }
}

/// A deployment's upstream connections, by state.
public struct ConnectionCounts: Sendable, Equatable {
    public var active: Int
    public var idle: Int

    public init(active: Int = 0, idle: Int = 0) {
        self.active = active
        self.idle = idle
    }
}

/// A copy of one thread's metrics, or the sum of several. Only nonzero series are present; label ids
/// are those of `MetricsLabels`.
public struct MetricsSnapshot: Sendable, Equatable {
    public var requests: [RequestSeries: UInt64] = [:]
    public var requestDuration: HistogramSnapshot
    public var overhead: HistogramSnapshot
    /// By deployment id.
    public var upstreamDuration: [Int: HistogramSnapshot] = [:]
    public var promptTokens: [ModelGroup: UInt64] = [:]
    public var completionTokens: [ModelGroup: UInt64] = [:]
    /// In nano-dollars (1e-9 USD), so that sums are exact integers.
    public var costNanoUSD: [ModelGroup: UInt64] = [:]
    public var inflight = 0
    /// By deployment id.
    public var upstreamConnections: [Int: ConnectionCounts] = [:]
    /// By deployment id: 0 healthy, 1 cooling down, 2 half-open. Health is shared, so threads agree; the
    /// sum keeps the worst.
    public var deploymentStates: [Int: Int] = [:]
    /// Indexed by `RejectionReason.rawValue`.
    public var rejections: [UInt64] = Array(repeating: 0, count: RejectionReason.allCases.count)

    public init(latencyBuckets: HistogramBuckets = .latency, overheadBuckets: HistogramBuckets = .overhead) {
        requestDuration = HistogramSnapshot(buckets: latencyBuckets)
        overhead = HistogramSnapshot(buckets: overheadBuckets)
    }

    /// Adds another thread's metrics to these.
    public mutating func add(_ other: MetricsSnapshot) {
        for (key, value) in other.requests { requests[key, default: 0] &+= value }
        requestDuration.add(other.requestDuration)
        overhead.add(other.overhead)
        for (key, value) in other.upstreamDuration {
            if upstreamDuration[key] == nil {
                upstreamDuration[key] = value
            } else {
                upstreamDuration[key]!.add(value)
            }
        }
        for (key, value) in other.promptTokens { promptTokens[key, default: 0] &+= value }
        for (key, value) in other.completionTokens { completionTokens[key, default: 0] &+= value }
        for (key, value) in other.costNanoUSD { costNanoUSD[key, default: 0] &+= value }
        inflight += other.inflight
        for (key, value) in other.upstreamConnections {
            upstreamConnections[key, default: ConnectionCounts()].active += value.active
            upstreamConnections[key, default: ConnectionCounts()].idle += value.idle
        }
        for i in rejections.indices { rejections[i] &+= other.rejections[i] }
        deploymentStates.merge(other.deploymentStates, uniquingKeysWith: max)
    }

    public static func sum(_ snapshots: [MetricsSnapshot]) -> MetricsSnapshot {
        var total = MetricsSnapshot(
            latencyBuckets: snapshots.first?.requestDuration.buckets ?? .latency,
            overheadBuckets: snapshots.first?.overhead.buckets ?? .overhead)
        for snapshot in snapshots { total.add(snapshot) }
        return total
    }
}
