import ArgumentParser
import GatewayBench

struct SuiteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suite",
        abstract: "Run the benchmark scenarios of BENCHMARKING.md end to end and write results/.",
        discussion: """
            Starts gwmock and the gateway from gwbench's own folder on 127.0.0.1 (the gateway pinned to CPU 0, \
            gwmock and gwbench to CPU 1, when there are 2 CPUs), runs scenarios 1 (overhead), 4 (prompt size), \
            5 (concurrency) and 10 (memory) with interleaved rounds, then instructions per request (callgrind) and \
            allocations per request (LD_PRELOAD malloc counter) on fresh gateways, and stops everything by PID. \
            Writes OUT/latest.json (with the `gate` object for `gwbench check`), OUT/latest.md, \
            OUT/latest-latency.svg and OUT/<date>-<scenario>.json. Exit 1 when a scenario fails or a child does \
            not exit 0 after SIGTERM.

            --peer NAME=URL adds a running peer (nginx, LiteLLM …) to every interleaved comparison. \
            --peer NAME=CMD (a command: it contains a space or starts with /) is started with /bin/sh -c 'exec CMD' \
            and pinned like the gateway; {port} in CMD becomes a free port (the peer's URL is then \
            http://127.0.0.1:{port}), {upstream} becomes gwmock's URL and {upstream_port} its port; without {port} the \
            command must print its http://HOST:PORT URL.
            """)

    @Flag(help: "Short rounds and fewer sweep points: under 3 minutes on 2 cores, valgrind and malloc runs included.")
    var quick = false
    @Option(help: "Where the results go.")
    var out = "results"
    @Option(help: "A peer beside the gateway: NAME=URL, or NAME=CMD (repeatable).")
    var peer: [String] = []
    @Option(help: "The repository (for scripts/bench/malloc-counter.c); found from gwbench's path by default.")
    var repo: String?
    @Option(help: "Only these parts, comma-separated: scenario numbers (1,4,5,10), instructions, allocations.")
    var only: String?
    @Option(help: "Scenario 10: idle keep-alive connections to hold.")
    var idleConnections = 10_000

    func run() throws {
        guard let binDir = SuiteRunner.executableDirectory() else { throw ValidationError("cannot read /proc/self/exe") }
        var options = SuiteOptions(binDir: binDir, command: CommandLine.arguments.map(shellQuoted).joined(separator: " "))
        options.quick = quick
        options.outDir = out
        options.peers = peer
        options.repoDir = repo
        options.idleConnections = idleConnections
        if let only {
            let parts = Set(only.split(separator: ",").map { String($0.trimmingCharacters()) })
            let names = SuiteScenarios.all.filter { $0.waitsFor == nil }.map { "\($0.number)" } + ["instructions", "allocations"]
            if let unknown = parts.subtracting(names).first {
                throw ValidationError("--only: unknown part '\(unknown)'; expected some of \(names.joined(separator: ", "))")
            }
            options.only = parts
        }
        for entry in peer {
            do { _ = try PeerSpec.parse(entry) } catch { throw ValidationError(error.description) }
        }
        let outcome: SuiteOutcome
        do {
            let runner = try SuiteRunner(options: options) { print($0) }
            outcome = try runner.run()
        } catch {
            print("error: \(error.description)")
            throw ExitCode(1)
        }
        let report = outcome.report
        print("")
        print("gate figures:")
        for spec in GateFigureSpec.all {
            let value = report.gate.byName[spec.name] ?? nil
            print("  " + spec.name.padding(38) + (value.map { String(describing: $0) } ?? "missing"))
        }
        for note in report.gate_notes { print("  note: \(note)") }
        print("")
        print("wrote " + outcome.files.joined(separator: ", "))
        print("took \(Int(report.duration_s.rounded())) s")
        if !outcome.ok {
            print("")
            print("FAILED:")
            for problem in report.problems { print("  \(problem)") }
            throw ExitCode(1)
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Compare the gate figures of a suite run with a baseline; exit 1 on a regression.",
        discussion: """
            Reads the `gate` object of both files (throughput_ratio, delta_p99_over_direct_p50, \
            cpu_per_request_ratio, allocations_per_request, instructions_per_request). A figure fails when it is \
            worse than the baseline by more than max(relative × |baseline|, absolute). Defaults: throughput_ratio \
            may drop 25%; delta_p99_over_direct_p50 may rise by 100% or 1.0, whichever is larger; \
            cpu_per_request_ratio may rise 30%; allocations_per_request by 0.5; instructions_per_request by 3%. \
            The baseline's "tolerances" object overrides them per figure, e.g. \
            {"throughput_ratio": {"relative": 0.2}}. A figure missing from the current file fails; one missing from \
            the baseline is noted and not compared. Exit 0: pass; 1: regression or missing figure; 2: unreadable file.
            """)

    @Option(help: "The baseline file (results/baseline.json).")
    var baseline: String
    @Option(help: "The current file (OUT/latest.json of a suite run).")
    var current: String

    func run() throws {
        let base: GateDocument
        let now: GateDocument
        do {
            base = try GateDocument.load(baseline)
            now = try GateDocument.load(current)
        } catch {
            print("error: \(error.description)")
            throw ExitCode(2)
        }
        let verdicts = GateCheck.verdicts(baseline: base, current: now)
        print(GateCheck.table(verdicts, baselinePath: baseline, currentPath: current, why: base.why, notes: now.notes), terminator: "")
        if !GateCheck.passed(verdicts) { throw ExitCode(1) }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}

/// An argument as a shell would need it written.
func shellQuoted(_ argument: String) -> String {
    let safe = argument.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,@+%".contains($0) }
    if safe && !argument.isEmpty { return argument }
    return "'" + argument.replacing("'", with: "'\\''") + "'"
}
