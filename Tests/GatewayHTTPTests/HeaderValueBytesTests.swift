import Testing

@testable import GatewayHTTP

/// Header values are scanned eight bytes at a time: every byte position of a long value must still be judged exactly
/// as the byte-by-byte rule does (tab, visible ASCII and obs-text allowed; other controls and DEL refused).
@Suite("header value bytes")
struct HeaderValueBytesTests {
    static func head(value: [UInt8]) -> [UInt8] {
        Array("GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".utf8) + value + Array("\r\n\r\n".utf8)
    }

    @Test(arguments: [UInt8(0x00), 0x01, 0x08, 0x0A, 0x0B, 0x0D, 0x1F, 0x7F])
    func aBadByteAnywhereInALongValueIsRefused(_ bad: UInt8) {
        for position in 0..<40 {
            var value = Array("abcdefghijklmnopqrstuvwxyz0123456789ABCD".utf8)
            value[position] = bad
            let parse = Parse.whole(HeaderValueBytesTests.head(value: value))
            guard case .failed = parse.outcome else {
                Issue.record("byte \(bad) at \(position) was accepted: \(parse.outcome)")
                return
            }
        }
    }

    @Test(arguments: [UInt8(0x09), 0x20, 0x7E, 0x80, 0xFF])
    func anAllowedByteAnywhereInALongValueIsKept(_ good: UInt8) {
        for position in 1..<39 {
            var value = Array("abcdefghijklmnopqrstuvwxyz0123456789ABCD".utf8)
            value[position] = good
            let parse = Parse.whole(HeaderValueBytesTests.head(value: value))
            #expect(parse.outcome == .complete, "byte \(good) at \(position)")
            #expect(parse.value("x-long").map { Array($0.utf8).count } == String(decoding: value, as: UTF8.self).utf8.count,
                    "byte \(good) at \(position)")
        }
    }
}
