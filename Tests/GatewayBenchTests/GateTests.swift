import Foundation
import Testing
@testable import GatewayBench

/// `gwbench check`: verdicts, tolerances, overrides, and the gate JSON that `gwbench suite` writes.
@Suite struct GateTests {
    static let baselineFigures = GateFigures(
        throughput_ratio: 0.90, delta_p99_over_direct_p50: 4.0, cpu_per_request_ratio: 2.0,
        allocations_per_request: 0.001, instructions_per_request: 17_000, h2c_instructions_per_request: 34_000,
        h2c_upstream_instructions_per_request: 54_000, policy_instructions_per_request: 35_000)

    static func document(_ figures: GateFigures, extra: String = "") throws -> GateDocument {
        let gate = try JSONOutput.encode(figures)
        return try GateDocument.parse("{\(extra)\"gate\": \(gate)}")
    }

    static func verdict(_ name: String, _ verdicts: [GateVerdict]) throws -> GateVerdict {
        try #require(verdicts.first { $0.name == name })
    }

    @Test func identicalFiguresPass() throws {
        let base = try GateTests.document(GateTests.baselineFigures)
        let verdicts = GateCheck.verdicts(baseline: base, current: base)
        #expect(verdicts.count == GateFigureSpec.all.count)
        #expect(verdicts.allSatisfy { $0.outcome == .ok })
        #expect(GateCheck.passed(verdicts))
        let table = GateCheck.table(verdicts, baselinePath: "b.json", currentPath: "c.json")
        #expect(table.contains("PASS"))
        for spec in GateFigureSpec.all { #expect(table.contains(spec.name)) }
    }

    @Test func withinToleranceIsOk() throws {
        var current = GateTests.baselineFigures
        current.throughput_ratio = 0.90 * 0.80  // −20%, the default allows −25%
        current.delta_p99_over_direct_p50 = 7.9  // +97.5%, the default allows +100% (or +1.0, whichever is larger)
        current.cpu_per_request_ratio = 2.5  // +25% of +30%
        current.allocations_per_request = 0.4  // +0.399 of +0.5
        current.instructions_per_request = 17_500  // +2.9% of +3%
        current.h2c_instructions_per_request = 34_980  // +2.9% of +3%
        current.h2c_upstream_instructions_per_request = 55_550  // +2.9% of +3%
        current.policy_instructions_per_request = 36_000  // +2.9% of +3%
        let verdicts = GateCheck.verdicts(baseline: try GateTests.document(GateTests.baselineFigures),
                                          current: try GateTests.document(current))
        #expect(verdicts.allSatisfy { $0.outcome == .ok }, "\(verdicts)")
        #expect(GateCheck.passed(verdicts))
    }

    @Test func regressionsFailEachFigure() throws {
        let worse: [(String, (inout GateFigures) -> Void)] = [
            ("throughput_ratio", { $0.throughput_ratio = 0.60 }),
            ("delta_p99_over_direct_p50", { $0.delta_p99_over_direct_p50 = 8.5 }),
            ("cpu_per_request_ratio", { $0.cpu_per_request_ratio = 2.7 }),
            ("allocations_per_request", { $0.allocations_per_request = 1.0 }),
            ("instructions_per_request", { $0.instructions_per_request = 17_600 }),
            ("h2c_instructions_per_request", { $0.h2c_instructions_per_request = 35_100 }),
            ("h2c_upstream_instructions_per_request", { $0.h2c_upstream_instructions_per_request = 55_700 }),
            ("policy_instructions_per_request", { $0.policy_instructions_per_request = 36_100 }),
        ]
        for (name, change) in worse {
            var current = GateTests.baselineFigures
            change(&current)
            let verdicts = GateCheck.verdicts(baseline: try GateTests.document(GateTests.baselineFigures),
                                              current: try GateTests.document(current))
            let verdict = try GateTests.verdict(name, verdicts)
            #expect(verdict.outcome == .regression, "\(name)")
            #expect(!GateCheck.passed(verdicts))
            #expect(verdicts.filter(\.failed).map(\.name) == [name])
            let table = GateCheck.table(verdicts, baselinePath: "b", currentPath: "c")
            #expect(table.contains("REGRESSION"))
            #expect(table.contains("FAIL: \(name)"))
        }
    }

    @Test func aBaselineFromBeforeTheH2CFigureStillPasses() throws {
        // Baselines written before the h2c figure existed: it is shown, not compared.
        let old = try GateDocument.parse(#"{"gate": {"throughput_ratio": 0.9, "delta_p99_over_direct_p50": 4.0, "#
            + #""cpu_per_request_ratio": 2.0, "allocations_per_request": 0.001, "instructions_per_request": 17000}}"#)
        let verdicts = GateCheck.verdicts(baseline: old, current: try GateTests.document(GateTests.baselineFigures))
        #expect(try GateTests.verdict("h2c_instructions_per_request", verdicts).outcome == .noBaseline)
        #expect(try GateTests.verdict("h2c_upstream_instructions_per_request", verdicts).outcome == .noBaseline)
        #expect(try GateTests.verdict("policy_instructions_per_request", verdicts).outcome == .noBaseline)
        #expect(GateCheck.passed(verdicts))
    }

    @Test func theAbsoluteFloorAppliesToSmallDeltas() throws {
        // Δp99 ÷ p50 of 0.2: +100% would allow only 0.4, the absolute 1.0 allows up to 1.2.
        var base = GateTests.baselineFigures
        base.delta_p99_over_direct_p50 = 0.2
        var current = base
        current.delta_p99_over_direct_p50 = 1.1
        var verdicts = GateCheck.verdicts(baseline: try GateTests.document(base), current: try GateTests.document(current))
        #expect(try GateTests.verdict("delta_p99_over_direct_p50", verdicts).outcome == .ok)
        current.delta_p99_over_direct_p50 = 1.3
        verdicts = GateCheck.verdicts(baseline: try GateTests.document(base), current: try GateTests.document(current))
        #expect(try GateTests.verdict("delta_p99_over_direct_p50", verdicts).outcome == .regression)
    }

    @Test func betterBeyondToleranceIsNotAFailure() throws {
        var current = GateTests.baselineFigures
        current.throughput_ratio = 1.2
        current.instructions_per_request = 12_000
        let verdicts = GateCheck.verdicts(baseline: try GateTests.document(GateTests.baselineFigures),
                                          current: try GateTests.document(current))
        #expect(try GateTests.verdict("throughput_ratio", verdicts).outcome == .improved)
        #expect(try GateTests.verdict("instructions_per_request", verdicts).outcome == .improved)
        #expect(GateCheck.passed(verdicts))
    }

    @Test func aFigureMissingFromCurrentFails() throws {
        var current = GateTests.baselineFigures
        current.instructions_per_request = nil  // encoded as null
        let verdicts = GateCheck.verdicts(baseline: try GateTests.document(GateTests.baselineFigures),
                                          current: try GateTests.document(current))
        let verdict = try GateTests.verdict("instructions_per_request", verdicts)
        #expect(verdict.outcome == .missing)
        #expect(verdict.message.contains("null"))
        #expect(!GateCheck.passed(verdicts))

        // Absent altogether, with the suite's note on why.
        let absent = try GateDocument.parse(#"{"gate": {"throughput_ratio": 0.9}, "gate_notes": ["cpu_per_request_ratio: unreadable"]}"#)
        let all = GateCheck.verdicts(baseline: try GateTests.document(GateTests.baselineFigures), current: absent)
        #expect(all.filter(\.failed).count == GateFigureSpec.all.count - 1)
        #expect(try GateTests.verdict("cpu_per_request_ratio", all).message.contains("unreadable"))
        #expect(GateCheck.table(all, baselinePath: "b", currentPath: "c").contains("MISSING"))
    }

    @Test func aFigureMissingFromTheBaselineIsOnlyNoted() throws {
        let base = try GateDocument.parse(#"{"gate": {"throughput_ratio": 0.9}}"#)
        let verdicts = GateCheck.verdicts(baseline: base, current: try GateTests.document(GateTests.baselineFigures))
        #expect(GateCheck.passed(verdicts))
        #expect(verdicts.filter { $0.outcome == .noBaseline }.count == GateFigureSpec.all.count - 1)
        #expect(try GateTests.verdict("throughput_ratio", verdicts).outcome == .ok)
    }

    @Test func theBaselineOverridesTolerancesFieldByField() throws {
        let extra = #""why": "test", "tolerances": {"throughput_ratio": {"relative": 0.05}, "delta_p99_over_direct_p50": {"absolute": 10}, "#
            + #""instructions_per_request": {"relative": 0.1}},"#
        let base = try GateTests.document(GateTests.baselineFigures, extra: extra)
        #expect(base.why == "test")
        var current = GateTests.baselineFigures
        current.throughput_ratio = 0.84  // −6.7%: over the 5% override, within the default 25%
        current.delta_p99_over_direct_p50 = 13.0  // +9: over the default 100%, within the absolute 10 (relative 1.0 kept)
        current.instructions_per_request = 18_500  // +8.8%: over the default 3%, within the 10% override
        let verdicts = GateCheck.verdicts(baseline: base, current: try GateTests.document(current))
        #expect(try GateTests.verdict("throughput_ratio", verdicts).outcome == .regression)
        let delta = try GateTests.verdict("delta_p99_over_direct_p50", verdicts)
        #expect(delta.outcome == .ok)
        #expect(delta.tolerance == GateTolerance(relative: 1.0, absolute: 10))
        #expect(try GateTests.verdict("instructions_per_request", verdicts).outcome == .ok)
        // Tolerances in the current file do not count.
        let lax = try GateTests.document(current, extra: #""tolerances": {"throughput_ratio": {"relative": 0.9}},"#)
        let again = GateCheck.verdicts(baseline: try GateTests.document(GateTests.baselineFigures), current: lax)
        #expect(try GateTests.verdict("throughput_ratio", again).tolerance == GateTolerance(relative: 0.25))
    }

    @Test func unreadableFilesAreErrors() {
        #expect(throws: SuiteError.self) { try GateDocument.parse("not json") }
        #expect(throws: SuiteError.self) { try GateDocument.parse(#"{"no_gate": {}}"#) }
        #expect(throws: SuiteError.self) { try GateDocument.load("/nonexistent/gate.json") }
    }

    /// The gate object always carries every figure's name, null when not measured, and the suite's report keeps
    /// the keys that readers and `check` use.
    @Test func gateJSONSchema() throws {
        var figures = GateTests.baselineFigures
        figures.allocations_per_request = nil
        let text = try JSONOutput.encode(figures)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(Set(object.keys) == Set(GateFigureSpec.all.map(\.name)))
        #expect(object["allocations_per_request"] is NSNull)
        #expect(object["throughput_ratio"] as? Double == 0.90)

        let report = SuiteReport(
            date: "2026-11-25", started_at: "2026-11-25T10:00:00+0000", duration_s: 100, quick: true,
            command: "gwbench suite --quick",
            machine: MachineInfo(cores: 2, available_cores: 2, cpu_model: "test", kernel: "Linux", hostname: "h"),
            arrangement: SuiteArrangement(pinned: true, gateway_cpu: 0, load_cpu: 1, gateway_threads: 1, gwmock_threads: 1,
                                          gwbench_threads: 1, description: "pinned"),
            binaries: [:], targets: [["name": "direct", "url": "http://127.0.0.1:1"]], gate: figures,
            gate_sources: ["throughput_ratio": "scenario 1"], gate_notes: ["allocations_per_request: skipped"],
            scenarios: [ScenarioRecord(number: 2, id: "h2-tls", title: "HTTP/2", status: "not yet", note: "not yet: arrives with HTTP/2")],
            instructions: nil, allocations: nil, noise: nil, processes: [], problems: [])
        let json = try JSONOutput.encode(report)
        let top = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        for key in ["tool", "schema_version", "kind", "date", "command", "machine", "arrangement", "gate", "gate_sources",
                    "gate_notes", "scenarios", "processes", "problems", "quick", "duration_s"] {
            #expect(top[key] != nil, "missing \(key)")
        }
        #expect(top["kind"] as? String == "suite")
        let scenarios = try #require(top["scenarios"] as? [[String: Any]])
        #expect(scenarios.first?["status"] as? String == "not yet")
        // `check` reads a whole suite report as well as a baseline file.
        let document = try GateDocument.parse(json)
        #expect(document.gate["throughput_ratio"] == 0.90)
        #expect(document.nullFigures == ["allocations_per_request"])
        #expect(document.notes == ["allocations_per_request: skipped"])
        // And the report decodes back unchanged.
        #expect(try JSONOutput.decode(SuiteReport.self, from: json) == report)
    }

    /// The shipped baseline parses and carries every figure, a reason and tolerances.
    @Test func theCommittedBaselineIsAGateFile() throws {
        let path = GateTests.repositoryRoot + "/results/baseline.json"
        guard FileManager.default.fileExists(atPath: path) else { return }
        let document = try GateDocument.load(path)
        for spec in GateFigureSpec.all { #expect(document.gate[spec.name] != nil, "baseline lacks \(spec.name)") }
        #expect(document.why?.isEmpty == false)
    }

    static var repositoryRoot: String {
        var path = "\(#filePath)"
        for _ in 0..<3 {
            guard let slash = path.lastIndex(of: "/") else { return "." }
            path = String(path[..<slash])
        }
        return path
    }
}
