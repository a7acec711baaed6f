import GatewayJSON
import Testing

/// GatewayJSON's writing of values and doubles.
@Suite struct JSONWritingTests {
    @Test func valuesRoundTrip() throws {
        let text = #"{"b":[1,-2.5,1e-07,true,null,"q\"\\\n😀"],"a":{"z":{},"y":[]},"big":9007199254740993}"#
        let value = try #require(JSONValue.parse(text))
        let written = value.serialized()
        #expect(written.withUnsafeBytes { JSONValue.parse(bytes: $0) } == value)
        #expect(value.objectMembers?.map(\.0) == ["b", "a", "big"], "document order")
        #expect(value["big"] == .int(9_007_199_254_740_993), "exact integers")
    }

    @Test(arguments: [(0.7, "0.7"), (-2.5, "-2.5"), (1e-07, "1e-07"), (5.0, "5.0"), (.infinity, "null"), (.nan, "null")])
    func doubles(value: Double, text: String) {
        var writer = JSONWriter()
        writer.double(value)
        #expect(writer.text == text)
        if value.isFinite { #expect(JSONValue.parse(text)?.doubleValue == value) }
    }

    @Test func numbersReadAsDoubles() {
        #expect(JSONValue.int(3).doubleValue == 3)
        #expect(JSONValue.double(0.25).doubleValue == 0.25)
        #expect(JSONValue.string("3").doubleValue == nil)
    }
}
