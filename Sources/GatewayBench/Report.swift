#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Histogram

// The JSON shape, after Nighthawk's output: options, machine, and results, each with `statistics`
// (an id, a count, mean, pstdev, min, max and percentiles) and `counters` (a name and a value).
// Times are in microseconds (`unit: "us"`); percentiles are fractions (0.99 is p99).
// `gwbench check` compares ratios between these files, never absolute times.

public struct PercentileRecord: Codable, Sendable, Equatable {
    public var percentile: Double
    public var value: Double
}

public struct StatisticRecord: Codable, Sendable, Equatable {
    public var id: String
    public var unit: String
    public var count: UInt64
    public var mean: Double
    public var pstdev: Double
    public var min: Double
    public var max: Double
    public var percentiles: [PercentileRecord]

    /// The value at `percentile` (a fraction), if it was reported.
    public func value(at percentile: Double) -> Double? {
        percentiles.first(where: { abs($0.percentile - percentile) < 1e-9 })?.value
    }
}

public struct CounterRecord: Codable, Sendable, Equatable {
    public var name: String
    public var value: UInt64
}

public struct ProcessRecord: Codable, Sendable, Equatable {
    public var name: String
    public var pid: Int32
    public var cpu_s: Double?
    public var cpu_per_request_us: Double?
}

public struct ResultRecord: Codable, Sendable, Equatable {
    public var name: String
    public var id: String
    public var statistics: [StatisticRecord]
    public var counters: [CounterRecord]
    public var rps: Double
    public var duration_s: Double
    public var cpu_s: Double
    public var cpu_per_request_us: Double?
    public var processes: [ProcessRecord]?

    public func statistic(_ id: String) -> StatisticRecord? { statistics.first { $0.id == id } }
    public func counter(_ name: String) -> UInt64? { counters.first { $0.name == name }?.value }
}

public struct OptionsRecord: Codable, Sendable, Equatable {
    public var url: String
    public var mode: String
    public var rate: Double?
    /// "http/1.1", "h2c" or "h2"; absent in files written before HTTP/2.
    public var `protocol`: String?
    public var connections: Int
    public var streams_per_connection: Int
    public var threads: Int
    public var duration_s: Double?
    public var warmup_s: Double
    public var requests: Int?
    public var timeout_s: Double
    public var method: String
    public var headers: [String]
    public var model: String
    public var stream: Bool
    public var request_bytes: Int
    public var body_bytes: Int
    public var pin_cpus: [Int]
    public var precise_timer: Bool?

    public init(config: LoadConfig, preciseTimer: Bool?) {
        let template = RequestTemplate(spec: config.request, target: config.target)
        url = config.target.description
        switch config.mode {
        case .closed:
            mode = "closed"
            rate = nil
        case .open(let perSecond):
            mode = "open"
            rate = perSecond
        }
        `protocol` = config.httpProtocol.rawValue
        connections = config.connections
        streams_per_connection = config.streamsPerConnection
        threads = config.threads
        duration_s = config.durationNs.map { Double($0) / 1e9 }
        warmup_s = Double(config.warmupNs) / 1e9
        requests = config.requestCount
        timeout_s = Double(config.timeoutNs) / 1e9
        method = config.request.method
        // Authorization values stay out of result files.
        headers = config.request.headers.map {
            ["authorization", "x-api-key"].contains($0.0.lowercased()) ? "\($0.0): <redacted>" : "\($0.0): \($0.1)"
        }
        model = config.request.model
        stream = config.request.stream
        request_bytes = template.count
        body_bytes = template.bodyBytes
        pin_cpus = config.pinCPUs
        precise_timer = preciseTimer
    }
}

/// The file `gwbench run --json` writes.
public struct RunReport: Codable, Sendable, Equatable {
    public var tool = "gwbench"
    public var schema_version = 1
    public var kind = "run"
    public var options: OptionsRecord
    public var machine: MachineInfo
    public var arrangement: String?
    public var results: [ResultRecord]

    public init(result: RunResult, machine: MachineInfo = .current(), arrangement: String? = nil) {
        options = OptionsRecord(config: result.config, preciseTimer: result.preciseTimer)
        self.machine = machine
        self.arrangement = arrangement
        results = [ResultRecord(result: result)]
            + result.workers.enumerated().map { ResultRecord(stats: $1, name: "worker_\($0)", id: "\(result.name).worker_\($0)", result: result) }
    }
}

public enum StatisticID {
    public static let latency = "latency"
    public static let latencyUncorrected = "latency_uncorrected"
    public static let ttfb = "ttfb"
    public static let sendDelay = "send_delay"
    public static let ttft = "ttft"
    public static let interEventGap = "inter_event_gap"
    public static let legToUpstream = "leg_to_upstream"
    public static let legFromUpstream = "leg_from_upstream"
    public static let eventsPerResponse = "events_per_response"
    public static let bytesPerResponse = "bytes_per_response"
}

extension ResultRecord {
    /// The percentiles every statistic reports.
    public static let percentiles: [Double] = [0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1]

    public init(result: RunResult) {
        self.init(stats: result.stats, name: result.name, id: result.name, result: result)
        if let perResponse = cpuPerRequest(result.cpuNs, result.stats.counters.responses) { cpu_per_request_us = perResponse }
        if !result.processes.isEmpty {
            processes = result.processes.map { process in
                ProcessRecord(
                    name: process.name, pid: process.pid, cpu_s: process.cpuNs.map { Double($0) / 1e9 },
                    cpu_per_request_us: process.cpuNs.flatMap { cpuPerRequest($0, result.stats.counters.responses) })
            }
        }
    }

    init(stats: BenchStats, name: String, id: String, result: RunResult) {
        self.name = name
        self.id = id
        var statistics: [StatisticRecord] = [
            .time(StatisticID.latency, stats.latency),
            .time(StatisticID.latencyUncorrected, stats.latencyUncorrected),
            .time(StatisticID.ttfb, stats.ttfb),
        ]
        if case .open = result.config.mode { statistics.append(.time(StatisticID.sendDelay, stats.sendDelay)) }
        let streaming = result.config.request.stream
        if streaming || stats.ttft.totalCount > 0 {
            statistics.append(.time(StatisticID.ttft, stats.ttft))
            statistics.append(.time(StatisticID.interEventGap, stats.interEventGap))
            statistics.append(.amount(StatisticID.eventsPerResponse, stats.eventsPerResponse, unit: "count"))
        }
        if stats.legToUpstream.totalCount > 0 {
            statistics.append(.time(StatisticID.legToUpstream, stats.legToUpstream))
            statistics.append(.time(StatisticID.legFromUpstream, stats.legFromUpstream))
        }
        statistics.append(.amount(StatisticID.bytesPerResponse, stats.bytesPerResponse, unit: "bytes"))
        self.statistics = statistics
        counters = ResultRecord.counters(stats)
        let seconds = Double(result.windowNs) / 1e9
        rps = seconds > 0 ? Double(stats.counters.responsesInWindow) / seconds : 0
        duration_s = seconds
        cpu_s = name == result.name ? Double(result.cpuNs) / 1e9 : 0
        cpu_per_request_us = nil
        processes = nil
    }

    static func counters(_ stats: BenchStats) -> [CounterRecord] {
        let c = stats.counters
        var list: [(String, UInt64)] = [
            ("requests_sent", c.requestsSent),
            ("responses", c.responses),
            ("responses_in_window", c.responsesInWindow),
            ("requests_sent_total", c.requestsSentTotal),
            ("responses_total", c.responsesTotal),
            ("failures_total", c.failuresTotal),
            ("connections_opened", c.connectionsOpened),
            ("connect_errors", c.connectErrors),
            ("resets", c.resets),
            ("timeouts", c.timeouts),
            ("bad_responses", c.badResponses),
            ("reconnects", c.reconnects),
            ("unfinished", c.unfinished),
            ("backlogged", c.backlogged),
            ("missed", c.missed),
            ("max_backlog", c.maxBacklog),
            ("body_bytes", c.bodyBytes),
            ("events", c.events),
        ]
        for cls in 2...5 {
            list.append(("status_\(cls)xx", stats.statuses[(cls * 100)..<(cls * 100 + 100)].reduce(0, +)))
        }
        for (code, count) in stats.statusCodes { list.append(("status_\(code)", count)) }
        return list.map { CounterRecord(name: $0.0, value: $0.1) }
    }
}

func cpuPerRequest(_ cpuNs: UInt64, _ responses: UInt64) -> Double? {
    responses > 0 ? Double(cpuNs) / Double(responses) / 1e3 : nil
}

extension StatisticRecord {
    /// A nanosecond histogram, reported in microseconds.
    static func time(_ id: String, _ histogram: BenchHistogram) -> StatisticRecord {
        make(id, histogram, unit: "us", scale: 1e-3)
    }

    /// A histogram of counts or sizes, reported as is.
    static func amount(_ id: String, _ histogram: BenchHistogram, unit: String) -> StatisticRecord {
        make(id, histogram, unit: unit, scale: 1)
    }

    static func make(_ id: String, _ histogram: BenchHistogram, unit: String, scale: Double) -> StatisticRecord {
        let empty = histogram.totalCount == 0
        return StatisticRecord(
            id: id, unit: unit, count: histogram.totalCount,
            mean: empty ? 0 : histogram.mean * scale,
            pstdev: empty ? 0 : histogram.stdDeviation * scale,
            min: empty ? 0 : Double(histogram.min) * scale,
            max: empty ? 0 : Double(histogram.max) * scale,
            percentiles: ResultRecord.percentiles.map {
                PercentileRecord(percentile: $0, value: empty ? 0 : Double(histogram.valueAtPercentile($0 * 100)) * scale)
            })
    }
}

public enum JSONOutput {
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(value)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }
}
