#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP

/// The head of an HTTP/1.x response as the load generator needs it: the status, the body's framing, whether the
/// connection stays open, and gwmock's `x-mock-received-ns`. Parsed in place, line by line, and resumed where it
/// stopped when the head arrives in pieces.
///
/// It reads only the fields that decide framing and reuse (Content-Length, Transfer-Encoding, Connection) and the
/// mock's stamp, and checks what would make the load generator misread the stream: the status line, CRLF line
/// ends, a colon in every field with no space before it, obs-fold, a bad or contradicting Content-Length, a
/// transfer coding other than chunked (or repeated), both Content-Length and Transfer-Encoding, a head over 64 KiB.
/// It does not vet every byte of every field as the gateway's `HTTPHeadParser` does (that guards a proxy against
/// smuggling): with it, the load thread took 4,186 instructions per request, with this 2,723
/// (results/2026-12-02-gwbench-instructions.json).
struct ResponseHead {
    enum Outcome: Equatable { case incomplete, complete, failed }

    static let maxHeadBytes = 64 * 1024

    private(set) var status = 0
    /// The bytes of the head including the blank line that ends it.
    private(set) var headLength = 0
    /// The declared Content-Length, or -1.
    private(set) var contentLength: Int64 = -1
    private(set) var chunked = false
    /// `x-mock-received-ns`, 0 when absent or not a number.
    private(set) var mockReceivedNs: UInt64 = 0
    private var minorVersion = 1
    private var connectionClose = false
    private var connectionKeepAlive = false
    /// Where the next unparsed line starts; 0 before the status line.
    private var position = 0

    /// Whether the connection may carry another message after this one.
    var keepAlive: Bool { minorVersion >= 1 ? !connectionClose : connectionKeepAlive && !connectionClose }

    /// Forgets the last head: call before parsing the next one (the bytes at the same `start` are a new message).
    @inline(__always)
    mutating func reset() {
        self = ResponseHead()
    }

    /// Parses on from where the last call stopped. The bytes at `start` must be the same message, grown.
    mutating func parse(_ start: UnsafeRawPointer, _ count: Int) -> Outcome {
        while true {
            let left = count - position
            guard left > 0, let found = memchr(start + position, Int32(UInt8(ascii: "\n")), left) else {
                return count > ResponseHead.maxHeadBytes ? .failed : .incomplete
            }
            let lf = UnsafeRawPointer(found) - start
            // Every line ends in CRLF.
            guard lf > position, start.load(fromByteOffset: lf - 1, as: UInt8.self) == UInt8(ascii: "\r") else { return .failed }
            let line = start + position
            let length = lf - 1 - position
            if position == 0 {
                guard statusLine(line, length) else { return .failed }
            } else if length == 0 {
                headLength = lf + 1
                guard headLength <= ResponseHead.maxHeadBytes, !(chunked && contentLength >= 0) else { return .failed }
                return .complete
            } else {
                guard field(line, length) else { return .failed }
            }
            position = lf + 1
        }
    }

    /// "HTTP/1.x NNN[ reason]".
    private mutating func statusLine(_ line: UnsafeRawPointer, _ length: Int) -> Bool {
        @inline(__always) func byte(_ i: Int) -> UInt8 { line.load(fromByteOffset: i, as: UInt8.self) }
        guard length >= 12, byte(0) == UInt8(ascii: "H"), byte(1) == UInt8(ascii: "T"), byte(2) == UInt8(ascii: "T"),
              byte(3) == UInt8(ascii: "P"), byte(4) == UInt8(ascii: "/"), byte(5) == UInt8(ascii: "1"),
              byte(6) == UInt8(ascii: "."), byte(8) == UInt8(ascii: " ") else { return false }
        guard length == 12 || byte(12) == UInt8(ascii: " ") else { return false }
        minorVersion = byte(7) == UInt8(ascii: "0") ? 0 : 1
        var code = 0
        for i in 9..<12 {
            let digit = byte(i) &- UInt8(ascii: "0")
            guard digit < 10 else { return false }
            code = code * 10 + Int(digit)
        }
        status = code
        return true
    }

    /// "name: value" (without the CRLF): takes the value of the names that matter.
    private mutating func field(_ line: UnsafeRawPointer, _ length: Int) -> Bool {
        let first = line.load(as: UInt8.self)
        guard first != UInt8(ascii: " "), first != UInt8(ascii: "\t"),  // obs-fold
              let found = memchr(line, Int32(UInt8(ascii: ":")), length) else { return false }
        let nameLength = UnsafeRawPointer(found) - line
        // No whitespace before the colon: "Content-Length : 5" would otherwise pass as an unknown field.
        guard nameLength > 0, !ResponseHead.isSpace(line.load(fromByteOffset: nameLength - 1, as: UInt8.self)) else { return false }
        // Trim optional whitespace around the value.
        var valueStart = nameLength + 1
        var valueEnd = length
        while valueStart < valueEnd, ResponseHead.isSpace(line.load(fromByteOffset: valueStart, as: UInt8.self)) { valueStart += 1 }
        while valueEnd > valueStart, ResponseHead.isSpace(line.load(fromByteOffset: valueEnd - 1, as: UInt8.self)) { valueEnd -= 1 }
        let value = UnsafeRawBufferPointer(start: line + valueStart, count: valueEnd - valueStart)
        switch (nameLength, first | 0x20) {
        case (14, UInt8(ascii: "c")) where HTTPBytes.equalsLowercase(line, nameLength, "content-length"):
            guard value.count > 0, value.count <= 15 else { return false }
            var parsed: Int64 = 0
            for byte in value {
                let digit = byte &- UInt8(ascii: "0")
                guard digit < 10 else { return false }
                parsed = parsed * 10 + Int64(digit)
            }
            guard contentLength < 0 || contentLength == parsed else { return false }
            contentLength = parsed
        case (17, UInt8(ascii: "t")) where HTTPBytes.equalsLowercase(line, nameLength, "transfer-encoding"):
            guard !chunked, HTTPBytes.equalsLowercase(value.baseAddress!, value.count, "chunked") else { return false }
            chunked = true
        case (10, UInt8(ascii: "c")) where HTTPBytes.equalsLowercase(line, nameLength, "connection"):
            connectionTokens(value)
        case (18, UInt8(ascii: "x")) where HTTPBytes.equalsLowercase(line, nameLength, "x-mock-received-ns"):
            mockReceivedNs = BenchConnection.parseDecimal(value)
        default:
            break
        }
        return true
    }

    private mutating func connectionTokens(_ value: UnsafeRawBufferPointer) {
        var p = 0
        while p < value.count {
            while p < value.count, value[p] == UInt8(ascii: ",") || ResponseHead.isSpace(value[p]) { p += 1 }
            let tokenStart = p
            while p < value.count, value[p] != UInt8(ascii: ","), !ResponseHead.isSpace(value[p]) { p += 1 }
            guard p > tokenStart, let base = value.baseAddress else { continue }
            if HTTPBytes.equalsLowercase(base + tokenStart, p - tokenStart, "close") {
                connectionClose = true
            } else if HTTPBytes.equalsLowercase(base + tokenStart, p - tokenStart, "keep-alive") {
                connectionKeepAlive = true
            }
        }
    }

    @inline(__always)
    private static func isSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
}
