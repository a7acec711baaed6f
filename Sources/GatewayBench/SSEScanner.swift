/// Counts server-sent events as their bytes arrive, in any split: an event is complete at the blank line
/// that ends it, and it counts when it held at least one `data:` line (so comments and keep-alives do not).
public struct SSEScanner: Sendable {
    private static let prefix: (UInt8, UInt8, UInt8, UInt8, UInt8) =
        (UInt8(ascii: "d"), UInt8(ascii: "a"), UInt8(ascii: "t"), UInt8(ascii: "a"), UInt8(ascii: ":"))

    /// Bytes of the current line so far, not counting CR.
    private var lineLength = 0
    /// How many bytes of "data:" the current line starts with (5 = a data line).
    private var matched = 0
    private var eventHasData = false

    public init() {}

    public mutating func reset() { self = SSEScanner() }

    /// Scans `count` bytes.
    /// - Returns: the number of data events completed within them.
    @inline(__always)
    public mutating func feed(_ bytes: UnsafeRawPointer, _ count: Int) -> Int {
        var events = 0
        var i = 0
        while i < count {
            let byte = bytes.load(fromByteOffset: i, as: UInt8.self)
            i += 1
            if byte == UInt8(ascii: "\n") {
                if lineLength == 0 {
                    if eventHasData { events += 1 }
                    eventHasData = false
                } else if matched == 5 {
                    eventHasData = true
                }
                lineLength = 0
                matched = 0
            } else if byte != UInt8(ascii: "\r") {
                if lineLength == matched, matched < 5, byte == SSEScanner.prefixByte(matched) { matched += 1 }
                lineLength += 1
            }
        }
        return events
    }

    @inline(__always)
    private static func prefixByte(_ index: Int) -> UInt8 {
        switch index {
        case 0: prefix.0
        case 1: prefix.1
        case 2: prefix.2
        case 3: prefix.3
        default: prefix.4
        }
    }
}
