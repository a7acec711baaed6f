// The suite's two deterministic figures, for the tight part of the regression gate:
// - instructions per proxied request: a second gateway under `valgrind --tool=callgrind`;
// - allocations per proxied request: a gateway with scripts/bench/malloc-counter.c preloaded.
// Both send a fixed number of requests with gwbench's own client (closed loop, 4 connections, the 300-byte chat
// request), after a warm-up that is not counted.
#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// Where and how a deterministic run starts its gateway.
public struct GatewayLaunch: Sendable {
    /// The gateway binary built beside gwbench.
    public var binary: String
    public var configPath: String
    /// A private folder for logs, copies and outputs.
    public var directory: String
    /// (gateway CPU, gwbench's CPU), when pinning.
    public var pin: (child: Int, back: Int)?
    /// gwbench's own CPU, for its load threads.
    public var loadCPUs: [Int]
}

/// A gateway with the control layer on: the key its requests carry, and its SQLite audit log. The audit writer
/// commits in batches on its own thread; `waitForAuditRecords` waits until the log holds a given number of records,
/// so that a callgrind window holds the writing of exactly its own requests' records. The count is read by an
/// outside process (python3's sqlite3), which the window does not see.
struct PolicyLoad {
    var apiKey: String
    var auditDatabase: String
    /// The gateway's environment: its admin key (`SuiteRunner.policyConfig`).
    var environment: [String: String] { SuiteRunner.adminKeyEnvironment }

    func waitForAuditRecords(_ count: Int, in directory: String, timeoutNs: UInt64 = 120_000_000_000) throws(SuiteError) {
        guard let python = Tool.find("python3") else { throw SuiteError("python3 is needed to read the audit log's count") }
        let script = """
            import sqlite3, sys
            try:
                print(sqlite3.connect(sys.argv[1], timeout=1).execute("SELECT count(*) FROM audit").fetchone()[0])
            except sqlite3.Error:
                print(-1)
            """
        let deadline = Clock.monotonicNs() + timeoutNs
        var last = "?"
        while Clock.monotonicNs() < deadline {
            let run = Tool.run([python, "-c", script, auditDatabase], in: directory)
            last = String(run.output.filter { !$0.isWhitespace })
            if let n = Int(last), n >= count {
                guard n == count else { throw SuiteError("the audit log holds \(n) records, more than the \(count) sent") }
                return
            }
            usleep(100_000)
        }
        throw SuiteError("the audit log \(auditDatabase) did not reach \(count) records within \(timeoutNs / 1_000_000_000) s "
            + "(last count: \(last))")
    }
}

public struct InstructionsRecord: Codable, Sendable, Equatable {
    public var status: String
    public var note: String?
    public var tool: String?
    public var command: [String]?
    public var warmup_requests: Int
    public var requests: Int
    public var connections: Int
    /// "http1", or "h2c" with `streams_per_connection` streams on each connection.
    public var protocol_name: String?
    public var streams_per_connection: Int?
    /// The dump's `summary:` (else `totals:`) line: instructions (Ir) between --zero and --dump.
    public var dump_line: String?
    public var instructions: UInt64?
    public var instructions_per_request: Double?
    /// Responses gwbench received in the counted window (must equal `requests`).
    public var responses: UInt64?
    public var startup_s: Double?
    public var gateway_exit_status: Int32?
}

public struct AllocationsRecord: Codable, Sendable, Equatable {
    public var status: String
    public var note: String?
    public var command: [String]?
    public var warmup_requests: Int
    public var requests: Int
    public var connections: Int
    /// Calls by function over the counted window, and `total` (every allocating call; frees not included).
    public var counts: [String: UInt64]?
    public var allocations_per_request: Double?
    public var frees_per_request: Double?
    public var responses: UInt64?
    public var gateway_exit_status: Int32?
}

public enum CallgrindOutput {
    /// The instructions (the first event, Ir) of a callgrind dump: its `summary:` line, else its `totals:` line.
    public static func total(_ text: String) -> (value: UInt64, line: String)? {
        var totals: (UInt64, String)?
        for line in text.split(separator: "\n") {
            for prefix in ["summary:", "totals:"] where line.hasPrefix(prefix) {
                guard let first = line.dropFirst(prefix.count).split(separator: " ").first, let value = UInt64(first) else { continue }
                if prefix == "summary:" { return (value, String(line)) }
                if totals == nil { totals = (value, String(line)) }
            }
        }
        return totals
    }
}

public enum MallocCounterReport {
    /// The names the counter writes, in its order; `total` is every allocating call (frees excluded).
    public static let names = ["malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc", "free", "total"]

    /// Parses the counter's file: one "name value" line per count. Nil unless every name is there.
    public static func parse(_ text: String) -> [String: UInt64]? {
        var counts: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let value = UInt64(parts[1]) else { continue }
            counts[String(parts[0])] = value
        }
        guard names.allSatisfy({ counts[$0] != nil }) else { return nil }
        return counts
    }
}

enum DeterministicRuns {
    static let connections = 4

    /// A closed-loop run of exactly `count` requests on `connections` connections, nothing discarded.
    /// Streams per connection of the h2c load (`gwbench run --h2c -m 32`).
    static let h2cStreams = 32

    /// `h2c`: HTTP/2 without TLS, `h2cStreams` streams on each connection; else HTTP/1.1.
    static func send(_ count: Int, to url: String, loadCPUs: [Int], promptBytes: Int = 300, h2c: Bool = false,
                     headers: [(String, String)] = []) throws(SuiteError) -> RunResult {
        let target: BenchTarget
        do {
            target = try BenchTarget(parsing: url)
        } catch {
            throw SuiteError(error.description)
        }
        var spec = RequestSpec()
        spec.promptBytes = promptBytes
        spec.headers = headers
        var config = LoadConfig(target: target, request: spec)
        config.connections = connections
        if h2c {
            config.httpProtocol = .h2c
            config.streamsPerConnection = h2cStreams
        }
        config.threads = 1
        config.durationNs = nil
        config.requestCount = count
        config.warmupNs = 0
        config.timeoutNs = 60_000_000_000
        config.pinCPUs = loadCPUs
        do {
            let result = try LoadRunner.run(config, name: "fixed-\(count)")
            let c = result.stats.counters
            guard c.responses == UInt64(count), c.requestsSentTotal == UInt64(count), result.stats.successes == UInt64(count) else {
                throw SuiteError("sent \(c.requestsSentTotal) requests, got \(c.responses) responses (\(result.stats.successes) 2xx) "
                    + "instead of exactly \(count) good ones")
            }
            return result
        } catch let error as LoadConfig.ValidationError {
            throw SuiteError(error.description)
        } catch let error as SuiteError {
            throw error
        } catch {
            throw SuiteError("\(error)")
        }
    }

    // MARK: Instructions

    /// `h2c`: the load is h2c (`h2cStreams` streams per connection), the gateway's HTTP/2 front; else HTTP/1.1.
    /// `folder`: the work folder's subfolder for this run's dump (runs of one suite must not share one).
    /// `policy`: the gateway runs the control layer; the requests carry its key, and the window holds exactly the
    /// counted requests' audit records (see `PolicyLoad`).
    static func instructions(launch: GatewayLaunch, h2c: Bool = false, folder: String? = nil, policy: PolicyLoad? = nil,
                             warmup: Int = 300, requests: Int = 6000, say: (String) -> Void) -> InstructionsRecord {
        var record = InstructionsRecord(status: "skipped", warmup_requests: warmup, requests: requests, connections: connections)
        record.protocol_name = h2c ? "h2c" : "http1"
        record.streams_per_connection = h2c ? h2cStreams : 1
        guard let valgrind = Tool.find("valgrind"), let control = Tool.find("callgrind_control") else {
            record.note = "valgrind (with callgrind_control) is not installed: apt-get install valgrind"
            return record
        }
        let version = Tool.run([valgrind, "--version"], in: launch.directory)
        record.tool = version.output.split(separator: "\n").first.map(String.init)
        // valgrind cannot read the debug info of our binaries ("Possibly corrupted debuginfo file"): run a copy
        // without it.
        let dir = launch.directory + "/" + (folder ?? (h2c ? "callgrind-h2c" : "callgrind"))
        mkdir(dir, 0o755)
        let copy = dir + "/gateway"
        let copied = Tool.run(["cp", launch.binary, copy], in: launch.directory)
        guard copied.ok else { return failed(record, "cp \(launch.binary): \(copied.output)") }
        if Tool.find("strip") != nil {
            let stripped = Tool.run(["strip", "--strip-debug", copy], in: launch.directory)
            guard stripped.ok else { return failed(record, "strip --strip-debug: \(stripped.output)") }
        } else {
            return failed(record, "strip (binutils) is not installed: valgrind needs a copy of the gateway without debug info")
        }
        let outFile = dir + "/cg.out"
        let arguments = ["--tool=callgrind", "--callgrind-out-file=\(outFile)", copy, "serve", "--config", launch.configPath]
        record.command = ["valgrind"] + arguments
        let started = Clock.monotonicNs()
        let gateway: ChildProcess
        do {
            gateway = try ChildProcess.spawn(name: "gateway (callgrind)", executable: valgrind, arguments: arguments,
                                             environment: policy?.environment ?? [:], directory: dir,
                                             logPath: dir + "/gateway.log", pin: launch.pin)
        } catch {
            return failed(record, error.description)
        }
        defer { if gateway.isRunning { gateway.stop(signal: SIGKILL, timeoutNs: 5_000_000_000) } }
        do {
            let url = try gateway.waitForURL(timeoutNs: 60_000_000_000)
            record.startup_s = Double(Clock.monotonicNs() - started) / 1e9
            say("callgrind: gateway up after \(Format.fixed(record.startup_s!, 1)) s at \(url); \(warmup) warm-up requests")
            let headers = policy.map { [("Authorization", "Bearer \($0.apiKey)")] } ?? []
            _ = try send(warmup, to: url, loadCPUs: launch.loadCPUs, h2c: h2c, headers: headers)
            try policy?.waitForAuditRecords(warmup, in: dir)
            let zero = Tool.run([control, "--zero", "\(gateway.pid)"], in: dir, timeoutNs: 60_000_000_000)
            guard zero.ok else { return failed(record, "callgrind_control --zero: \(zero.output)") }
            let counted = try send(requests, to: url, loadCPUs: launch.loadCPUs, h2c: h2c, headers: headers)
            record.responses = counted.stats.counters.responses
            try policy?.waitForAuditRecords(warmup + requests, in: dir)
            let dump = Tool.run([control, "--dump", "\(gateway.pid)"], in: dir, timeoutNs: 60_000_000_000)
            guard dump.ok else { return failed(record, "callgrind_control --dump: \(dump.output)") }
        } catch {
            return failed(record, error.description)
        }
        // The dump is written by the gateway's process; wait for it to be complete.
        let dumpFile = outFile + ".1"
        var parsed: (value: UInt64, line: String)?
        let deadline = Clock.monotonicNs() + 30_000_000_000
        while parsed == nil, Clock.monotonicNs() < deadline {
            if let text = Files.read(dumpFile) { parsed = CallgrindOutput.total(text) }
            if parsed == nil { usleep(100_000) }
        }
        record.gateway_exit_status = gateway.stop(timeoutNs: 60_000_000_000)
        guard let parsed else { return failed(record, "no summary or totals line in \(dumpFile)") }
        record.dump_line = parsed.line
        record.instructions = parsed.value
        record.instructions_per_request = Double(parsed.value) / Double(requests)
        record.status = "ran"
        say("callgrind (\(h2c ? "h2c" : "HTTP/1.1")): \(parsed.value) instructions over \(requests) requests: "
            + "\(Format.fixed(record.instructions_per_request!, 0)) per request")
        return record
    }

    // MARK: Allocations

    static func allocations(launch: GatewayLaunch, counterSource: String?, warmup: Int = 1000, requests: Int = 20_000,
                            say: (String) -> Void) -> AllocationsRecord {
        var record = AllocationsRecord(status: "skipped", warmup_requests: warmup, requests: requests, connections: connections)
        guard let counterSource else {
            record.note = "scripts/bench/malloc-counter.c not found (give --repo DIR)"
            return record
        }
        guard let cc = Tool.find("cc") ?? Tool.find("gcc") ?? Tool.find("clang") else {
            record.note = "no C compiler (cc) to build scripts/bench/malloc-counter.c"
            return record
        }
        let dir = launch.directory + "/malloc"
        mkdir(dir, 0o755)
        let library = dir + "/libmalloccounter.so"
        let built = Tool.run([cc, "-O2", "-shared", "-fPIC", "-o", library, counterSource, "-ldl"], in: dir)
        guard built.ok else { return failed(record, "\(cc) \(counterSource): \(built.output)") }
        let outFile = dir + "/counts.txt"
        record.command = ["LD_PRELOAD=\(library)", "MALLOC_COUNTER_OUT=\(outFile)", launch.binary, "serve", "--config", launch.configPath]
        let gateway: ChildProcess
        do {
            gateway = try ChildProcess.spawn(
                name: "gateway (malloc counter)", executable: launch.binary, arguments: ["serve", "--config", launch.configPath],
                environment: ["LD_PRELOAD": library, "MALLOC_COUNTER_OUT": outFile], directory: dir,
                logPath: dir + "/gateway.log", pin: launch.pin)
        } catch {
            return failed(record, error.description)
        }
        defer { if gateway.isRunning { gateway.stop(signal: SIGKILL, timeoutNs: 5_000_000_000) } }
        func snapshot(_ signal: Int32) throws(SuiteError) -> [String: UInt64] {
            unlink(outFile)
            gateway.signal(signal)
            let deadline = Clock.monotonicNs() + 10_000_000_000
            while Clock.monotonicNs() < deadline {
                if let text = Files.read(outFile), let counts = MallocCounterReport.parse(text) { return counts }
                usleep(2_000)
            }
            throw SuiteError("the malloc counter wrote no \(outFile) after signal \(signal) (is it preloaded?)")
        }
        do {
            let url = try gateway.waitForURL(timeoutNs: 30_000_000_000)
            say("malloc counter: gateway at \(url); \(warmup) warm-up requests, then \(requests) counted")
            _ = try send(warmup, to: url, loadCPUs: launch.loadCPUs)
            let reset = try snapshot(SIGUSR1)
            guard reset["total"] == 0 else { return failed(record, "SIGUSR1 did not reset the counts: \(reset)") }
            let counted = try send(requests, to: url, loadCPUs: launch.loadCPUs)
            record.responses = counted.stats.counters.responses
            let counts = try snapshot(SIGUSR2)
            record.counts = counts
            record.allocations_per_request = Double(counts["total"]!) / Double(requests)
            record.frees_per_request = Double(counts["free"]!) / Double(requests)
        } catch {
            return failed(record, error.description)
        }
        record.gateway_exit_status = gateway.stop(timeoutNs: 15_000_000_000)
        record.status = "ran"
        record.note = "gwbench opens its \(connections) connections anew for the counted run, so the count includes their "
            + "set-up in the gateway (and the warm-up connections' tear-down)"
        say("malloc counter: \(record.counts!["total"]!) allocations over \(requests) requests: "
            + "\(GateCheck.show(record.allocations_per_request!)) per request")
        return record
    }

    private static func failed(_ record: InstructionsRecord, _ note: String) -> InstructionsRecord {
        var record = record
        record.status = "failed"
        record.note = note
        return record
    }

    private static func failed(_ record: AllocationsRecord, _ note: String) -> AllocationsRecord {
        var record = record
        record.status = "failed"
        record.note = note
        return record
    }
}
