import Histogram

/// The readable summary of a run on stdout.
public enum TextReport {
    public static func run(_ result: RunResult) -> String {
        let config = result.config
        let stats = result.stats
        let c = stats.counters
        var lines: [String] = []
        let threads = config.threads == 1 ? "1 thread" : "\(config.threads) threads"
        let template = RequestTemplate(spec: config.request, target: config.target)
        lines.append("gwbench \(config.request.method) \(config.target) — \(config.modeDescription), "
            + "\(config.connections) connection\(config.connections == 1 ? "" : "s")"
            + (config.httpProtocol != .http1 ? " (\(config.httpProtocol.rawValue), \(config.streamsPerConnection) stream\(config.streamsPerConnection == 1 ? "" : "s") each)" : "")
            + ", \(threads), "
            + "\(template.bodyBytes)-byte body\(config.request.stream ? ", streaming" : "")")
        var window = "  window \(Format.fixed(result.durationSeconds, 2))s"
        if config.warmupNs > 0 { window += " after \(Durations.describe(config.warmupNs)) warm-up" }
        lines.append(window + ": \(c.requestsSent) requests, \(c.responses) responses, "
            + "\(Format.fixed(result.rps, result.rps < 100 ? 1 : 0)) req/s")
        var cpu = "  CPU (gwbench) \(Format.fixed(Double(result.cpuNs) / 1e9, 2))s"
        if c.responses > 0 { cpu += ", \(Format.fixed(Double(result.cpuNs) / Double(c.responses) / 1e3, 1))µs per response" }
        // The open loop's pacer polls the last 50 µs before each send (BenchWorker.pollWindowNs).
        if case .open = config.mode { cpu += " (with the pacer's polling)" }
        for process in result.processes {
            if let ns = process.cpuNs {
                cpu += "; \(process.name) (pid \(process.pid)) \(Format.fixed(Double(ns) / 1e9, 2))s"
                if let per = result.cpuPerResponse(ofProcess: process.name) { cpu += ", \(Format.fixed(per / 1e3, 1))µs per response" }
            } else {
                cpu += "; \(process.name) (pid \(process.pid)) unreadable"
            }
        }
        lines.append(cpu)
        lines.append("")
        lines.append(header())
        lines.append(row("latency", stats.latency))
        lines.append(row("  uncorrected", stats.latencyUncorrected))
        if case .open = config.mode { lines.append(row("send delay", stats.sendDelay)) }
        lines.append(row("response head", stats.ttfb))
        if config.request.stream {
            lines.append(row("first event", stats.ttft))
            lines.append(row("event gap", stats.interEventGap))
        }
        if stats.legToUpstream.totalCount > 0 {
            lines.append(row("leg to mock", stats.legToUpstream))
            lines.append(row("leg from mock", stats.legFromUpstream))
        }
        if config.request.stream {
            lines.append(row("events/resp", stats.eventsPerResponse, time: false))
        }
        lines.append(row("bytes/resp", stats.bytesPerResponse, time: false))
        lines.append("")
        let codes = stats.statusCodes.map { "\($0.0) ×\($0.1)" }.joined(separator: ", ")
        lines.append("  statuses: " + (codes.isEmpty ? "none" : codes))
        let errors = "  errors: \(c.connectErrors) connect, \(c.resets) reset, \(c.timeouts) timeout, "
            + "\(c.badResponses) bad response, \(stats.errorResponses) 4xx/5xx; \(c.reconnects) reconnects"
            + (c.unfinished > 0 ? ", \(c.unfinished) unfinished" : "")
        lines.append(errors)
        if case .open = config.mode {
            var open = "  open loop: \(c.backlogged) sent late from the backlog (deepest \(c.maxBacklog)), \(c.missed) never sent"
            if result.preciseTimer == false { open += "; pacer has millisecond timers only" }
            lines.append(open)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static let columns = ["count", "p50", "p90", "p99", "p99.9", "max", "mean"]

    static func header() -> String {
        "  " + Format.padRight("", 15) + columns.map { Format.pad($0, 10) }.joined()
    }

    static func row(_ name: String, _ histogram: BenchHistogram, time: Bool = true) -> String {
        let count = histogram.totalCount
        func show(_ value: Double) -> String {
            guard count > 0 else { return "-" }
            return time ? Format.latency(value) : Format.fixed(value, value < 10 ? 1 : 0)
        }
        let values = [50.0, 90, 99, 99.9].map { show(Double(histogram.valueAtPercentile($0))) }
            + [show(Double(histogram.max)), show(histogram.mean)]
        return "  " + Format.padRight(name, 15) + Format.pad("\(count)", 10) + values.map { Format.pad($0, 10) }.joined()
    }
}

/// HdrHistogram's classic `.hgrm` percentile distribution (as HdrHistogram's Java and C libraries and
/// wrk2 write it), with values in milliseconds.
public enum HgrmOutput {
    public static func text(_ histogram: BenchHistogram) -> String {
        var output = ""
        histogram.outputPercentileDistribution(to: &output, outputValueUnitScalingRatio: 1_000_000, percentileTicksPerHalfDistance: 5)
        return output
    }
}
