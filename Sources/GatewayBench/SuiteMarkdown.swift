/// results/latest.md: the suite's figures as readable tables, with the command, machine and arrangement.
public enum SuiteMarkdown {
    public static func render(_ report: SuiteReport, chart: String?) -> String {
        var md: [String] = []
        md.append("# gwbench suite\(report.quick ? " --quick" : "") — \(report.date)")
        md.append("")
        md.append("- Command: `\(report.command)`")
        md.append("- Started \(report.started_at), took \(Format.fixed(report.duration_s, 0)) s.")
        let m = report.machine
        md.append("- Machine: \(m.cores) × \(m.cpu_model) (\(m.available_cores) available), \(m.kernel), host \(m.hostname).")
        md.append("- Arrangement: \(report.arrangement.description)")
        md.append("- Targets: " + report.targets.map { "\($0["name"] ?? "?") = \($0["url"] ?? "?") (\($0["what"] ?? ""))" }.joined(separator: "; ") + ".")
        md.append("- Load: gwbench's own client, HTTP/1.1 keep-alive, the built-in chat request (gpt-4o-mini, non-streaming; "
            + "300 bytes unless a scenario varies it). Targets interleaved round by round; medians with the min–max spread.")
        for noise in report.noise ?? [] {
            md.append("- Machine noise during \(noise.window) (\(Format.fixed(noise.seconds, 0)) s): other processes took "
                + "\(noise.summary) (busy time from /proc/stat minus the suite's own processes pinned there).")
        }
        if !report.problems.isEmpty {
            md.append("")
            md.append("**Problems:**")
            for problem in report.problems { md.append("- \(problem)") }
        }

        md.append("")
        md.append("## Gate (what `gwbench check` compares)")
        md.append("")
        md.append("| figure | value | how |")
        md.append("|---|---:|---|")
        for spec in GateFigureSpec.all {
            let value = report.gate.byName[spec.name] ?? nil
            md.append("| `\(spec.name)` | \(value.map(GateCheck.show) ?? "–") | \(report.gate_sources[spec.name] ?? spec.meaning) |")
        }
        if !report.gate_notes.isEmpty {
            md.append("")
            for note in report.gate_notes { md.append("- \(note)") }
        }

        for scenario in report.scenarios {
            md.append("")
            md.append("## \(scenario.number). \(scenario.title)")
            md.append("")
            switch scenario.status {
            case "ran":
                if let note = scenario.note {
                    md.append("_\(note)_")
                    md.append("")
                }
            case "failed":
                md.append("**Failed:** \(scenario.note ?? "")")
                continue
            default:
                md.append("_\(scenario.note ?? scenario.status)_")
                continue
            }
            switch scenario.number {
            case 1: overhead(scenario, chart: chart, into: &md)
            case 4: sweep(scenario, column: "prompt", into: &md)
            case 5: sweep(scenario, column: "connections", into: &md)
            case 6, 7: sweep(scenario, column: "path", into: &md)
            case 10: memory(scenario, into: &md)
            default: break
            }
        }

        md.append("")
        md.append("## Instructions per proxied request (callgrind)")
        md.append("")
        if let i = report.instructions {
            if i.status == "ran" {
                md.append("**\(i.instructions_per_request.map { Format.fixed($0, 0) } ?? "–") instructions per request** "
                    + "(\(i.instructions.map { "\($0)" } ?? "–") over \(i.requests) requests, \(i.connections) connections, after "
                    + "\(i.warmup_requests) warm-up requests; BENCHMARKING.md: nginx 22,800, HAProxy 31,800, nghttpx 25,500).")
                md.append("")
                md.append("- Dump line: `\(i.dump_line ?? "")`; \(i.tool ?? "valgrind"); the gateway came up under valgrind in "
                    + "\(i.startup_s.map { Format.fixed($0, 1) } ?? "?") s and exited \(i.gateway_exit_status.map(String.init) ?? "?").")
                md.append("- Command: `\((i.command ?? []).joined(separator: " "))`")
            } else {
                md.append("_\(i.status): \(i.note ?? "")_")
            }
            /// One more run of the same requests: "`what`: **N instructions per request**." or why it did not run.
            func another(_ run: InstructionsRecord?, _ what: String, short: String) {
                guard let run else { return }
                md.append("")
                md.append(run.status == "ran"
                    ? "\(what): **\(run.instructions_per_request.map { Format.fixed($0, 0) } ?? "–") instructions per request**."
                    : "_\(short): \(run.status): \(run.note ?? "")_")
            }
            if let h = report.h2c_instructions {
                another(h, "Over h2c (the same requests, \(h.connections) connections with \(h.streams_per_connection ?? 1) streams each)",
                        short: "h2c")
            }
            another(report.h2c_upstream_instructions, "Over h2c through a gateway with h2c to gwmock as well (`protocol: h2c`)",
                    short: "h2c to the provider")
            another(report.policy_instructions, "HTTP/1.1 through the full control layer (a key and its group with limits "
                        + "and budgets, the SQLite audit log, metrics; the audit writer thread counted)", short: "full policy")
        } else {
            md.append("_not asked for_")
        }

        md.append("")
        md.append("## Allocations per proxied request (LD_PRELOAD malloc counter)")
        md.append("")
        if let a = report.allocations {
            if a.status == "ran", let counts = a.counts {
                md.append("**\(a.allocations_per_request.map(GateCheck.show) ?? "–") allocations per request** "
                    + "(\(counts["total"] ?? 0) over \(a.requests) requests, \(a.connections) connections, after \(a.warmup_requests) "
                    + "warm-up requests; frees per request \(a.frees_per_request.map(GateCheck.show) ?? "–")). "
                    + "Compare results/2026-11-25-allocations.md (ordo-one/benchmark, embedded gateway): 0.0005.")
                md.append("")
                md.append("| " + MallocCounterReport.names.joined(separator: " | ") + " |")
                md.append("|" + String(repeating: "---:|", count: MallocCounterReport.names.count))
                md.append("| " + MallocCounterReport.names.map { "\(counts[$0] ?? 0)" }.joined(separator: " | ") + " |")
                if let note = a.note { md.append(""); md.append("- \(note)") }
            } else {
                md.append("_\(a.status): \(a.note ?? "")_")
            }
        } else {
            md.append("_not asked for_")
        }

        md.append("")
        md.append("## Processes")
        md.append("")
        md.append("| process | pid | exit status after SIGTERM |")
        md.append("|---|---:|---:|")
        for process in report.processes {
            md.append("| \(process.name) | \(process.pid) | \(process.exit_status.map(String.init) ?? "killed") |")
        }
        return md.joined(separator: "\n") + "\n"
    }

    static func us(_ value: Double?) -> String {
        guard let value else { return "–" }
        return Format.fixed(value, value < 10 ? 1 : 0)
    }

    static func delta(_ value: Double?) -> String {
        guard let value else { return "–" }
        return (value >= 0 ? "+" : "") + Format.fixed(value, 0)
    }

    static func spread(_ spread: Spread?, decimals: Int = 0) -> String {
        guard let spread else { return "–" }
        return "\(Format.fixed(spread.median, decimals)) (\(Format.fixed(spread.min, decimals))–\(Format.fixed(spread.max, decimals)))"
    }

    static func overhead(_ scenario: ScenarioRecord, chart: String?, into md: inout [String]) {
        if let point = scenario.point("throughput") {
            let c = point.compare
            md.append("### Throughput: closed loop at saturation, \(c.options.connections) connections, "
                + "\(c.rounds.count) rounds × \(Format.fixed(c.options.duration_s ?? 0, 0)) s (after \(Format.fixed(c.options.warmup_s, 1)) s warm-up each)")
            md.append("")
            md.append("| target | RPS median (min–max) | RPS ratio median | best | p50 µs | p99 µs | CPU µs/req median (min–max) | CPU ratio median | best |")
            md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for s in c.summary {
                md.append("| \(s.name) | \(spread(s.rps)) | \(s.rps_ratio_vs_direct.map { Format.fixed($0, 3) } ?? "–") | "
                    + "\(point.best_rps_ratio?[s.name].map { Format.fixed($0, 3) } ?? "–") | \(us(s.latency_us?.p50.median)) | "
                    + "\(us(s.latency_us?.p99.median)) | \(spread(s.cpu_per_request_us, decimals: 1)) | "
                    + "\(s.cpu_per_request_ratio_vs_direct.map { Format.fixed($0, 2) } ?? "–") | "
                    + "\(point.best_cpu_per_request_ratio?[s.name].map { Format.fixed($0, 2) } ?? "–") |")
            }
        }
        for (label, fraction) in [("latency", "half"), ("latency-quarter", "a quarter")] {
            guard let point = scenario.point(label) else { continue }
            latency(point, fraction: fraction, into: &md)
        }
        if let chart {
            md.append("")
            md.append("![latency by percentile, direct vs via](\(chart))")
        }
    }

    static func latency(_ point: ScenarioPoint, fraction: String, into md: inout [String]) {
        let c = point.compare
        md.append("")
        md.append("### Added latency: open loop at \(c.rate.map { Format.fixed($0, 0) } ?? "?") req/s (\(fraction) of direct's "
            + "maximum, \(c.direct_max_rps.map { Format.fixed($0, 0) } ?? "?") req/s), \(c.options.connections) connections, "
            + "\(c.rounds.count) rounds × \(Format.fixed(c.options.duration_s ?? 0, 1)) s")
        md.append("")
        md.append("| target | p50 µs | p90 µs | p99 µs | p99.9 µs | Δp50 | Δp90 | Δp99 | Δp99.9 | Δp99 ÷ direct p50 (median / best) |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in c.summary {
            let l = s.latency_us
            let d = s.delta_vs_direct_us
            let best = point.best_delta_p99_over_direct_p50?[s.name]
            md.append("| \(s.name) | \(us(l?.p50.median)) | \(us(l?.p90.median)) | \(us(l?.p99.median)) | \(us(l?.p99_9.median)) | "
                + "\(delta(d?.p50)) | \(delta(d?.p90)) | \(delta(d?.p99)) | \(delta(d?.p99_9)) | "
                + "\(s.delta_p99_over_direct_p50.map { Format.fixed($0, 2) } ?? "–") / \(best.map { Format.fixed($0, 2) } ?? "–") |")
        }
        let saturated = c.rounds.filter { $0.saturated == true }.count
        md.append("")
        md.append("Direct's low-load p99: \(us(c.low_load_p99_us)) µs (open loop at 5% of the maximum); a round is saturated when "
            + "direct's p99 exceeds twice that. Saturated rounds: \(saturated) of \(c.rounds.count).")
        if c.summary.first?.saturated == true {
            md.append("By BENCHMARKING.md's rule the point is saturated (direct's median p99 \(us(c.summary.first?.latency_us?.p99.median)) µs), "
                + "so the Δ columns are not quoted (–): on 2 cores gwmock and gwbench's open loop share one CPU and queue there.")
        }
    }

    static func sweep(_ scenario: ScenarioRecord, column: String, into md: inout [String]) {
        guard let points = scenario.points, let first = points.first else { return }
        let c0 = first.compare
        md.append("Closed loop, \(c0.rounds.count) rounds per point; Δ are the median over rounds of (via − direct) in the same round, µs.")
        md.append("")
        let showConnections = column != "connections"
        md.append("| \(column) |\(showConnections ? " connections |" : "") target | RPS median (min–max) | RPS ratio median | best | p50 µs | p99 µs | Δp50 | Δp99 |")
        md.append("|---|\(showConnections ? "---:|" : "")---|---:|---:|---:|---:|---:|---:|---:|")
        for point in points {
            let c = point.compare
            for s in c.summary {
                let first = showConnections ? "\(point.label) | \(c.options.connections)" : "\(c.options.connections)"
                md.append("| \(first) | \(s.name) | \(spread(s.rps)) | "
                    + "\(s.rps_ratio_vs_direct.map { Format.fixed($0, 3) } ?? "–") | "
                    + "\(point.best_rps_ratio?[s.name].map { Format.fixed($0, 3) } ?? "–") | \(us(s.latency_us?.p50.median)) | "
                    + "\(us(s.latency_us?.p99.median)) | \(delta(s.delta_vs_direct_us?.p50)) | \(delta(s.delta_vs_direct_us?.p99)) |")
            }
        }
    }

    static func memory(_ scenario: ScenarioRecord, into md: inout [String]) {
        guard let m = scenario.memory else { return }
        func kib(_ value: UInt64?) -> String { value.map { Format.fixed(Double($0) / 1024, 1) + " MiB" } ?? "–" }
        md.append("The gateway's resident memory (VmRSS, /proc/PID/status; peak = VmHWM).")
        md.append("")
        md.append("| measure | value |")
        md.append("|---|---:|")
        md.append("| idle, right after start | \(kib(m.idle_kib)) |")
        md.append("| peak under load (VmHWM after scenario 1's closed loop) | \(kib(m.peak_under_load_kib)) |")
        md.append("| peak over all load scenarios (VmHWM before the idle connections) | \(kib(m.peak_all_load_kib)) |")
        md.append("| before the idle connections | \(kib(m.before_idle_connections_kib)) |")
        md.append("| with \(m.idle_connections_open ?? 0) idle keep-alive connections (of \(m.idle_connections_wanted) wanted) | \(kib(m.with_idle_connections_kib)) |")
        md.append("| per idle connection | \(m.per_idle_connection_bytes.map { Format.fixed($0, 0) + " B" } ?? "–") |")
        md.append("| after closing them | \(kib(m.after_closing_kib)) |")
        md.append("| growth over the load scenarios | \(m.growth_kib.map { "\($0) KiB" } ?? "–")"
            + "\(m.growth_between.map { " (\($0.joined(separator: " → ")))" } ?? "") |")
        md.append("")
        md.append("Growth is an upper bound on drift: scenarios 4 and 5 (1 MB bodies, 256 connections) grow the buffer pools "
            + "legitimately; the timeline below shows where it happened.")
        if let failures = m.idle_connection_failures, failures > 0 {
            md.append("")
            md.append("\(failures) connections failed (\(m.idle_connection_error ?? "")).")
        }
        md.append("")
        md.append("Each idle connection was opened by gwbench, used for one request (so the gateway holds it as an idle "
            + "keep-alive connection) and then held; open-files limit \(m.open_files_limit) (raised with setrlimit; the gateway inherits it). "
            + "They are closed with a reset (SO_LINGER 0): 10,000 sockets in TIME_WAIT slow loopback TCP for a minute.")
        md.append("")
        md.append("<details><summary>RSS timeline</summary>")
        md.append("")
        md.append("| t (s) | step | RSS | VmHWM |")
        md.append("|---:|---|---:|---:|")
        for sample in m.timeline {
            md.append("| \(Format.fixed(sample.t_s, 1)) | \(sample.label) | \(kib(sample.rss_kib)) | \(kib(sample.hwm_kib)) |")
        }
        md.append("")
        md.append("</details>")
    }
}
