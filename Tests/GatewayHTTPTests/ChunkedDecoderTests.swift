import Testing

@testable import GatewayHTTP

/// The result of decoding a chunked body, however it was fed.
struct ChunkedRun: Equatable {
    var data: [UInt8] = []
    /// Input bytes consumed in all.
    var consumed = 0
    var done = false
    var error: String?
    var decodedBytes = 0
}

enum Chunked {
    /// Feeds `input` split at `splits` (offsets into it) into one decoder, stopping at done or an error.
    static func run(_ input: [UInt8], splits: [Int]) -> ChunkedRun {
        var decoder = ChunkedDecoder()
        var run = ChunkedRun()
        let bounds = [0] + splits + [input.count]
        input.withUnsafeBytes { raw in
            for i in 0..<(bounds.count - 1) where bounds[i + 1] > bounds[i] {
                // Each piece in its own allocation, so reading past it is not silently harmless.
                let piece = Array(raw[bounds[i]..<bounds[i + 1]])
                let feed = piece.withUnsafeBytes { p in
                    decoder.feed(p.baseAddress!, p.count) { data, count in
                        run.data.append(contentsOf: UnsafeRawBufferPointer(start: data, count: count))
                    }
                }
                run.consumed += feed.consumed
                if let error = feed.error {
                    run.error = "\(error)"
                    break
                }
                if feed.done {
                    run.done = true
                    #expect(decoder.isDone)
                    break
                }
                #expect(feed.consumed == piece.count, "a piece is consumed whole unless the coding ends or fails")
            }
        }
        run.decodedBytes = decoder.decodedBytes
        return run
    }

    static func whole(_ input: [UInt8]) -> ChunkedRun { run(input, splits: []) }
    static func byteByByte(_ input: [UInt8]) -> ChunkedRun { run(input, splits: Array(1..<max(1, input.count))) }

    /// Frames `data` as chunks of the given sizes (the last one takes the rest), then the last chunk.
    static func encode(_ data: [UInt8], chunkSizes: [Int], uppercase: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var offset = 0
        var sizes = chunkSizes
        while offset < data.count {
            let size = min(sizes.isEmpty ? data.count - offset : sizes.removeFirst(), data.count - offset)
            guard size > 0 else { continue }
            let hex = String(size, radix: 16, uppercase: uppercase)
            out += Array("\(hex)\r\n".utf8) + data[offset..<(offset + size)] + Array("\r\n".utf8)
            offset += size
        }
        return out + Array("0\r\n\r\n".utf8)
    }
}

struct ChunkedCase: Sendable, CustomTestStringConvertible {
    let name: String
    let input: [UInt8]
    let data: [UInt8]
    var testDescription: String { name }

    init(_ name: String, _ input: String, _ data: String) {
        self.name = name
        self.input = input.bytes
        self.data = data.bytes
    }

    init(_ name: String, input: [UInt8], data: [UInt8]) {
        self.name = name
        self.input = input
        self.data = data
    }
}

enum ChunkedCases {
    static let sample: [UInt8] = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    static let valid: [ChunkedCase] = [
        ChunkedCase("empty body", "0\r\n\r\n", ""),
        ChunkedCase("single chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"),
        ChunkedCase("two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
        ChunkedCase("data holding CRLF and digits", "6\r\n0\r\n\r\n0\r\n0\r\n\r\n", "0\r\n\r\n0"),
        ChunkedCase("uppercase hex", "A\r\n0123456789\r\n1F\r\n" + String(repeating: "x", count: 31) + "\r\n0\r\n\r\n",
                    "0123456789" + String(repeating: "x", count: 31)),
        ChunkedCase("mixed-case hex", "aB\r\n" + String(repeating: "y", count: 0xAB) + "\r\n0\r\n\r\n", String(repeating: "y", count: 0xAB)),
        ChunkedCase("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"),
        ChunkedCase("15 hex digits", "000000000000005\r\nhello\r\n0\r\n\r\n", "hello"),
        ChunkedCase("chunk extensions", "5;name=value;flag\r\nhello\r\n0;last=\"yes; really\"\r\n\r\n", "hello"),
        ChunkedCase("extension after BWS", "5 ;a=b\r\nhello\r\n0\t;c\r\n\r\n", "hello"),
        ChunkedCase("extension with tab", "5;a=\"x\ty\"\r\nhello\r\n0\r\n\r\n", "hello"),
        ChunkedCase("one trailer", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", "hello"),
        ChunkedCase("several trailers", "2\r\nhi\r\n0\r\nA: 1\r\nB: 2\r\nC:\r\n\r\n", "hi"),
        ChunkedCase("trailer with extension on last chunk", "0;x=y\r\nT: v\r\n\r\n", ""),
        ChunkedCase("many small chunks", input: Chunked.encode(Array(sample.prefix(500)), chunkSizes: Array(repeating: 1, count: 500)),
                    data: Array(sample.prefix(500))),
        ChunkedCase("chunks of growing size", input: Chunked.encode(sample, chunkSizes: Array(1...80)), data: sample),
        ChunkedCase("uppercase framing of binary data", input: Chunked.encode(sample, chunkSizes: [0xFF, 0xABC], uppercase: true), data: sample),
        ChunkedCase("64 KiB chunk", input: Chunked.encode(Array(repeating: 0x41, count: 65536), chunkSizes: [65536]),
                    data: Array(repeating: 0x41, count: 65536)),
    ]

    static let invalid: [ChunkedCase] = [
        ChunkedCase("bad hex digit", "G\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("hex then garbage", "5x\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("negative size", "-5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("plus sign", "+5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("empty size line", "\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("leading space", " 5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("size ends in bare LF", "5\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        ChunkedCase("size CR without LF", "5\rhello\r\n0\r\n\r\n", "invalid chunk size line"),
        ChunkedCase("16 hex digits", "1000000000000000\r\n", "chunk size too large"),
        ChunkedCase("16 F digits", "FFFFFFFFFFFFFFFF\r\n", "chunk size too large"),
        ChunkedCase("16 digits with leading zeros", "0000000000000005\r\nhello\r\n0\r\n\r\n", "chunk size too large"),
        ChunkedCase("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", "missing CRLF after chunk data"),
        ChunkedCase("data longer than its size", "3\r\nhello\r\n0\r\n\r\n", "missing CRLF after chunk data"),
        ChunkedCase("bare LF after data", "5\r\nhello\n0\r\n\r\n", "missing CRLF after chunk data"),
        ChunkedCase("CR without LF after data", "5\r\nhello\r0\r\n\r\n", "missing CRLF after chunk data"),
        ChunkedCase("bare LF in extension", "5;a\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ChunkedCase("NUL in extension", "5;a\u{00}\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ChunkedCase("DEL in extension", "5;a\u{7F}\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        ChunkedCase("overlong extension", "5;" + String(repeating: "e", count: 5000) + "\r\nhello\r\n0\r\n\r\n", "chunk extension too long"),
        ChunkedCase("bare LF ends trailers", "0\r\n\n", "bare LF in trailer section"),
        ChunkedCase("bare LF in trailer line", "0\r\nX: a\nY: b\r\n\r\n", "invalid byte in trailer section"),
        ChunkedCase("bare LF after a trailer", "0\r\nX: a\r\n\n", "bare LF in trailer section"),
        ChunkedCase("NUL in trailer", "0\r\nX: a\u{00}\r\n\r\n", "invalid byte in trailer section"),
        ChunkedCase("bare CR in trailer", "0\r\nX: a\rb\r\n\r\n", "invalid trailer line"),
        ChunkedCase("overlong trailers", "0\r\nX: " + String(repeating: "t", count: 20_000) + "\r\n\r\n", "trailer section too long"),
        ChunkedCase("final CR without LF", "0\r\n\rX", "invalid end of chunked body"),
    ]
}

@Suite("Chunked decoder")
struct ChunkedDecoderTests {
    @Test("valid bodies decode whole", arguments: ChunkedCases.valid)
    func validWhole(_ testCase: ChunkedCase) {
        let run = Chunked.whole(testCase.input)
        #expect(run.error == nil)
        #expect(run.done)
        #expect(run.data == testCase.data)
        #expect(run.consumed == testCase.input.count)
        #expect(run.decodedBytes == testCase.data.count)
    }

    @Test("valid bodies decode byte by byte to the same data", arguments: ChunkedCases.valid)
    func validByteByByte(_ testCase: ChunkedCase) {
        #expect(Chunked.byteByByte(testCase.input) == Chunked.whole(testCase.input))
        #expect(Chunked.byteByByte(testCase.input).data == testCase.data)
    }

    @Test("valid bodies decode the same across every two-piece split", arguments: ChunkedCases.valid.filter { $0.input.count < 4000 })
    func validSplits(_ testCase: ChunkedCase) {
        let whole = Chunked.whole(testCase.input)
        for split in 1..<max(1, testCase.input.count) {
            #expect(Chunked.run(testCase.input, splits: [split]) == whole, "split at \(split)")
        }
    }

    @Test("consumed stops right after the final CRLF when a pipelined request follows", arguments: ChunkedCases.valid)
    func pipelining(_ testCase: ChunkedCase) {
        let next = Array("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".utf8)
        let input = testCase.input + next
        var decoder = ChunkedDecoder()
        var data: [UInt8] = []
        let feed = input.withUnsafeBytes { raw in
            decoder.feed(raw.baseAddress!, raw.count) { data.append(contentsOf: UnsafeRawBufferPointer(start: $0, count: $1)) }
        }
        #expect(feed.error == nil)
        #expect(feed.done)
        #expect(feed.consumed == testCase.input.count)
        #expect(data == testCase.data)
        // Once done, more bytes are not taken.
        let again = next.withUnsafeBytes { raw in decoder.feed(raw.baseAddress!, raw.count) { _, _ in Issue.record("data after done") } }
        #expect(again.consumed == 0)
        #expect(again.done)
        // Byte by byte, the decoder reports done on the final LF and not before.
        let byByte = Chunked.byteByByte(input)
        #expect(byByte.consumed == testCase.input.count)
        #expect(byByte.done)
    }

    @Test("errors are reported at the same byte, whole or byte by byte", arguments: ChunkedCases.invalid)
    func invalid(_ testCase: ChunkedCase) {
        let expectedError = String(decoding: testCase.data, as: UTF8.self)
        let whole = Chunked.whole(testCase.input)
        #expect(whole.error == expectedError)
        #expect(!whole.done)
        let byByte = Chunked.byteByByte(testCase.input)
        #expect(byByte.error == expectedError)
        #expect(byByte.consumed == whole.consumed, "the error is found at the same offset")
        #expect(byByte.data == whole.data)
    }

    @Test("an incomplete body is neither done nor an error")
    func incomplete() {
        let input = Array("5\r\nhello\r\n0\r\nX: y\r\n".utf8)
        for end in 0...input.count {
            let run = Chunked.whole(Array(input.prefix(end)))
            #expect(run.error == nil)
            #expect(!run.done)
            #expect(run.consumed == end)
        }
    }

    @Test("data is reported in place, without copying")
    func inPlace() {
        let input = Array("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".utf8)
        var decoder = ChunkedDecoder()
        var offsets: [Int] = []
        input.withUnsafeBytes { raw in
            _ = decoder.feed(raw.baseAddress!, raw.count) { data, count in offsets.append(data - raw.baseAddress!) }
        }
        #expect(offsets == [3, 11])
    }

    @Test("reset readies the decoder for the next message")
    func reset() {
        var decoder = ChunkedDecoder()
        let first = Array("2\r\nhi\r\n0\r\n\r\n".utf8)
        let feed = first.withUnsafeBytes { decoder.feed($0.baseAddress!, $0.count) { _, _ in } }
        #expect(feed.done && decoder.isDone && decoder.decodedBytes == 2)
        decoder.reset()
        #expect(!decoder.isDone && decoder.decodedBytes == 0)
        var data: [UInt8] = []
        let second = Array("3\r\nabc\r\n0\r\n\r\n".utf8)
        let again = second.withUnsafeBytes { decoder.feed($0.baseAddress!, $0.count) { data.append(contentsOf: UnsafeRawBufferPointer(start: $0, count: $1)) } }
        #expect(again.done && again.consumed == second.count)
        #expect(data == Array("abc".utf8))
    }

    @Test("an extension of 4096 bytes is allowed, one more is not")
    func extensionLimit() {
        // The limit counts the extension's bytes after the first `;`, CR included.
        let atLimit = Array(("5;" + String(repeating: "e", count: ChunkedDecoder.maxExtensionBytes - 1) + "\r\nhello\r\n0\r\n\r\n").utf8)
        #expect(Chunked.whole(atLimit).done)
        let over = Array(("5;" + String(repeating: "e", count: ChunkedDecoder.maxExtensionBytes) + "\r\nhello\r\n0\r\n\r\n").utf8)
        #expect(Chunked.whole(over).error == "chunk extension too long")
    }
}
