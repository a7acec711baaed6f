/// `gwbench compare`: the same load against a direct target and one or more targets via something
/// (the gateway, a peer proxy), interleaved round by round so that a noisy machine hurts all alike.
public struct CompareOptions: Sendable {
    public enum Mode: String, Sendable {
        /// Closed loop at saturation: the throughput ratio.
        case throughput
        /// Open loop at a fixed rate: the added latency.
        case latency
    }

    public var direct: BenchTarget
    public var vias: [(name: String, target: BenchTarget)]
    public var rounds = 3
    public var mode = Mode.throughput
    /// Latency mode: the rate, or a fraction of direct's measured maximum (default 0.5).
    public var rate: Double?
    public var rateFraction: Double?
    /// The load of every measured run; its target and mode are set per run.
    public var load: LoadConfig
    /// How long the probes (direct's maximum, the low-load p99) run.
    public var probeNs: UInt64 = 2_000_000_000
    public var arrangement: String?

    public init(direct: BenchTarget, vias: [(name: String, target: BenchTarget)], load: LoadConfig) {
        self.direct = direct
        self.vias = vias
        self.load = load
    }

    public var targets: [(name: String, target: BenchTarget)] { [("direct", direct)] + vias }

    public func validate() throws(LoadConfig.ValidationError) {
        guard rounds >= 1 else { throw .init(description: "--rounds must be at least 1") }
        var names: Set<String> = ["direct"]
        for via in vias {
            guard !via.name.isEmpty, names.insert(via.name).inserted else {
                throw .init(description: "--via \(via.name)=…: each target needs its own name (and not 'direct')")
            }
        }
        if mode == .throughput, rate != nil || rateFraction != nil {
            throw .init(description: "--rate and --rate-fraction belong to --mode latency")
        }
        if let rateFraction, !(rateFraction > 0 && rateFraction <= 1) {
            throw .init(description: "--rate-fraction must be in (0, 1]")
        }
        if rate != nil && rateFraction != nil { throw .init(description: "give --rate or --rate-fraction, not both") }
        try load.validate()
    }
}

/// A median and the spread (min–max) of one figure across rounds.
public struct Spread: Codable, Sendable, Equatable {
    public var median: Double
    public var min: Double
    public var max: Double

    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        min = sorted.first!
        max = sorted.last!
    }
}

/// The quoted percentiles, in microseconds.
public struct LatencyFigures<Value: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    public var p50: Value
    public var p90: Value
    public var p99: Value
    public var p99_9: Value
}

public struct TargetSummary: Codable, Sendable, Equatable {
    public var name: String
    public var url: String
    public var rounds: Int
    public var rps: Spread?
    public var latency_us: LatencyFigures<Spread>?
    /// Median over rounds of (this target − direct in the same round), µs. Nil for direct and for
    /// saturated points.
    public var delta_vs_direct_us: LatencyFigures<Double>?
    /// Median over rounds of this target's RPS ÷ direct's in the same round: the throughput ratio.
    public var rps_ratio_vs_direct: Double?
    /// CPU per response of the process named like the target (`--pid NAME=PID`), µs.
    public var cpu_per_request_us: Spread?
    public var cpu_per_request_ratio_vs_direct: Double?
    /// Δp99 ÷ direct's p50: a latency ratio that `gwbench check` can hold across machines.
    public var delta_p99_over_direct_p50: Double?
    public var errors: UInt64
    /// Latency mode: rounds in which direct's p99 was over twice its low-load p99.
    public var saturated_rounds: Int
    public var saturated: Bool
}

public struct CompareRoundRecord: Codable, Sendable, Equatable {
    public var round: Int
    public var results: [ResultRecord]
    public var saturated: Bool?
}

/// The file `gwbench compare --json` writes.
public struct CompareReport: Codable, Sendable, Equatable {
    public var tool = "gwbench"
    public var schema_version = 1
    public var kind = "compare"
    public var mode: String
    public var options: OptionsRecord
    public var targets: [[String: String]]
    public var rounds_requested: Int
    public var rate: Double?
    public var rate_fraction: Double?
    public var direct_max_rps: Double?
    public var low_load_p99_us: Double?
    public var saturation_limit_us: Double?
    public var machine: MachineInfo
    public var arrangement: String?
    public var rounds: [CompareRoundRecord]
    public var summary: [TargetSummary]
}

/// Everything a compare measured.
public struct CompareOutcome: Sendable {
    public var options: CompareOptions
    /// rounds[r][t]: round r, target t (direct first).
    public var rounds: [[RunResult]]
    public var rate: Double?
    public var directMaxRPS: Double?
    public var lowLoadP99Ns: UInt64?
    public var summary: [TargetSummary]

    public var saturationLimitNs: UInt64? { lowLoadP99Ns.map { $0 * 2 } }

    public func report(machine: MachineInfo = .current()) -> CompareReport {
        var load = options.load
        if let rate { load.mode = .open(rate: rate) }
        let limit = saturationLimitNs
        return CompareReport(
            mode: options.mode.rawValue,
            options: OptionsRecord(config: load, preciseTimer: rounds.first?.first?.preciseTimer),
            targets: options.targets.map { ["name": $0.name, "url": $0.target.description] },
            rounds_requested: options.rounds, rate: rate, rate_fraction: options.rateFraction,
            direct_max_rps: directMaxRPS, low_load_p99_us: lowLoadP99Ns.map { Double($0) / 1e3 },
            saturation_limit_us: limit.map { Double($0) / 1e3 }, machine: machine, arrangement: options.arrangement,
            rounds: rounds.enumerated().map { index, results in
                CompareRoundRecord(
                    round: index + 1, results: results.map { ResultRecord(result: $0) },
                    saturated: limit.map { results[0].latency(99) > $0 })
            },
            summary: summary)
    }
}

public enum CompareRunner {
    /// Runs the comparison. `say` gets a line for each step (for the terminal).
    public static func run(_ options: CompareOptions, say: (String) -> Void) throws(LoadConfig.ValidationError) -> CompareOutcome {
        try options.validate()
        var rate = options.rate
        var directMax: Double?
        var lowLoadP99: UInt64?
        var base = options.load
        base.observedProcesses = options.load.observedProcesses

        if options.mode == .latency {
            var probe = base
            probe.target = options.direct
            probe.mode = .closed
            probe.durationNs = options.probeNs
            probe.requestCount = nil
            probe.warmupNs = min(base.warmupNs, 500_000_000)
            probe.observedProcesses = []
            if rate == nil {
                let maximum = try LoadRunner.run(probe, name: "direct-max")
                directMax = maximum.rps
                rate = max(1, maximum.rps * (options.rateFraction ?? 0.5))
                say("direct maximum \(Format.fixed(maximum.rps, 0)) req/s (closed loop, \(probe.connections) connections); "
                    + "rate \(Format.fixed(rate!, 0)) req/s")
            }
            // Low load: about 5% of the maximum on the same connections, or one connection when no maximum is known.
            var low = probe
            if let directMax {
                low.mode = .open(rate: max(1, directMax * 0.05))
            } else {
                low.connections = 1
                low.threads = 1
            }
            let lowRun = try LoadRunner.run(low, name: "direct-low-load")
            lowLoadP99 = lowRun.latency(99)
            say("direct low-load p99 \(Format.latency(Double(lowRun.latency(99)))) "
                + "(\(directMax != nil ? "open loop at 5% of the maximum" : "1 connection, closed loop")); saturation above "
                + Format.latency(Double(lowRun.latency(99) * 2)))
            base.mode = .open(rate: rate!)
        } else {
            base.mode = .closed
        }

        var rounds: [[RunResult]] = []
        for round in 0..<options.rounds {
            var results: [RunResult] = []
            for (name, target) in options.targets {
                var config = base
                config.target = target
                let result = try LoadRunner.run(config, name: name)
                results.append(result)
                say("round \(round + 1)/\(options.rounds) \(Format.padRight(name, 10)) "
                    + "\(Format.pad(Format.fixed(result.rps, 0), 8)) req/s  p50 \(Format.latency(Double(result.latency(50))))"
                    + "  p99 \(Format.latency(Double(result.latency(99))))  errors \(result.stats.counters.failures + result.stats.errorResponses)")
            }
            rounds.append(results)
        }
        let summary = summarize(options: options, rounds: rounds, saturationLimit: lowLoadP99.map { $0 * 2 })
        return CompareOutcome(options: options, rounds: rounds, rate: rate, directMaxRPS: directMax,
                              lowLoadP99Ns: lowLoadP99, summary: summary)
    }

    /// Medians, spreads, and paired deltas and ratios against direct.
    /// - Parameter saturationLimit: direct's p99 above this marks a round saturated (latency mode).
    public static func summarize(options: CompareOptions, rounds: [[RunResult]], saturationLimit: UInt64?) -> [TargetSummary] {
        let percentiles = [50.0, 90, 99, 99.9]
        let saturatedRounds = rounds.filter { round in saturationLimit.map { round[0].latency(99) > $0 } ?? false }.count
        // The point is saturated when direct's median p99 is over the limit.
        let directP99s = rounds.map { Double($0[0].latency(99)) }
        let saturated = saturationLimit.map { limit in (Spread(directP99s)?.median ?? 0) > Double(limit) } ?? false
        return options.targets.enumerated().map { index, target in
            let runs = rounds.map { $0[index] }
            let direct = rounds.map { $0[0] }
            func figures(_ value: (Double) -> Spread?) -> LatencyFigures<Spread>? {
                guard let a = value(50), let b = value(90), let c = value(99), let d = value(99.9) else { return nil }
                return LatencyFigures(p50: a, p90: b, p99: c, p99_9: d)
            }
            let latency = figures { p in Spread(runs.map { Double($0.latency(p)) / 1e3 }) }
            var deltas: LatencyFigures<Double>?
            var ratio: Double?
            var deltaP99OverP50: Double?
            if index > 0 {
                let perPercentile = percentiles.map { p in
                    Spread(zip(runs, direct).map { (Double($0.latency(p)) - Double($1.latency(p))) / 1e3 })!.median
                }
                if !saturated {
                    deltas = LatencyFigures(p50: perPercentile[0], p90: perPercentile[1], p99: perPercentile[2], p99_9: perPercentile[3])
                    let directP50 = Spread(direct.map { Double($0.latency(50)) / 1e3 })!.median
                    if directP50 > 0 { deltaP99OverP50 = perPercentile[2] / directP50 }
                }
                ratio = Spread(zip(runs, direct).compactMap { $1.rps > 0 ? $0.rps / $1.rps : nil })?.median
            }
            let cpu = Spread(runs.compactMap { $0.cpuPerResponse(ofProcess: target.name).map { $0 / 1e3 } })
            var cpuRatio: Double?
            if index > 0, let cpu, let directCPU = Spread(direct.compactMap { $0.cpuPerResponse(ofProcess: "direct").map { $0 / 1e3 } }),
               directCPU.median > 0 {
                cpuRatio = cpu.median / directCPU.median
            }
            return TargetSummary(
                name: target.name, url: target.target.description, rounds: runs.count,
                rps: Spread(runs.map(\.rps)), latency_us: latency, delta_vs_direct_us: deltas,
                rps_ratio_vs_direct: ratio, cpu_per_request_us: cpu, cpu_per_request_ratio_vs_direct: cpuRatio,
                delta_p99_over_direct_p50: deltaP99OverP50,
                errors: runs.reduce(0) { $0 + $1.stats.counters.failures + $1.stats.errorResponses },
                saturated_rounds: saturatedRounds, saturated: saturated)
        }
    }

    /// The comparison as tables for the terminal.
    public static func text(_ outcome: CompareOutcome) -> String {
        let options = outcome.options
        var lines: [String] = []
        var head = "gwbench compare — \(options.mode.rawValue) mode, \(options.rounds) round\(options.rounds == 1 ? "" : "s") "
            + "interleaved, \(options.load.connections) connections"
        if let rate = outcome.rate { head += ", open loop at \(Format.fixed(rate, 0)) req/s" }
        lines.append(head)
        if let limit = outcome.saturationLimitNs, let low = outcome.lowLoadP99Ns {
            lines.append("  direct low-load p99 \(Format.latency(Double(low))); a point is saturated when direct's p99 exceeds "
                + Format.latency(Double(limit)))
        }
        lines.append("")
        let columns = ["RPS", "p50", "p90", "p99", "p99.9", "CPU/req"]
        lines.append("  " + Format.padRight("median", 12) + columns.map { Format.pad($0, 14) }.joined())
        func us(_ value: Double) -> String { Format.latency(value * 1e3) }
        for summary in outcome.summary {
            var row = [summary.rps.map { Format.fixed($0.median, 0) } ?? "-"]
            if let latency = summary.latency_us {
                row += [latency.p50, latency.p90, latency.p99, latency.p99_9].map { us($0.median) }
            } else {
                row += ["-", "-", "-", "-"]
            }
            row.append(summary.cpu_per_request_us.map { Format.fixed($0.median, 1) + "µs" } ?? "-")
            lines.append("  " + Format.padRight(summary.name, 12) + row.map { Format.pad($0, 14) }.joined())
            var spread = [summary.rps.map { "\(Format.fixed($0.min, 0))–\(Format.fixed($0.max, 0))" } ?? "-"]
            if let latency = summary.latency_us {
                spread += [latency.p50, latency.p90, latency.p99, latency.p99_9].map {
                    Format.fixed($0.min, 0) + "–" + Format.fixed($0.max, 0)
                }
            }
            lines.append("  " + Format.padRight("  min–max", 12) + spread.map { Format.pad($0, 14) }.joined() + "   (µs)")
        }
        if outcome.summary.count > 1 {
            lines.append("")
            let deltaColumns = ["RPS ratio", "Δp50", "Δp90", "Δp99", "Δp99.9", "CPU ratio"]
            lines.append("  " + Format.padRight("vs direct", 12) + deltaColumns.map { Format.pad($0, 14) }.joined())
            for summary in outcome.summary.dropFirst() {
                var row = [summary.rps_ratio_vs_direct.map { Format.fixed($0, 3) } ?? "-"]
                if let delta = summary.delta_vs_direct_us {
                    row += [delta.p50, delta.p90, delta.p99, delta.p99_9].map { ($0 >= 0 ? "+" : "") + Format.fixed($0, 0) + "µs" }
                } else {
                    row += Array(repeating: summary.saturated ? "saturated" : "-", count: 4)
                }
                row.append(summary.cpu_per_request_ratio_vs_direct.map { Format.fixed($0, 2) } ?? "-")
                lines.append("  " + Format.padRight(summary.name, 12) + row.map { Format.pad($0, 14) }.joined())
            }
        }
        if let direct = outcome.summary.first, direct.saturated {
            lines.append("")
            lines.append("  SATURATED: direct's median p99 is over twice its low-load p99 (\(direct.saturated_rounds) of "
                + "\(direct.rounds) rounds); the latency deltas are not quoted. Lower --rate or --rate-fraction.")
        }
        let errors = outcome.summary.filter { $0.errors > 0 }
        if !errors.isEmpty {
            lines.append("")
            lines.append("  errors: " + errors.map { "\($0.name) \($0.errors)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
