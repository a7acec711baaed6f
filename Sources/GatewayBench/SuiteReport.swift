// What `gwbench suite` writes: results/latest.json (SuiteReport: everything, with the `gate` object that
// `gwbench check` reads) and one results/<date>-<scenario>.json per scenario that ran (SuiteScenarioFile).
// Times are in microseconds, memory in KiB, like the rest of gwbench's JSON.

/// Where each process ran.
public struct SuiteArrangement: Codable, Sendable, Equatable {
    public var pinned: Bool
    /// The gateway (and any peer under test, and the callgrind and malloc-counter gateways).
    public var gateway_cpu: Int?
    /// gwmock, and gwbench's own threads (main and load).
    public var load_cpu: Int?
    public var gateway_threads: Int
    public var gwmock_threads: Int
    public var gwbench_threads: Int
    public var description: String
}

public struct MemorySample: Codable, Sendable, Equatable {
    public var label: String
    public var t_s: Double
    public var rss_kib: UInt64
    public var hwm_kib: UInt64
}

/// Scenario 10: the gateway's resident memory.
public struct MemoryRecord: Codable, Sendable, Equatable {
    /// Right after start, before any request.
    public var idle_kib: UInt64?
    /// The peak (VmHWM) at the end of scenario 1's closed-loop runs (when scenario 1 ran; else the peak before
    /// the idle connections were opened).
    public var peak_under_load_kib: UInt64?
    /// The peak (VmHWM) after every load scenario, before the idle connections.
    public var peak_all_load_kib: UInt64?
    public var idle_connections_wanted: Int
    public var idle_connections_open: Int?
    public var idle_connection_failures: Int?
    public var idle_connection_error: String?
    /// RSS before opening them, with all of them open (after a 1 s hold), and after closing them.
    public var before_idle_connections_kib: UInt64?
    public var with_idle_connections_kib: UInt64?
    public var after_closing_kib: UInt64?
    public var per_idle_connection_bytes: Double?
    /// RSS after the last load scenario − RSS after the first: what the run left behind. An upper bound on drift:
    /// scenarios 4 and 5 (1 MB bodies, 256 connections) legitimately grow the buffer pools.
    public var growth_kib: Int64?
    public var growth_between: [String]?
    public var open_files_limit: UInt64
    public var timeline: [MemorySample]
}

/// One interleaved comparison inside a scenario (a prompt size, a connection count, …).
public struct ScenarioPoint: Codable, Sendable, Equatable {
    public var label: String
    /// The swept value: body bytes or connections.
    public var parameter: Double?
    /// Per via target: its best round's RPS ÷ direct's best round's RPS (each target's highest).
    public var best_rps_ratio: [String: Double]?
    /// Per via target: (its lowest p99 − direct's lowest p99) ÷ direct's median p50.
    public var best_delta_p99_over_direct_p50: [String: Double]?
    /// Per via target: its lowest CPU per request ÷ direct's lowest.
    public var best_cpu_per_request_ratio: [String: Double]?
    public var compare: CompareReport
}

public struct ScenarioRecord: Codable, Sendable, Equatable {
    public var number: Int
    public var id: String
    public var title: String
    /// "ran", "failed", "skipped" (not asked for), or "not yet" (the feature it measures has not arrived).
    public var status: String
    public var note: String?
    public var duration_s: Double?
    public var points: [ScenarioPoint]?
    public var memory: MemoryRecord?

    public init(number: Int, id: String, title: String, status: String, note: String? = nil) {
        self.number = number
        self.id = id
        self.title = title
        self.status = status
        self.note = note
    }

    public func point(_ label: String) -> ScenarioPoint? { points?.first { $0.label == label } }
}

public struct ProcessExit: Codable, Sendable, Equatable {
    public var name: String
    public var pid: Int32
    public var exit_status: Int32?
    public var log: String
}

/// results/latest.json.
public struct SuiteReport: Codable, Sendable, Equatable {
    public var tool = "gwbench"
    public var schema_version = 1
    public var kind = "suite"
    public var date: String
    public var started_at: String
    public var duration_s: Double
    public var quick: Bool
    public var command: String
    public var machine: MachineInfo
    public var arrangement: SuiteArrangement
    public var binaries: [String: String]
    public var targets: [[String: String]]
    /// The figures `gwbench check` compares.
    public var gate: GateFigures
    /// How each gate figure was measured.
    public var gate_sources: [String: String]
    /// Why a gate figure is missing, "figure: reason".
    public var gate_notes: [String]
    public var scenarios: [ScenarioRecord]
    public var instructions: InstructionsRecord?
    /// The same as `instructions`, with the requests over h2c.
    public var h2c_instructions: InstructionsRecord?
    /// The h2c requests through a gateway with `protocol: h2c` to gwmock.
    public var h2c_upstream_instructions: InstructionsRecord?
    /// HTTP/1.1 requests through the full control layer (`SuiteRunner.policyConfig`).
    public var policy_instructions: InstructionsRecord?
    public var allocations: AllocationsRecord?
    /// How much of each CPU other processes took while the noisy figures were measured.
    public var noise: [NoiseRecord]?
    public var processes: [ProcessExit]
    /// Problems that make the run fail (a child that did not exit 0, a scenario that failed).
    public var problems: [String]

    public func scenario(_ number: Int) -> ScenarioRecord? { scenarios.first { $0.number == number } }
}

/// results/<date>-<scenario>.json: one scenario with the context needed to read it alone.
public struct SuiteScenarioFile: Codable, Sendable, Equatable {
    public var tool = "gwbench"
    public var schema_version = 1
    public var kind = "suite-scenario"
    public var date: String
    public var command: String
    public var machine: MachineInfo
    public var arrangement: SuiteArrangement
    public var scenario: ScenarioRecord?
    public var instructions: InstructionsRecord?
    public var h2c_instructions: InstructionsRecord?
    public var h2c_upstream_instructions: InstructionsRecord?
    public var policy_instructions: InstructionsRecord?
    public var allocations: AllocationsRecord?
}
