#if canImport(Glibc)
import Glibc
#endif

/// One-line diagnostics on stderr. Off the hot path: only errors and lifecycle events are logged.
/// Each line is one write(2), so lines from different threads never interleave.
public enum Log {
    public static func info(_ message: String) { write(2, "info: \(message)\n") }
    public static func warning(_ message: String) { write(2, "warning: \(message)\n") }
    public static func error(_ message: String) { write(2, "error: \(message)\n") }

    static func write(_ fd: Int32, _ line: String) {
        var line = line
        line.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// Writes a line to stdout at once: tests and scripts wait for these lines.
public func printLine(_ text: String) {
    Log.write(1, text + "\n")
}
