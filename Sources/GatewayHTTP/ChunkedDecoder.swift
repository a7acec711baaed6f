/// An incremental decoder of the chunked transfer coding (RFC 9112 7.1), fed bytes as they arrive.
/// It reports each run of data bytes in place and where the coding ends, so a proxy can either re-frame
/// the data or pass the framed bytes through untouched and still know when the message is over.
public struct ChunkedDecoder: Sendable {
    enum State: Sendable {
        case size, extensions, sizeLF, data, dataCR, dataLF, trailerStart, trailerLine, trailerLF, finalLF, done
    }

    static let maxSizeDigits = 15
    static let maxExtensionBytes = 4096
    static let maxTrailerBytes = 16384

    var state = State.size
    var remaining = 0
    var digits = 0
    var extensionBytes = 0
    var trailerBytes = 0
    var chunkIsLast = false
    /// The data bytes decoded so far in this message.
    public private(set) var decodedBytes = 0

    public init() {}

    public var isDone: Bool { if case .done = state { true } else { false } }

    public mutating func reset() {
        self = ChunkedDecoder()
    }

    public struct Feed {
        /// Bytes of input consumed; stops right after the end of the coding.
        public var consumed: Int
        public var done: Bool
        public var error: StaticString?
    }

    /// Decodes `count` bytes. Calls `onData` with each run of data bytes, pointing into the input.
    @inline(__always)
    public mutating func feed(_ input: UnsafeRawPointer, _ count: Int, onData: (UnsafeRawPointer, Int) -> Void) -> Feed {
        var p = 0
        while p < count {
            let byte = input.load(fromByteOffset: p, as: UInt8.self)
            switch state {
            case .size:
                if let value = ChunkedDecoder.hexValue(byte) {
                    digits += 1
                    if digits > ChunkedDecoder.maxSizeDigits { return Feed(consumed: p, done: false, error: "chunk size too large") }
                    remaining = remaining << 4 | value
                } else if digits == 0 {
                    return Feed(consumed: p, done: false, error: "invalid chunk size")
                } else if byte == UInt8(ascii: ";") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") {
                    state = .extensions
                } else if byte == UInt8(ascii: "\r") {
                    state = .sizeLF
                } else {
                    return Feed(consumed: p, done: false, error: "invalid chunk size")
                }
                p += 1
            case .extensions:
                extensionBytes += 1
                if extensionBytes > ChunkedDecoder.maxExtensionBytes { return Feed(consumed: p, done: false, error: "chunk extension too long") }
                if byte == UInt8(ascii: "\r") {
                    state = .sizeLF
                } else if byte == UInt8(ascii: "\n") || (byte < 0x20 && byte != 0x09) || byte == 0x7F {
                    return Feed(consumed: p, done: false, error: "invalid chunk extension")
                }
                p += 1
            case .sizeLF:
                guard byte == UInt8(ascii: "\n") else { return Feed(consumed: p, done: false, error: "invalid chunk size line") }
                p += 1
                digits = 0
                extensionBytes = 0
                if remaining == 0 {
                    state = .trailerStart
                } else {
                    state = .data
                }
            case .data:
                let run = min(remaining, count - p)
                onData(input + p, run)
                decodedBytes += run
                remaining -= run
                p += run
                if remaining == 0 { state = .dataCR }
            case .dataCR:
                guard byte == UInt8(ascii: "\r") else { return Feed(consumed: p, done: false, error: "missing CRLF after chunk data") }
                state = .dataLF
                p += 1
            case .dataLF:
                guard byte == UInt8(ascii: "\n") else { return Feed(consumed: p, done: false, error: "missing CRLF after chunk data") }
                state = .size
                p += 1
            case .trailerStart:
                if byte == UInt8(ascii: "\r") {
                    state = .finalLF
                } else if byte == UInt8(ascii: "\n") {
                    return Feed(consumed: p, done: false, error: "bare LF in trailer section")
                } else {
                    state = .trailerLine
                }
                trailerBytes += 1
                p += 1
            case .trailerLine:
                trailerBytes += 1
                if trailerBytes > ChunkedDecoder.maxTrailerBytes { return Feed(consumed: p, done: false, error: "trailer section too long") }
                if byte == UInt8(ascii: "\r") {
                    state = .trailerLF
                } else if byte == UInt8(ascii: "\n") || byte == 0 {
                    return Feed(consumed: p, done: false, error: "invalid byte in trailer section")
                }
                p += 1
            case .trailerLF:
                guard byte == UInt8(ascii: "\n") else { return Feed(consumed: p, done: false, error: "invalid trailer line") }
                state = .trailerStart
                p += 1
            case .finalLF:
                guard byte == UInt8(ascii: "\n") else { return Feed(consumed: p, done: false, error: "invalid end of chunked body") }
                state = .done
                return Feed(consumed: p + 1, done: true, error: nil)
            case .done:
                return Feed(consumed: p, done: true, error: nil)
            }
        }
        return Feed(consumed: p, done: isDone, error: nil)
    }

    @inline(__always)
    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
