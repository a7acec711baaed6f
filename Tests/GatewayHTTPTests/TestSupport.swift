import GatewayIO
import Testing

@testable import GatewayHTTP

/// Heap memory the parser can point into for as long as a test inspects the parsed ranges.
/// Bytes past `count` hold a filler (LF by default): they stand for the stale bytes a real read
/// buffer holds past its writer index, so a parser that peeks beyond `available` finds fake blank
/// lines and gives a wrong verdict instead of a lucky right one.
final class RawBuffer {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    static let slack = 64

    init(_ bytes: [UInt8], filler: UInt8 = 0x0A) {
        count = bytes.count
        pointer = .allocate(byteCount: bytes.count + RawBuffer.slack, alignment: 16)
        pointer.initializeMemory(as: UInt8.self, repeating: filler, count: bytes.count + RawBuffer.slack)
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress { pointer.copyMemory(from: base, byteCount: raw.count) }
        }
    }

    /// A buffer of `count` filler bytes; the test writes the real bytes one by one.
    init(fillerOfCount count: Int, filler: UInt8 = 0x0A) {
        self.count = count
        pointer = .allocate(byteCount: count + RawBuffer.slack, alignment: 16)
        pointer.initializeMemory(as: UInt8.self, repeating: filler, count: count + RawBuffer.slack)
    }

    deinit { pointer.deallocate() }

    var raw: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}

/// A parse and what it ran on, kept alive together so the parser's ranges stay valid.
struct HeadParse {
    let parser: HTTPHeadParser
    let buffer: RawBuffer
    let outcome: HTTPHeadParser.Outcome
    /// How many bytes were available when the parser gave a verdict other than `.incomplete`.
    let verdictAt: Int?

    func text(_ range: ByteRange) -> String {
        String(decoding: parser.bytes(range), as: UTF8.self)
    }

    /// The value of the first field with this name (any case), as text.
    func value(_ name: String) -> String? {
        for i in 0..<parser.fieldCount where text(parser.fields[i].name).lowercased() == name.lowercased() {
            return text(parser.fields[i].value)
        }
        return nil
    }

    /// The lowercase names of the fields a Connection header nominated.
    var nominatedNames: Set<String> {
        var names = Set<String>()
        for i in 0..<parser.fieldCount where parser.fields[i].nominatedByConnection {
            names.insert(text(parser.fields[i].name).lowercased())
        }
        return names
    }
}

enum Parse {
    /// Parses the bytes as one buffer, as a connection does when the whole head arrived in one read.
    static func whole(_ bytes: [UInt8], response: Bool = false) -> HeadParse {
        let buffer = RawBuffer(bytes)
        let parser = HTTPHeadParser()
        let outcome = response ? parser.parseResponse(buffer.pointer, bytes.count) : parser.parseRequest(buffer.pointer, bytes.count)
        return HeadParse(parser: parser, buffer: buffer, outcome: outcome, verdictAt: outcome == .incomplete ? nil : bytes.count)
    }

    /// Delivers the bytes one at a time into the same buffer and calls the parser with each growing
    /// prefix, keeping its scan position between calls, as a connection does with a slow client.
    /// Stops at the first verdict that is not `.incomplete`.
    static func byteByByte(_ bytes: [UInt8], response: Bool = false) -> HeadParse {
        let buffer = RawBuffer(fillerOfCount: bytes.count)
        let parser = HTTPHeadParser()
        parser.reset()
        for n in 1...max(1, bytes.count) where n <= bytes.count {
            buffer.pointer.storeBytes(of: bytes[n - 1], toByteOffset: n - 1, as: UInt8.self)
            let outcome = response ? parser.parseResponse(buffer.pointer, n) : parser.parseRequest(buffer.pointer, n)
            if outcome != .incomplete {
                return HeadParse(parser: parser, buffer: buffer, outcome: outcome, verdictAt: n)
            }
        }
        return HeadParse(parser: parser, buffer: buffer, outcome: .incomplete, verdictAt: nil)
    }
}

extension HTTPHeadParser.Outcome {
    var failure: HTTPParseError? {
        if case .failed(let error) = self { return error }
        return nil
    }
}

/// The error code that goes with each status the request parser answers itself.
func expectedCode(forStatus status: Int) -> StaticCode {
    switch status {
    case 431: .headersTooLarge
    case 501: .notImplemented
    case 502: .upstreamError
    default: .invalidRequest
    }
}

/// Appends "name: value\r\n" for each field to `text`, as the gateway renders a head from HTTP/2 fields, and returns
/// each field's name and value ranges in it (what `adoptRequest` and `adoptResponse` take).
func appendRenderedFields(_ fields: [(String, String)], to text: inout [UInt8]) -> [HeaderField] {
    var ranges: [HeaderField] = []
    for (name, value) in fields {
        let nameStart = text.count
        text += Array(name.utf8) + Array(": ".utf8)
        let valueStart = text.count
        text += Array(value.utf8) + Array("\r\n".utf8)
        ranges.append(HeaderField(name: ByteRange(start: Int32(nameStart), count: Int32(name.utf8.count)),
                                  value: ByteRange(start: Int32(valueStart), count: Int32(value.utf8.count))))
    }
    text += Array("\r\n".utf8)
    return ranges
}

/// The same fields, ranges, kinds and Connection nominations in both parsers.
func expectSameFields(_ adopted: HTTPHeadParser, _ parsed: HTTPHeadParser, sourceLocation: SourceLocation) {
    #expect(adopted.fieldCount == parsed.fieldCount, sourceLocation: sourceLocation)
    for i in 0..<min(adopted.fieldCount, parsed.fieldCount) {
        let a = adopted.fields[i], p = parsed.fields[i]
        #expect(a.name == p.name && a.value == p.value && a.kind == p.kind
                && a.nominatedByConnection == p.nominatedByConnection, "field \(i)", sourceLocation: sourceLocation)
    }
}
