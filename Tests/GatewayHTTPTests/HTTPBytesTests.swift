import Testing

@testable import GatewayHTTP

@Suite struct HTTPBytesTests {
    /// RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
    /// / DIGIT / ALPHA.
    private static let tchars = Set(Array("!#$%&'*+-.^_`|~0123456789".utf8)
        + Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))

    @Test func isTokenMatchesTheRFCForEveryByte() {
        for value in 0...255 {
            let byte = UInt8(value)
            #expect(HTTPBytes.isToken(byte) == Self.tchars.contains(byte), "byte \(value)")
        }
    }

    /// `nameBytes` flags exactly the letters, digits and `-` of a word, in every lane, whatever its neighbours
    /// (bytes with bit 7 set, zeros, 0xFF and 0x7F among them, so that a borrow or carry across lanes would show).
    @Test func nameBytesFlagsExactlyLettersDigitsAndDashInEveryLane() {
        let alnumOrDash = Set(Array("-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))
        let neighbours: [UInt8] = [0x00, 0x2D, 0x2F, 0x3A, 0x40, 0x5B, 0x60, 0x7B, 0x7F, 0x80, 0xAD, 0xE1, 0xFF, 0x61, 0x30]
        for value in 0...255 {
            for lane in 0..<8 {
                for (n, neighbour) in neighbours.enumerated() {
                    var bytes = [UInt8](repeating: neighbour, count: 8)
                    // Mixed neighbours too: each lane a different one.
                    if n % 2 == 1 { for i in 0..<8 { bytes[i] = neighbours[(n + i) % neighbours.count] } }
                    bytes[lane] = UInt8(value)
                    var word: UInt64 = 0
                    for i in 0..<8 { word |= UInt64(bytes[i]) << UInt64(8 * i) }
                    let flags = HTTPBytes.nameBytes(word)
                    for i in 0..<8 {
                        let flagged = (flags >> UInt64(8 * i + 7)) & 1 == 1
                        #expect(flagged == alnumOrDash.contains(bytes[i]), "byte \(bytes[i]) in lane \(i) of \(bytes)")
                    }
                    #expect(flags & ~0x8080_8080_8080_8080 == 0, "only bit 7 of a lane is ever set")
                }
            }
        }
    }

    /// Through the parser: a header name with every byte value at every offset (across the 8-byte steps) is
    /// accepted exactly when the byte is a token byte, and the name's range ends at the colon.
    @Test func headerNamesAreCheckedByteByByteAtEveryOffset() {
        let parser = HTTPHeadParser()
        for value in 0...255 {
            let byte = UInt8(value)
            if byte == UInt8(ascii: ":") { continue }
            for offset in 0..<20 {
                var name = Array("x-gateway-test-name-long".utf8)
                name[offset] = byte
                let head = Array("GET / HTTP/1.1\r\nhost: a\r\n".utf8) + name + Array(": v\r\n\r\n".utf8)
                let buffer = RawBuffer(head)
                let outcome = parser.parseRequest(buffer.pointer, buffer.count)
                if Self.tchars.contains(byte) {
                    #expect(outcome == .complete, "byte \(value) at \(offset)")
                    if outcome == .complete {
                        #expect(parser.fieldCount == 2 && Int(parser.fields[1].name.count) == name.count, "byte \(value) at \(offset)")
                    }
                } else {
                    #expect(outcome != .complete, "byte \(value) at \(offset)")
                }
            }
        }
    }

    /// lowercaseInPlace folds A-Z and nothing else, for every byte value at every offset (across the 8-byte steps)
    /// and every length.
    @Test func lowercaseInPlaceFoldsCapitalsOnly() {
        for value in 0...255 {
            for offset in 0..<20 {
                var bytes = Array("X-Gateway-Test-Name-Long".utf8)
                bytes[offset] = UInt8(value)
                let expected = bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
                for length in [offset + 1, 20, bytes.count] {
                    var folded = bytes
                    folded.withUnsafeMutableBytes { HTTPBytes.lowercaseInPlace($0.baseAddress!, length) }
                    #expect(Array(folded[..<length]) == Array(expected[..<length]), "byte \(value) at \(offset), length \(length)")
                    #expect(Array(folded[length...]) == Array(bytes[length...]), "bytes past \(length) untouched")
                }
            }
        }
    }
}

