#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GatewayIO
import Testing
@testable import GatewayBench

/// Tests that put real load on 127.0.0.1. Serialized: they time things on a small machine.
@Suite(.serialized) struct LoadTests {
    static func config(_ url: String, connections: Int = 1, durationNs: UInt64 = 1_000_000_000, warmupNs: UInt64 = 0) throws -> LoadConfig {
        var config = LoadConfig(target: try BenchTarget(parsing: url), request: RequestSpec())
        config.connections = connections
        config.durationNs = durationNs
        config.warmupNs = warmupNs
        config.timeoutNs = 5_000_000_000
        return config
    }

    /// Open loop at 1000 req/s over one connection to a server that stalls once for 100 ms. About 100
    /// requests queue behind the stall: with the correction they show it (p99 tens of ms), without it
    /// only the one stalled request does (p99 well under a millisecond or two).
    @Test func coordinatedOmissionIsCorrected() throws {
        let server = TestServer(stallAt: 300, stallNs: 100_000_000)
        defer { server.stop() }
        var config = try LoadTests.config(server.url)
        config.mode = .open(rate: 1000)
        let result = try LoadRunner.run(config)
        let stats = result.stats
        #expect(stats.counters.responses == 1000)
        #expect(stats.counters.requestsSent == 1000)
        #expect(stats.counters.missed == 0)
        // Corrected: the stalled request and the ~100 behind it. p99 is ~90 ms; 20 ms leaves room for noise.
        let corrected = stats.latency.valueAtPercentile(99)
        let uncorrected = stats.latencyUncorrected.valueAtPercentile(99)
        #expect(corrected >= 20_000_000, "corrected p99 \(corrected) ns")
        #expect(uncorrected < 20_000_000, "uncorrected p99 \(uncorrected) ns")
        #expect(stats.latency.max >= 100_000_000)
        // The requests behind the stall were sent from the backlog, not dropped or burst ahead of time.
        #expect(stats.counters.backlogged >= 50, "backlogged \(stats.counters.backlogged)")
        #expect(stats.counters.maxBacklog >= 50)
        // A closed-loop tool would have seen this: the uncorrected histogram has the stall only once.
        #expect(stats.latencyUncorrected.count(within: 20_000_000...UInt64(1) << 40) <= 2)
        #expect(stats.latency.count(within: 20_000_000...UInt64(1) << 40) >= 50)
    }

    @Test func closedLoopCountsEveryRequestOnce() throws {
        let server = TestServer()
        defer { server.stop() }
        var config = try LoadTests.config(server.url, connections: 4, durationNs: 0)
        config.durationNs = nil
        config.requestCount = 2000
        config.threads = 2
        let result = try LoadRunner.run(config)
        let counters = result.stats.counters
        #expect(counters.requestsSent == 2000)
        #expect(counters.responses == 2000)
        #expect(result.stats.statuses[200] == 2000)
        #expect(server.requests.load(ordering: .relaxed) == 2000)
        #expect(result.stats.latency.totalCount == 2000)
        #expect(result.rps > 0)
    }

    @Test func refusedConnectionsAreCountedNotHidden() throws {
        // A port nothing listens on: bind one, then close it.
        let (fd, address) = try Sockets.listen(on: SocketAddress(parsing: "127.0.0.1:0"))
        Posix.close(fd)
        var config = try LoadTests.config("http://127.0.0.1:\(address.port)", connections: 2, durationNs: 300_000_000)
        config.warmupNs = 0
        let result = try LoadRunner.run(config)
        #expect(result.stats.counters.responses == 0)
        #expect(result.stats.counters.connectErrors >= 2)
        #expect(result.rps == 0)
    }

    @Test func aRequestCountRunAgainstARefusedPortEnds() throws {
        let (fd, address) = try Sockets.listen(on: SocketAddress(parsing: "127.0.0.1:0"))
        Posix.close(fd)
        var config = try LoadTests.config("http://127.0.0.1:\(address.port)", connections: 2)
        config.durationNs = nil
        config.requestCount = 5
        // Before: -n waited for 5 responses that could never come. Each connect error now counts against -n.
        let result = try LoadRunner.run(config)
        #expect(result.stats.counters.responses == 0)
        #expect(result.stats.counters.connectErrors >= 5)
    }

    /// `compare` against gwmock (or, when gwmock is not built, the in-test server): every request sent
    /// is one response counted and one request the server received.
    @Test func compareCountsMatchTheServer() throws {
        let mock = try? MockProcess.start()
        defer { mock?.stop() }
        let fallback = mock == nil ? TestServer() : nil
        defer { fallback?.stop() }
        let url = mock?.url ?? fallback!.url
        print("compareCountsMatchTheServer: against \(mock == nil ? "the in-test server (gwmock not built)" : "gwmock")")
        let before = try mock.map { try $0.chatRequests() } ?? 0

        var load = try LoadTests.config(url, connections: 4, durationNs: 800_000_000, warmupNs: 200_000_000)
        load.threads = 2
        var options = CompareOptions(direct: try BenchTarget(parsing: url), vias: [("again", try BenchTarget(parsing: url))], load: load)
        options.rounds = 1
        let outcome = try CompareRunner.run(options) { _ in }

        let runs = outcome.rounds.flatMap { $0 }
        #expect(runs.count == 2)
        let sent = runs.reduce(0) { $0 + $1.stats.counters.requestsSentTotal }
        let responses = runs.reduce(0) { $0 + $1.stats.counters.responsesTotal }
        let failures = runs.reduce(0) { $0 + $1.stats.counters.failuresTotal }
        let received: UInt64
        if let mock {
            received = UInt64(try mock.chatRequests() - before)
        } else {
            received = UInt64(fallback!.requests.load(ordering: .relaxed))
        }
        #expect(sent > 1000)
        #expect(sent == responses)
        #expect(failures == 0)
        #expect(received == sent, "server \(received), sent \(sent) (\(mock == nil ? "in-test server" : "gwmock"))")
        for run in runs {
            #expect(run.stats.counters.requestsSent == run.stats.counters.responses)
            #expect(run.stats.successes == run.stats.counters.responses)
            if mock != nil { #expect(run.stats.legToUpstream.totalCount == run.stats.counters.responses) }
        }
        #expect(outcome.summary.count == 2)
        #expect(outcome.summary[1].rps_ratio_vs_direct != nil)
        #expect(outcome.summary[1].delta_vs_direct_us != nil)
        // The summary survives the JSON round trip.
        let report = outcome.report()
        let decoded = try JSONOutput.decode(CompareReport.self, from: try JSONOutput.encode(report))
        #expect(decoded == report)
    }
}

/// The real gwmock binary, if it is built: `GATEWAY_BIN_DIR`, or the package's `.build/debug`.
struct MockProcess {
    let process: Process
    let port: UInt16

    var url: String { "http://127.0.0.1:\(port)/v1/chat/completions" }

    struct Unavailable: Error {}

    static func binary() -> String? {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var candidates: [String] = []
        if let dir = ProcessInfo.processInfo.environment["GATEWAY_BIN_DIR"] { candidates.append(dir + "/gwmock") }
        candidates.append(root.appendingPathComponent(".build/debug/gwmock").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func start() throws -> MockProcess {
        guard let path = binary() else { throw Unavailable() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--listen", "127.0.0.1:0"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Read until the listening line, for at most 10 s.
        let handle = output.fileHandleForReading
        var text = ""
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let data = handle.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening http://") }),
               let port = UInt16(line.split(separator: ":").last ?? "") {
                let mock = MockProcess(process: process, port: port)
                // Only use it if it answers /mock/stats the way the contract says.
                guard (try? mock.chatRequests()) != nil else {
                    mock.stop()
                    throw Unavailable()
                }
                return mock
            }
        }
        process.terminate()
        throw Unavailable()
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }

    /// `GET /mock/stats` → requests to /v1/chat/completions so far.
    func chatRequests() throws -> Int {
        let body = try HTTPGet.body(port: port, path: "/mock/stats")
        guard let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { throw Unavailable() }
        if let paths = json["by_path"] as? [String: Any], let chat = paths["/v1/chat/completions"] as? Int { return chat }
        guard let requests = json["requests"] as? Int else { throw Unavailable() }
        return requests
    }
}

/// A blocking one-shot HTTP/1.1 GET with Connection: close.
enum HTTPGet {
    static func body(port: UInt16, path: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw MockProcess.Unavailable() }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count <= 0 { break }
            response += chunk[0..<count]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw MockProcess.Unavailable() }
        return String(text[split.upperBound...])
    }
}
