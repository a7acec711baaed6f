import Testing

@testable import GatewayHTTP

/// A scan and the body it ran on, with its ranges turned back into text.
struct Scanned {
    let body: [UInt8]
    let result: JSONFieldScanner.Result

    init(_ text: String) { self.init(bytes: text.bytes) }

    init(bytes: [UInt8]) {
        body = bytes
        result = bytes.withUnsafeBytes { JSONFieldScanner.scan($0) }
    }

    var model: String? { result.model.map { String(decoding: body[$0], as: UTF8.self) } }
    var streamOptions: String? { result.streamOptions.map { String(decoding: body[$0], as: UTF8.self) } }
}

struct ScanCase: Sendable, CustomTestStringConvertible {
    let name: String
    let json: String
    var model: String?
    var stream: Bool?
    var isObject = true
    var testDescription: String { name }
}

enum ScanCases {
    static let cases: [ScanCase] = [
        ScanCase(name: "model first", json: #"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#, model: "gpt-4o"),
        ScanCase(name: "model last", json: #"{"messages":[{"role":"user","content":"hi"}],"temperature":0.5,"model":"gpt-4o-mini"}"#, model: "gpt-4o-mini"),
        ScanCase(name: "model in the middle", json: #"{"n":1,"model":"m","max_tokens":10}"#, model: "m"),
        ScanCase(name: "nested decoy before model", json: #"{"messages":[{"role":"user","model":"decoy"}],"model":"real"}"#, model: "real"),
        ScanCase(name: "nested decoy after model", json: #"{"model":"real","messages":[{"model":"decoy"}]}"#, model: "real"),
        ScanCase(name: "nested decoy only", json: #"{"messages":[{"role":"user","model":"decoy"}]}"#, model: nil),
        ScanCase(name: "decoy in nested object", json: #"{"metadata":{"model":"decoy","stream":true}}"#, model: nil, stream: nil),
        ScanCase(name: "deeply nested decoy", json: #"{"tools":[{"function":{"parameters":{"properties":{"model":{"type":"string"}}}}}],"model":"y"}"#, model: "y"),
        ScanCase(name: "model as a value, not a key", json: #"{"name":"model","x":["model",":","gpt"]}"#, model: nil),
        ScanCase(name: "escaped quotes around a fake key", json: #"{"content":"he said \"model\":\"decoy\"","model":"real"}"#, model: "real"),
        ScanCase(name: "escaped backslash before closing quote", json: #"{"content":"path C:\\","model":"real"}"#, model: "real"),
        ScanCase(name: "brackets inside nested strings", json: #"{"messages":[{"content":"}]}{\"model\":\"x\""}],"model":"y"}"#, model: "y"),
        ScanCase(name: "unicode escapes in content", json: #"{"content":"\u007b\"model\":\"x\"\u007d","model":"y"}"#, model: "y"),
        ScanCase(name: "model that is not a string", json: #"{"model":42,"stream":true}"#, model: nil, stream: true),
        ScanCase(name: "model null", json: #"{"model":null}"#, model: nil),
        ScanCase(name: "empty model", json: #"{"model":""}"#, model: ""),
        ScanCase(name: "UTF-8 model", json: #"{"model":"mödel-☃"}"#, model: "mödel-☃"),
        ScanCase(name: "duplicate model: the last wins, as in most JSON parsers", json: #"{"model":"a","model":"b"}"#, model: "b"),
        ScanCase(name: "escaped key spelling model", json: #"{"model":"cheap","mod\u0065l":"expensive"}"#, model: "expensive"),
        ScanCase(name: "fully escaped key", json: #"{"\u006d\u006f\u0064\u0065\u006c":"m"}"#, model: "m"),
        ScanCase(name: "escaped key that is not model", json: #"{"model":"m","model\u0000":"x","mode\"l":"y"}"#, model: "m"),
        ScanCase(name: "escaped key spelling stream", json: #"{"model":"m","stream":false,"str\u0065am":true}"#, model: "m", stream: true),
        ScanCase(name: "key is a prefix of model", json: #"{"mode":"x","models":"y"}"#, model: nil),
        ScanCase(name: "stream true", json: #"{"model":"m","stream":true}"#, model: "m", stream: true),
        ScanCase(name: "stream false", json: #"{"stream":false,"model":"m"}"#, model: "m", stream: false),
        ScanCase(name: "stream absent", json: #"{"model":"m"}"#, model: "m", stream: nil),
        ScanCase(name: "stream as a string", json: #"{"model":"m","stream":"true"}"#, model: "m", stream: nil),
        ScanCase(name: "stream 1", json: #"{"model":"m","stream":1}"#, model: "m", stream: nil),
        ScanCase(name: "stream null", json: #"{"model":"m","stream":null}"#, model: "m", stream: nil),
        ScanCase(name: "stream true, last key, whitespace", json: "{\"model\":\"m\",\"stream\" :\ttrue\n}", model: "m", stream: true),
        ScanCase(name: "whitespace everywhere", json: " \n\t{ \r\n\"model\" \t:\n \"m\" ,\n \"stream\" : false \n} \r\n", model: "m", stream: false),
        ScanCase(name: "empty object", json: "{}", model: nil),
        ScanCase(name: "empty object with whitespace", json: " { \n } ", model: nil),
        // Not objects.
        ScanCase(name: "array", json: #"[{"model":"m"}]"#, model: nil, isObject: false),
        ScanCase(name: "string", json: #""model""#, model: nil, isObject: false),
        ScanCase(name: "number", json: "42", model: nil, isObject: false),
        ScanCase(name: "null", json: "null", model: nil, isObject: false),
        ScanCase(name: "empty body", json: "", model: nil, isObject: false),
        ScanCase(name: "whitespace only", json: " \r\n", model: nil, isObject: false),
        ScanCase(name: "form-encoded body", json: "model=gpt-4o&stream=true", model: nil, isObject: false),
        // Malformed or truncated: not an object, whatever the prefix held.
        ScanCase(name: "truncated after model", json: #"{"model":"gpt-4o""#, model: "gpt-4o", isObject: false),
        ScanCase(name: "truncated inside model", json: #"{"model":"gpt"#, model: nil, isObject: false),
        ScanCase(name: "truncated inside nested", json: #"{"messages":[{"content":"hi"}"#, model: nil, isObject: false),
        ScanCase(name: "truncated after comma", json: #"{"model":"m","#, model: "m", isObject: false),
        ScanCase(name: "trailing garbage", json: #"{"model":"m"}x"#, model: "m", isObject: false),
        ScanCase(name: "two objects", json: #"{"model":"m"}{"model":"n"}"#, model: "m", isObject: false),
        ScanCase(name: "trailing comma", json: #"{"model":"m",}"#, model: "m", isObject: false),
        ScanCase(name: "missing colon", json: #"{"model" "m"}"#, model: nil, isObject: false),
        ScanCase(name: "missing comma", json: #"{"stream":true "model":"m"}"#, model: nil, stream: true, isObject: false),
        ScanCase(name: "unquoted key", json: #"{model:"m"}"#, model: nil, isObject: false),
        ScanCase(name: "control byte in a string", json: "{\"content\":\"a\u{01}b\",\"model\":\"m\"}", model: nil, isObject: false),
        ScanCase(name: "raw newline in model", json: "{\"model\":\"m\nx\"}", model: nil, isObject: false),
        ScanCase(name: "missing value", json: #"{"model":}"#, model: nil, isObject: false),
        ScanCase(name: "unterminated escape", json: #"{"model":"m\"#, model: nil, isObject: false),
    ]
}

@Suite("JSON field scanner")
struct JSONFieldScannerTests {
    @Test("finds model and stream at the top level only", arguments: ScanCases.cases)
    func table(_ testCase: ScanCase) {
        let scan = Scanned(testCase.json)
        #expect(scan.model == testCase.model)
        #expect(scan.result.stream == testCase.stream)
        #expect(scan.result.isObject == testCase.isObject)
    }

    @Test("the model range points at the string's contents, without quotes")
    func modelRange() throws {
        let scan = Scanned(#"  {"model" : "gpt-4o"}"#)
        let range = try #require(scan.result.model)
        #expect(range == 14..<20)
        #expect(scan.body[range.lowerBound - 1] == UInt8(ascii: "\""))
        #expect(scan.body[range.upperBound] == UInt8(ascii: "\""))
    }

    @Test("escapes in the model are flagged, and the range holds them raw")
    func modelEscapes() {
        let escaped = Scanned(#"{"model":"gpt\u002d4\"x"}"#)
        #expect(escaped.model == #"gpt\u002d4\"x"#)
        #expect(escaped.result.modelHasEscapes)
        let plain = Scanned(#"{"content":"a\"b","model":"gpt-4"}"#)
        #expect(plain.model == "gpt-4")
        #expect(!plain.result.modelHasEscapes)
    }

    @Test("stream_options is the whole value's range")
    func streamOptions() {
        let scan = Scanned(#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"n":1}"#)
        #expect(scan.streamOptions == #"{"include_usage":true}"#)
        #expect(scan.result.stream == true)
        let spaced = Scanned(#"{ "stream_options" :  { "a" : [1, {"b":"}"}] }  , "model":"m" }"#)
        #expect(spaced.streamOptions == #"{ "a" : [1, {"b":"}"}] }"#)
        #expect(spaced.model == "m")
        #expect(spaced.result.isObject)
        let scalar = Scanned(#"{"stream_options":null}"#)
        #expect(scalar.streamOptions == "null")
        #expect(Scanned(#"{"model":"m"}"#).streamOptions == nil)
        #expect(Scanned(#"{"x":{"stream_options":{}}}"#).streamOptions == nil)
    }

    @Test("a 1 MB body with the model at the very end")
    func largeBody() {
        // A long message full of things that look like JSON: quotes, braces, escaped decoys.
        let filler = String(repeating: #"lorem {[\"model\":\"decoy\"]} \\ ipsum "#, count: 1_048_576 / 36)
        let json = #"{"messages":[{"role":"user","content":""# + filler + #""},{"role":"assistant","model":"decoy"}],"stream":true,"model":"the-real-one"}"#
        #expect(json.utf8.count > 1_000_000)
        let scan = Scanned(json)
        #expect(scan.model == "the-real-one")
        #expect(scan.result.stream == true)
        #expect(scan.result.isObject)
        // The same body cut anywhere before its end is not an object.
        let cut = Scanned(bytes: Array(json.utf8.dropLast(2)))
        #expect(!cut.result.isObject)
    }

    @Test("every truncation of a valid body is flagged as not an object")
    func everyTruncation() {
        let json = #"{"model":"m","messages":[{"role":"user","content":"a \"q\" {x}"}],"stream":false,"stream_options":{"include_usage":true}}"#
        let bytes = Array(json.utf8)
        #expect(Scanned(bytes: bytes).result.isObject)
        for end in 0..<bytes.count {
            let scan = Scanned(bytes: Array(bytes.prefix(end)))
            #expect(!scan.result.isObject, "prefix of \(end) bytes")
            if let model = scan.model { #expect(model == "m") }
        }
    }

    private static func isStringSpecial(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20
    }

    @Test("the eight-byte string test finds the first special byte: every byte at every position, and random words")
    func wordTestFindsTheFirstSpecialByte() {
        func firstFlagged(_ word: UInt64) -> Int? {
            let specials = JSONCursor.stringSpecials(word)
            return specials == 0 ? nil : specials.trailingZeroBitCount / 8
        }
        for position in 0..<8 {
            for value in 0...255 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[position] = UInt8(value)
                let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                #expect(firstFlagged(word) == (Self.isStringSpecial(UInt8(value)) ? position : nil),
                        "byte \(value) at \(position)")
            }
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<200_000 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            let bytes = withUnsafeBytes(of: state.littleEndian) { Array($0) }
            #expect(firstFlagged(state) == bytes.firstIndex(where: Self.isStringSpecial))
        }
    }

    @Test("a string ends, escapes or fails at its first special byte, wherever that falls in an eight-byte word")
    func stringSpecialsAtEveryOffset() {
        for lead in 0..<24 {
            let prefix = String(repeating: "é", count: lead / 2) + String(repeating: "x", count: lead % 2)
            func scan(_ rest: [UInt8]) -> (Range<Int>, Bool)? {
                let text = [UInt8(ascii: "\"")] + Array(prefix.utf8) + rest
                return text.withUnsafeBytes { raw in
                    var cursor = JSONCursor(bytes: raw)
                    return cursor.string()
                }
            }
            let contents = prefix.utf8.count
            let tail = Array("yyyyyyyyyyyy\"".utf8)
            #expect(scan(Array("\"".utf8) + tail).map { $0.0 } == 1..<(1 + contents), "lead \(lead)")
            #expect(scan(Array("\\n".utf8) + tail).map { $0.1 } == true, "lead \(lead)")
            #expect(scan(Array("\\\"".utf8) + tail).map { $0.0.count } == contents + 2 + tail.count - 1, "lead \(lead)")
            #expect(scan([0x01] + tail) == nil, "lead \(lead)")
            #expect(scan(Array(prefix.utf8)) == nil, "lead \(lead): unterminated")
        }
    }
}
