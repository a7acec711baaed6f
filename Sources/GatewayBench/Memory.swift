// Scenario 10's instruments: a process's resident memory from /proc/PID/status, the open-file limit, and many
// idle keep-alive connections held open at once.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import GatewayIO

/// VmRSS and VmHWM (the peak of VmRSS since the process started) of a process, in KiB.
public struct ProcessMemory: Sendable, Equatable, Codable {
    public var rss_kib: UInt64
    public var hwm_kib: UInt64

    public init(rss_kib: UInt64, hwm_kib: UInt64) {
        self.rss_kib = rss_kib
        self.hwm_kib = hwm_kib
    }

    public static func read(pid: Int32) -> ProcessMemory? {
        Files.read("/proc/\(pid)/status").flatMap(parseStatus)
    }

    /// The VmRSS and VmHWM lines of /proc/PID/status ("VmRSS:	   12345 kB").
    public static func parseStatus(_ text: String) -> ProcessMemory? {
        var rss: UInt64?
        var hwm: UInt64?
        for line in text.split(separator: "\n") {
            // "VmRSS:\t   12345 kB"
            func value() -> UInt64? {
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { UInt64($0) }
            }
            if line.hasPrefix("VmRSS:") { rss = value() }
            if line.hasPrefix("VmHWM:") { hwm = value() }
        }
        guard let rss, let hwm else { return nil }
        return ProcessMemory(rss_kib: rss, hwm_kib: hwm)
    }
}

public enum FileLimit {
    /// Raises this process's soft RLIMIT_NOFILE to `wanted` (or to the hard limit, when that is lower) and returns
    /// the soft limit now in force. Children started afterwards inherit it.
    public static func raise(to wanted: UInt64) -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur >= wanted { return UInt64(limit.rlim_cur) }
        limit.rlim_cur = min(rlim_t(wanted), limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return UInt64(limit.rlim_cur)
    }
}

/// Many keep-alive connections, each opened, used for one request (so that the server holds it as an idle
/// keep-alive connection, as a real client leaves it), and then held idle until `close()`.
public final class IdleConnections {
    public private(set) var fds: [Int32] = []
    public private(set) var failures = 0
    public private(set) var lastError = ""

    public init() {}

    /// Opens `count` connections to `target` in batches of `batch`: connect all of a batch, send the request on
    /// each, then read each response. Returns the number open.
    @discardableResult
    public func open(count: Int, target: BenchTarget, request: RequestTemplate, batch: Int = 250,
                     timeoutNs: UInt64 = 10_000_000_000) -> Int {
        var buffer = [UInt8](repeating: 0, count: 16384)
        var remaining = count
        while remaining > 0 {
            let size = min(batch, remaining)
            remaining -= size
            var opened: [Int32] = []
            for _ in 0..<size {
                let fd = socket(target.address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                if fd < 0 {
                    fail("socket: errno \(errno)")
                    continue
                }
                var timeout = timeval(tv_sec: Int(timeoutNs / 1_000_000_000), tv_usec: 0)
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var storage = target.address.storage
                let connected = withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, target.address.length) }
                }
                guard connected == 0, IdleConnections.sendAll(fd, request) else {
                    fail("connect/send: errno \(errno)")
                    Glibc.close(fd)
                    continue
                }
                opened.append(fd)
            }
            for fd in opened {
                if IdleConnections.readResponse(fd, &buffer) {
                    fds.append(fd)
                } else {
                    fail("no complete response: errno \(errno)")
                    Glibc.close(fd)
                }
            }
        }
        return fds.count
    }

    /// Closes every connection with a reset (SO_LINGER 0): 10,000 sockets left in TIME_WAIT slow loopback TCP
    /// for the next minute (the gateway's CPU per request rose by a fifth), which would skew whatever runs next.
    public func close() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        for fd in fds {
            _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            Glibc.close(fd)
        }
        fds.removeAll()
    }

    deinit { close() }

    private func fail(_ message: String) {
        failures += 1
        lastError = message
    }

    static func sendAll(_ fd: Int32, _ request: RequestTemplate) -> Bool {
        var offset = 0
        while offset < request.count {
            let n = send(fd, request.bytes.baseAddress! + offset, request.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Reads one response framed by Content-Length (what gwmock and the gateway send for a non-streamed request).
    static func readResponse(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var have = 0
        var needed: Int?
        while true {
            if have == buffer.count { buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count)) }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + have, $0.count - have, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            have += n
            if needed == nil, let (headEnd, length) = IdleConnections.parseHead(buffer[0..<have]) {
                guard let length else { return false }
                needed = headEnd + length
            }
            if let needed, have >= needed { return true }
        }
    }

    /// The end of the head and the Content-Length, once the head is complete.
    static func parseHead(_ bytes: ArraySlice<UInt8>) -> (Int, Int?)? {
        let terminator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4 else { return nil }
        var end: Int?
        for i in bytes.startIndex...(bytes.endIndex - 4) where bytes[i] == 13 && Array(bytes[i..<(i + 4)]) == terminator {
            end = i + 4
            break
        }
        guard let end else { return nil }
        let head = String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self).lowercased()
        for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
            return (end - bytes.startIndex, Int(line.dropFirst("content-length:".count).trimmingSpaces))
        }
        return (end - bytes.startIndex, nil)
    }
}

/// Busy CPU time per CPU from /proc/stat, to tell how much of a window other processes took: the suite's
/// figures mean little when a compiler shared the gateway's core.
public struct CPUTimes: Sendable, Equatable {
    /// Busy ticks (user, nice, system, steal) and steal ticks, by CPU number. Interrupt and softirq time are left
    /// out: on loopback they are mostly the suite's own packets, which no process's utime or stime includes.
    public var busy: [Int: UInt64]
    public var steal: [Int: UInt64]

    public static func read() -> CPUTimes? { Files.read("/proc/stat").flatMap(parse) }

    public static func parse(_ text: String) -> CPUTimes? {
        var busy: [Int: UInt64] = [:]
        var steal: [Int: UInt64] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("cpu") && !line.hasPrefix("cpu ") {
            let fields = line.split(separator: " ")
            guard let cpu = Int(fields[0].dropFirst(3)), fields.count >= 9 else { continue }
            let values = fields.dropFirst().compactMap { UInt64($0) }
            guard values.count >= 8 else { continue }
            // user nice system idle iowait irq softirq steal
            busy[cpu] = values[0] + values[1] + values[2] + values[7]
            steal[cpu] = values[7]
        }
        return busy.isEmpty ? nil : CPUTimes(busy: busy, steal: steal)
    }
}

/// How busy each CPU was over a window, and how much of that was not the suite's own processes.
public struct NoiseRecord: Codable, Sendable, Equatable {
    public struct PerCPU: Codable, Sendable, Equatable {
        public var cpu: Int
        public var busy_s: Double
        /// CPU time of the suite's processes pinned to this CPU.
        public var ours_s: Double
        /// (busy − ours) ÷ window: the share of this CPU other processes (and the hypervisor) took.
        public var foreign_share: Double
        public var steal_s: Double
    }

    public var window: String
    public var seconds: Double
    public var cpus: [PerCPU]

    /// Per CPU: busy and steal from two /proc/stat samples, `ours` in ns of our processes on that CPU.
    public static func make(window: String, seconds: Double, start: CPUTimes, end: CPUTimes, ours: [Int: UInt64]) -> NoiseRecord {
        let tick = Double(ProcessCPU.ticksPerSecond)
        let cpus = end.busy.keys.sorted().compactMap { cpu -> PerCPU? in
            guard let a = start.busy[cpu], let b = end.busy[cpu], b >= a else { return nil }
            let busy = Double(b - a) / tick
            let mine = Double(ours[cpu] ?? 0) / 1e9
            let steal = Double((end.steal[cpu] ?? 0) &- (start.steal[cpu] ?? 0)) / tick
            return PerCPU(cpu: cpu, busy_s: busy, ours_s: mine, foreign_share: seconds > 0 ? max(0, busy - mine) / seconds : 0, steal_s: steal)
        }
        return NoiseRecord(window: window, seconds: seconds, cpus: cpus)
    }

    /// "CPU 0 28%, CPU 1 3%": the foreign shares.
    public var summary: String {
        cpus.map { "CPU \($0.cpu) \(Format.fixed($0.foreign_share * 100, 0))%" }.joined(separator: ", ")
    }

    public var busiest: Double { cpus.map(\.foreign_share).max() ?? 0 }
}
