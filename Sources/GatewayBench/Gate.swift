#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// The regression gate: the few figures `gwbench suite` puts in the `gate` object of latest.json, and
// `gwbench check`, which compares them with a baseline file within per-figure tolerances.
//
// A baseline file is any JSON object with a `gate` object (latest.json itself qualifies), optionally a `why`
// note and a `tolerances` object that overrides the defaults figure by figure:
//
//     {"why": "…", "gate": {"throughput_ratio": 0.93, …},
//      "tolerances": {"throughput_ratio": {"relative": 0.2}, "instructions_per_request": {"absolute": 400}}}
//
// A figure may get worse by max(relative × |baseline|, absolute) before it fails. An override replaces only the
// fields it names. The current file's `tolerances`, if any, are ignored: only the baseline sets them.

/// The gate figures of one suite run. Nil: not measured (the reason is in `gate_notes`).
public struct GateFigures: Codable, Sendable, Equatable {
    // The noisy three take each target's best round (noise only makes a round worse), then the ratio.

    /// Closed loop at saturation, scenario 1: the best RPS via the gateway ÷ the best RPS direct to gwmock.
    public var throughput_ratio: Double?
    /// Open loop at a quarter of the direct maximum, scenario 1: (the lowest p99 via − the lowest p99 direct) ÷
    /// direct's median p50.
    public var delta_p99_over_direct_p50: Double?
    /// Closed loop, scenario 1: the gateway process's lowest CPU per response (via rounds) ÷ gwmock's lowest
    /// (direct rounds). What the gateway costs per request in units of what the upstream costs.
    public var cpu_per_request_ratio: Double?
    /// Allocating calls (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, valloc) per proxied
    /// request in the gateway's process, counted by scripts/bench/malloc-counter.c under LD_PRELOAD.
    public var allocations_per_request: Double?
    /// User-space instructions per proxied request of the gateway under callgrind.
    public var instructions_per_request: Double?
    /// The same, with the requests over h2c (4 connections, 32 streams each).
    public var h2c_instructions_per_request: Double?
    /// The same h2c requests through a gateway that speaks h2c to its provider too (`protocol: h2c`).
    public var h2c_upstream_instructions_per_request: Double?
    /// The HTTP/1.1 requests through the full control layer, its audit writer thread included.
    public var policy_instructions_per_request: Double?

    public init(throughput_ratio: Double? = nil, delta_p99_over_direct_p50: Double? = nil, cpu_per_request_ratio: Double? = nil,
                allocations_per_request: Double? = nil, instructions_per_request: Double? = nil,
                h2c_instructions_per_request: Double? = nil, h2c_upstream_instructions_per_request: Double? = nil,
                policy_instructions_per_request: Double? = nil) {
        self.throughput_ratio = throughput_ratio
        self.delta_p99_over_direct_p50 = delta_p99_over_direct_p50
        self.cpu_per_request_ratio = cpu_per_request_ratio
        self.allocations_per_request = allocations_per_request
        self.instructions_per_request = instructions_per_request
        self.h2c_instructions_per_request = h2c_instructions_per_request
        self.h2c_upstream_instructions_per_request = h2c_upstream_instructions_per_request
        self.policy_instructions_per_request = policy_instructions_per_request
    }

    /// The figures by name, nil when not measured.
    public var byName: [String: Double?] {
        [
            "throughput_ratio": throughput_ratio, "delta_p99_over_direct_p50": delta_p99_over_direct_p50,
            "cpu_per_request_ratio": cpu_per_request_ratio, "allocations_per_request": allocations_per_request,
            "instructions_per_request": instructions_per_request, "h2c_instructions_per_request": h2c_instructions_per_request,
            "h2c_upstream_instructions_per_request": h2c_upstream_instructions_per_request,
            "policy_instructions_per_request": policy_instructions_per_request,
        ]
    }

    // Explicit nulls for figures not measured, so that a reader sees every name.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(throughput_ratio, forKey: .throughput_ratio)
        try container.encode(delta_p99_over_direct_p50, forKey: .delta_p99_over_direct_p50)
        try container.encode(cpu_per_request_ratio, forKey: .cpu_per_request_ratio)
        try container.encode(allocations_per_request, forKey: .allocations_per_request)
        try container.encode(instructions_per_request, forKey: .instructions_per_request)
        try container.encode(h2c_instructions_per_request, forKey: .h2c_instructions_per_request)
        try container.encode(h2c_upstream_instructions_per_request, forKey: .h2c_upstream_instructions_per_request)
        try container.encode(policy_instructions_per_request, forKey: .policy_instructions_per_request)
    }
}

/// How far a figure may get worse: max(relative × |baseline|, absolute).
public struct GateTolerance: Codable, Sendable, Equatable {
    public var relative: Double?
    public var absolute: Double?

    public init(relative: Double? = nil, absolute: Double? = nil) {
        self.relative = relative
        self.absolute = absolute
    }

    /// This tolerance with the fields `override` names replaced.
    public func overridden(by override: GateTolerance?) -> GateTolerance {
        guard let override else { return self }
        return GateTolerance(relative: override.relative ?? relative, absolute: override.absolute ?? absolute)
    }

    /// The worsening allowed from `baseline`.
    public func allowance(baseline: Double) -> Double {
        max((relative ?? 0) * abs(baseline), absolute ?? 0)
    }

    public var description: String {
        var parts: [String] = []
        if let relative, relative > 0 { parts.append(Format.fixed(relative * 100, relative * 100 < 10 ? 1 : 0) + "%") }
        if let absolute, absolute > 0 { parts.append("±" + GateCheck.show(absolute)) }
        if parts.isEmpty { return "exact" }
        return parts.joined(separator: " or ") + (parts.count > 1 ? " (larger)" : "")
    }
}

/// One figure the gate knows: its name, which way is better, its default tolerance.
public struct GateFigureSpec: Sendable {
    public var name: String
    public var higherIsBetter: Bool
    public var tolerance: GateTolerance
    public var meaning: String

    /// The figures in the order they are shown, with the default tolerances: loose for the noisy ratios, tight
    /// for the deterministic counts.
    public static let all: [GateFigureSpec] = [
        GateFigureSpec(name: "throughput_ratio", higherIsBetter: true, tolerance: GateTolerance(relative: 0.25),
                       meaning: "RPS via ÷ direct, closed loop (higher is better)"),
        GateFigureSpec(name: "delta_p99_over_direct_p50", higherIsBetter: false, tolerance: GateTolerance(relative: 1.0, absolute: 1.0),
                       meaning: "Δp99 ÷ direct p50, open loop at a quarter of the direct maximum"),
        GateFigureSpec(name: "cpu_per_request_ratio", higherIsBetter: false, tolerance: GateTolerance(relative: 0.30),
                       meaning: "gateway CPU per request ÷ gwmock's"),
        GateFigureSpec(name: "allocations_per_request", higherIsBetter: false, tolerance: GateTolerance(absolute: 0.5),
                       meaning: "mallocs per proxied request (LD_PRELOAD counter)"),
        GateFigureSpec(name: "instructions_per_request", higherIsBetter: false, tolerance: GateTolerance(relative: 0.03),
                       meaning: "user-space instructions per proxied request (callgrind)"),
        GateFigureSpec(name: "h2c_instructions_per_request", higherIsBetter: false, tolerance: GateTolerance(relative: 0.03),
                       meaning: "the same over h2c, 32 streams per connection (callgrind)"),
        GateFigureSpec(name: "h2c_upstream_instructions_per_request", higherIsBetter: false, tolerance: GateTolerance(relative: 0.03),
                       meaning: "the same h2c load with h2c to the provider too (callgrind)"),
        GateFigureSpec(name: "policy_instructions_per_request", higherIsBetter: false, tolerance: GateTolerance(relative: 0.03),
                       meaning: "the HTTP/1.1 load through the full control layer, audit writer included (callgrind)"),
    ]
}

/// A file `gwbench check` reads: its gate figures, and (from a baseline) tolerances and the reason for them.
public struct GateDocument: Decodable, Sendable {
    public var gate: [String: Double]
    /// Figures present with a null value: measured as missing.
    public var nullFigures: Set<String>
    public var tolerances: [String: GateTolerance]
    public var why: String?
    public var notes: [String]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    enum CodingKeys: String, CodingKey { case gate, tolerances, why, gate_notes }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let figures = try container.nestedContainer(keyedBy: Key.self, forKey: .gate)
        var gate: [String: Double] = [:]
        var nulls: Set<String> = []
        for key in figures.allKeys {
            if let value = try? figures.decodeIfPresent(Double.self, forKey: key) {
                gate[key.stringValue] = value
            } else {
                nulls.insert(key.stringValue)
            }
        }
        self.gate = gate
        nullFigures = nulls
        tolerances = try container.decodeIfPresent([String: GateTolerance].self, forKey: .tolerances) ?? [:]
        why = try container.decodeIfPresent(String.self, forKey: .why)
        notes = (try? container.decodeIfPresent([String].self, forKey: .gate_notes)) ?? []
    }

    public static func parse(_ text: String) throws(SuiteError) -> GateDocument {
        do {
            return try JSONDecoder().decode(GateDocument.self, from: Data(text.utf8))
        } catch {
            throw SuiteError("not a gate file (a JSON object with a \"gate\" object): \(error)")
        }
    }

    public static func load(_ path: String) throws(SuiteError) -> GateDocument {
        guard let text = Files.read(path) else { throw SuiteError("cannot read \(path)") }
        do {
            return try parse(text)
        } catch {
            throw SuiteError("\(path): \(error.description)")
        }
    }
}

public struct GateVerdict: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        case ok = "ok"
        case improved = "ok (better)"
        case regression = "REGRESSION"
        case missing = "MISSING"
        case noBaseline = "no baseline"
    }

    public var name: String
    public var baseline: Double?
    public var current: Double?
    public var tolerance: GateTolerance
    /// The worst value that still passes.
    public var limit: Double?
    public var outcome: Outcome
    public var message: String

    public var failed: Bool { outcome == .regression || outcome == .missing }
}

public enum GateCheck {
    /// Compares every known figure of `current` with `baseline`.
    public static func verdicts(baseline: GateDocument, current: GateDocument) -> [GateVerdict] {
        var verdicts: [GateVerdict] = []
        for spec in GateFigureSpec.all {
            let tolerance = spec.tolerance.overridden(by: baseline.tolerances[spec.name])
            let base = baseline.gate[spec.name]
            let now = current.gate[spec.name]
            guard let base else {
                verdicts.append(GateVerdict(
                    name: spec.name, baseline: nil, current: now, tolerance: tolerance, limit: nil, outcome: .noBaseline,
                    message: "not in the baseline: not compared"))
                continue
            }
            let allowance = tolerance.allowance(baseline: base)
            let limit = spec.higherIsBetter ? base - allowance : base + allowance
            guard let now else {
                let reason = current.nullFigures.contains(spec.name) ? "null (not measured)" : "absent"
                let note = current.notes.first { $0.hasPrefix(spec.name) }.map { ": " + $0 } ?? ""
                verdicts.append(GateVerdict(
                    name: spec.name, baseline: base, current: nil, tolerance: tolerance, limit: limit, outcome: .missing,
                    message: "missing from the current file (\(reason))\(note)"))
                continue
            }
            let worse = spec.higherIsBetter ? now < limit : now > limit
            let better = spec.higherIsBetter ? now > base + allowance : now < base - allowance
            let outcome: GateVerdict.Outcome = worse ? .regression : (better ? .improved : .ok)
            var message = ""
            switch outcome {
            case .regression:
                message = "\(show(now)) is \(spec.higherIsBetter ? "below" : "above") the limit \(show(limit)) "
                    + "(baseline \(show(base)), tolerance \(tolerance.description))"
            case .improved:
                message = "better than the baseline beyond the tolerance: consider raising the baseline (in a commit that says why)"
            default: break
            }
            verdicts.append(GateVerdict(
                name: spec.name, baseline: base, current: now, tolerance: tolerance, limit: limit, outcome: outcome, message: message))
        }
        return verdicts
    }

    public static func passed(_ verdicts: [GateVerdict]) -> Bool { !verdicts.contains { $0.failed } }

    /// The verdicts as a table, then one line per failure or note, then the overall verdict.
    public static func table(_ verdicts: [GateVerdict], baselinePath: String, currentPath: String, why: String? = nil,
                             notes: [String]? = nil) -> String {
        var lines: [String] = []
        lines.append("gwbench check — baseline \(baselinePath), current \(currentPath)")
        if let why { lines.append("  baseline: \(why)") }
        lines.append("")
        let header = ["figure", "baseline", "current", "change", "tolerance", "limit", "verdict"]
        var rows: [[String]] = [header]
        for verdict in verdicts {
            var change = "-"
            if let base = verdict.baseline, let now = verdict.current, base != 0 {
                let percent = (now - base) / abs(base) * 100
                change = (percent >= 0 ? "+" : "") + Format.fixed(percent, 1) + "%"
            }
            rows.append([
                verdict.name, verdict.baseline.map(show) ?? "-", verdict.current.map(show) ?? "-", change,
                verdict.tolerance.description, verdict.limit.map { (GateFigureSpec.all.first { $0.name == verdict.name }?.higherIsBetter == true ? "≥ " : "≤ ") + show($0) } ?? "-",
                verdict.outcome.rawValue,
            ])
        }
        var widths = [Int](repeating: 0, count: header.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        for (index, row) in rows.enumerated() {
            let cells = row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : (i == 0 ? Format.padRight(cell, widths[i]) : Format.pad(cell, widths[i]))
            }
            lines.append("  " + cells.joined(separator: "  "))
            if index == 0 { lines.append("  " + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        if let notes, !notes.isEmpty {
            lines.append("")
            lines.append("  notes from the current run:")
            for note in notes { lines.append("    \(note)") }
        }
        let remarks = verdicts.filter { !$0.message.isEmpty }
        if !remarks.isEmpty {
            lines.append("")
            for verdict in remarks { lines.append("  \(verdict.name): \(verdict.message)") }
        }
        lines.append("")
        let failures = verdicts.filter(\.failed)
        if failures.isEmpty {
            lines.append("PASS: no figure is worse than its baseline beyond its tolerance.")
        } else {
            lines.append("FAIL: \(failures.map(\.name).joined(separator: ", ")) "
                + (failures.count == 1 ? "is" : "are") + " worse than the baseline beyond tolerance, or missing.")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A figure for a table: 4 significant digits, thousands without decimals.
    static func show(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 1000 { return Format.fixed(value, 0) }
        if magnitude >= 100 { return Format.fixed(value, 1) }
        if magnitude >= 10 { return Format.fixed(value, 2) }
        if magnitude >= 0.01 || magnitude == 0 { return Format.fixed(value, 3) }
        return Format.printf("%.2e", value)
    }
}
