// Choosing a deployment for a request: one reactor thread's view, so the choice takes no lock and
// allocates nothing. Health (cooldown) is the one shared input; in-flight counts and latency averages are
// the thread's own, which is enough to steer each thread's share of the load.
//
//   weighted    smooth weighted round robin (nginx's): each pick adds every candidate's weight to its
//               running score, takes the highest, and subtracts the total from it. Over any run of
//               sum(weights) picks each deployment gets exactly its weight, interleaved, not in bursts.
//   least_busy  the fewest in-flight requests relative to weight (in-flight ÷ weight), ties by the
//               weighted order above.
//   latency     power of two choices: two random candidates, the one with the lower moving average of
//               response-head latency. A deployment never measured counts as fastest, so it is tried; the
//               loser's average decays 1% per comparison, so a deployment that was slow once is retried.
//   ordered     the first candidate in the configured order (priority failover).
//
// Candidates: not tried yet by this request, not cooling down, and with room in their connection pool;
// when every untried deployment's pool is full, a full one is still chosen (the request waits in its queue).
import GatewayConfig

/// One model's routing state on one thread.
public struct DeploymentPicker {
    public let strategy: RoutingStrategy
    private let weights: [Int]
    private var scores: [Int]
    private var inFlight: [Int]
    private var latencyNs: [Double]
    private var random: UInt64

    public init(strategy: RoutingStrategy, weights: [Int], seed: UInt64) {
        precondition(!weights.isEmpty && weights.count <= 64)
        self.strategy = strategy
        self.weights = weights
        scores = [Int](repeating: 0, count: weights.count)
        inFlight = [Int](repeating: 0, count: weights.count)
        latencyNs = [Double](repeating: 0, count: weights.count)
        random = seed | 1
    }

    public var count: Int { weights.count }

    /// Picks a deployment index.
    /// - Parameters:
    ///   - excluded: a bit per deployment this request must not use (tried already, or refused its probe).
    ///   - available: whether a deployment is out of cooldown.
    ///   - hasRoom: whether a deployment's connection pool can take the request without queueing.
    /// - Returns: nil when every deployment is excluded or cooling down.
    public mutating func pick(excluding excluded: UInt64, available: (Int) -> Bool, hasRoom: (Int) -> Bool) -> Int? {
        var candidates: UInt64 = 0
        var roomy: UInt64 = 0
        for index in 0..<weights.count where excluded & (1 << index) == 0 && available(index) {
            candidates |= 1 << index
            if hasRoom(index) { roomy |= 1 << index }
        }
        if roomy != 0 { candidates = roomy }
        guard candidates != 0 else { return nil }
        if candidates & (candidates - 1) == 0 { return candidates.trailingZeroBitCount }
        switch strategy {
        case .weighted: return smoothWeighted(candidates)
        case .least_busy: return leastBusy(candidates)
        case .latency: return powerOfTwo(candidates)
        case .ordered: return candidates.trailingZeroBitCount
        }
    }

    /// A request started on deployment `index`.
    public mutating func started(_ index: Int) { inFlight[index] += 1 }

    /// A request on deployment `index` ended (any outcome).
    public mutating func finished(_ index: Int) { inFlight[index] = max(0, inFlight[index] - 1) }

    /// A response head arrived from deployment `index`, `ns` after the request went.
    public mutating func observeLatency(_ index: Int, ns: UInt64) {
        let sample = Double(ns)
        latencyNs[index] = latencyNs[index] == 0 ? sample : latencyNs[index] + (sample - latencyNs[index]) * 0.2
    }

    public func inFlightCount(_ index: Int) -> Int { inFlight[index] }
    public func averageLatencyNs(_ index: Int) -> Double { latencyNs[index] }

    private mutating func smoothWeighted(_ candidates: UInt64) -> Int {
        var total = 0
        var best = -1
        var bits = candidates
        while bits != 0 {
            let index = bits.trailingZeroBitCount
            bits &= bits - 1
            scores[index] += weights[index]
            total += weights[index]
            if best < 0 || scores[index] > scores[best] { best = index }
        }
        scores[best] -= total
        return best
    }

    private mutating func leastBusy(_ candidates: UInt64) -> Int {
        // Lowest inFlight ÷ weight, compared by cross-multiplying; ties go to the weighted order.
        var lowest: UInt64 = 0
        var best = -1
        var bits = candidates
        while bits != 0 {
            let index = bits.trailingZeroBitCount
            bits &= bits - 1
            if best < 0 || inFlight[index] * weights[best] < inFlight[best] * weights[index] {
                best = index
                lowest = 1 << index
            } else if inFlight[index] * weights[best] == inFlight[best] * weights[index] {
                lowest |= 1 << index
            }
        }
        return lowest & (lowest - 1) == 0 ? best : smoothWeighted(lowest)
    }

    private mutating func powerOfTwo(_ candidates: UInt64) -> Int {
        let count = candidates.nonzeroBitCount
        let first = nthBit(candidates, Int(nextRandom() % UInt64(count)))
        let second = nthBit(candidates & ~(1 << first), Int(nextRandom() % UInt64(count - 1)))
        let (winner, loser) = latencyNs[first] <= latencyNs[second] ? (first, second) : (second, first)
        latencyNs[loser] *= 0.99
        return winner
    }

    /// The index of the n-th set bit (0-based) of `bits`.
    private func nthBit(_ bits: UInt64, _ n: Int) -> Int {
        var rest = bits
        for _ in 0..<n { rest &= rest - 1 }
        return rest.trailingZeroBitCount
    }

    /// xorshift64*: cheap, and good enough to pick two of a few.
    private mutating func nextRandom() -> UInt64 {
        random ^= random >> 12
        random ^= random << 25
        random ^= random >> 27
        return random &* 0x2545_F491_4F6C_DD1D
    }
}
