#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// Small file helpers without Foundation.
public enum Files {
    /// The whole file as text, or nil when it cannot be read.
    public static func read(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The whole file as bytes, or nil when it cannot be read.
    public static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return nil }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return bytes
    }

    public struct WriteError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Writes `text` to `path`, replacing it.
    public static func write(_ text: String, to path: String) throws(WriteError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(description: "cannot write \(path): errno \(errno)") }
        defer { _ = close(fd) }
        var text = text
        let ok = text.withUTF8 { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return false }
                offset += written
            }
            return true
        }
        if !ok { throw WriteError(description: "cannot write \(path): errno \(errno)") }
    }
}

/// The machine a result was measured on.
public struct MachineInfo: Codable, Sendable, Equatable {
    public var cores: Int
    /// CPUs this process may run on (its affinity mask).
    public var available_cores: Int
    public var cpu_model: String
    public var kernel: String
    public var hostname: String

    public static func current() -> MachineInfo {
        var model = "unknown"
        if let cpuinfo = Files.read("/proc/cpuinfo") {
            for line in cpuinfo.split(separator: "\n") where line.hasPrefix("model name") {
                if let colon = line.firstIndex(of: ":") {
                    model = String(line[line.index(after: colon)...].trimmingSpaces)
                }
                break
            }
        }
        var names = utsname()
        _ = uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
        }
        return MachineInfo(
            cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), available_cores: CPU.available, cpu_model: model,
            kernel: "\(field(names.sysname)) \(field(names.release))", hostname: field(names.nodename))
    }
}

/// The CPU time another process has used, from /proc/PID/stat (utime + stime).
public enum ProcessCPU {
    /// Clock ticks per second, for /proc's utime and stime.
    public static let ticksPerSecond = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))

    /// utime + stime of `pid` in nanoseconds, or nil when the process is gone.
    public static func read(pid: Int32) -> UInt64? {
        guard let text = Files.read("/proc/\(pid)/stat") else { return nil }
        return parseStat(text).map { $0 * 1_000_000_000 / ticksPerSecond }
    }

    /// utime + stime in ticks from the text of /proc/PID/stat. The command name may hold spaces and
    /// parentheses, so the fields are counted from the last ')'.
    public static func parseStat(_ text: String) -> UInt64? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After ")": state is field 3, so utime (14) and stime (15) are at offsets 11 and 12.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }
}
