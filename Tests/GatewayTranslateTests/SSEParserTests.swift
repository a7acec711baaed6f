import Testing
@testable import GatewayTranslate

/// Server-Sent Events framing, fed at every split.
@Suite struct SSEParserTests {
    /// All events of `text`, fed in pieces of `size` bytes.
    static func events(_ text: String, size: Int) -> [(name: String, data: String)] {
        var parser = SSEParser()
        var events: [(name: String, data: String)] = []
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { raw in
            var start = 0
            while start < raw.count {
                let end = min(start + size, raw.count)
                parser.feed(UnsafeRawBufferPointer(rebasing: raw[start..<end])) { event in
                    events.append((event.name, String(decoding: event.data, as: UTF8.self)))
                }
                start = end
            }
        }
        return events
    }

    static let stream = ": a comment\r\nevent: first\r\ndata: one\r\n\r\n"
        + "data:two\rdata:  three\r\r"
        + "id: 7\nretry: 1000\nevent: third\ndata\ndata: é✓😀\n\n"
        + "event: ignored-without-data\n\n"
        + "data: unfinished"

    @Test func framing() {
        for size in 1...Self.stream.utf8.count {
            let events = Self.events(Self.stream, size: size)
            #expect(events.map(\.name) == ["first", "", "third"], "split \(size)")
            #expect(events.map(\.data) == ["one", "two\n three", "\né✓😀"], "split \(size)")
        }
    }

    @Test func crlfSplitBetweenCarriageReturnAndLineFeed() {
        var parser = SSEParser()
        var data: [String] = []
        for piece in ["data: a\r", "\n\r", "\ndata: b\r", "\n", "\r\n"] {
            Array(piece.utf8).withUnsafeBytes { raw in
                parser.feed(raw) { data.append(String(decoding: $0.data, as: UTF8.self)) }
            }
        }
        #expect(data == ["a", "b"])
    }

    /// Only the unfinished line is kept between pieces: a long stream in tiny pieces stays linear (a parser that
    /// re-scanned what it had buffered would take minutes here).
    @Test func longStreamInTinyPieces() {
        let event = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"token\"}}\n\n"
        let stream = String(repeating: event, count: 20_000)
        let events = Self.events(stream, size: 3)
        #expect(events.count == 20_000)
        #expect(events.allSatisfy { $0.name == "content_block_delta" && $0.data.hasSuffix("\"token\"}}") })
    }

    @Test func oneLongLineInTinyPieces() {
        let data = String(repeating: "x", count: 1_000_000)
        let events = Self.events("data: " + data + "\n\n", size: 1)
        #expect(events.map(\.data) == [data])
    }
}
