import Foundation
import Testing
@testable import GatewayStore

/// The Foundation-free helpers: UTC calendar math and JSON.
@Suite struct FormatTests {
    @Test func calendarMatchesFoundation() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        // Foundation switches to the Julian calendar before October 1582: compare from 1600 on.
        for days in stride(from: Int64(-135_000), through: 800_000, by: 997) {
            let date = Date(timeIntervalSince1970: Double(days * 86_400))
            let parts = calendar.dateComponents([.year, .month, .day], from: date)
            let civil = UTCTime.civil(days: days)
            #expect(civil.year == parts.year && civil.month == parts.month && civil.day == parts.day)
            #expect(UTCTime.days(year: civil.year, month: civil.month, day: civil.day) == days)
        }
    }

    @Test func parseAndFormatDates() {
        #expect(UTCTime.parse("1970-01-01") == 0)
        #expect(UTCTime.parse("2024-02-29") == 1_709_164_800)
        #expect(UTCTime.parse("2024-02-30") == nil)
        #expect(UTCTime.parse("2025-01-31T12:30") == 1_738_326_600)
        #expect(UTCTime.parse("2025-01-31T12:30:15Z") == 1_738_326_615)
        #expect(UTCTime.parse("2025-01-31 12:30:15") == 1_738_326_615)
        #expect(UTCTime.parse("1738326615") == 1_738_326_615)
        #expect(UTCTime.parse("yesterday") == nil)
        #expect(UTCTime.parse("2025-13-01") == nil)
        #expect(UTCTime.format(unixNs: 1_738_326_615_123_456_789) == "2025-01-31T12:30:15.123Z")
        #expect(UTCTime.format(unixNs: -1) == "1969-12-31T23:59:59.999Z")
        #expect(UTCTime.startOfDay(1_738_326_615) == 1_738_281_600)
        #expect(UTCTime.startOfMonth(1_738_326_615) == UTCTime.parse("2025-01-01"))
        #expect(UTCTime.startOfMonth(UTCTime.parse("2024-03-01")!) == UTCTime.parse("2024-03-01"))
    }

    @Test func jsonRoundTripsThroughFoundation() throws {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("s", "quote \" backslash \\ newline \n tab \t ctl \u{01} é ✓ 😀")
        writer.field("n", Int64.min)
        writer.field("nil", nil as String?)
        writer.field("b", true)
        writer.key("cost")
        writer.micro(-5)
        writer.key("a")
        writer.beginArray()
        writer.int(1)
        writer.string("x")
        writer.beginObject()
        writer.endObject()
        writer.endArray()
        writer.endObject()
        let text = writer.text
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        #expect(object["s"] as? String == "quote \" backslash \\ newline \n tab \t ctl \u{01} é ✓ 😀")
        #expect((object["cost"] as? NSNumber)?.doubleValue == -0.000005)
        let parsed = try #require(JSONValue.parse(text))
        #expect(parsed["s"]?.stringValue == "quote \" backslash \\ newline \n tab \t ctl \u{01} é ✓ 😀")
        #expect(parsed["n"] == .int(Int64.min))
        #expect(parsed["nil"] == .null)
        #expect(parsed["a"] == .array([.int(1), .string("x"), .object([])]))
        #expect(JSONValue.parse("\"\\ud83d\\ude00 \\u00e9\"") == .string("😀 é"))
        #expect(JSONValue.parse("{\"a\":1,}") == nil)
        #expect(JSONValue.parse("[1 2]") == nil)
        #expect(JSONValue.parse(" {\"x\": [1.5e3, -2]} ")?["x"] == .array([.double(1500), .int(-2)]))
        #expect(formatMicro(1_234_567) == "1.234567")
        #expect(formatMicro(0) == "0.000000")
    }

    @Test func recordJSONRoundTrip() throws {
        let record = sampleRecord(3, body: true)
        var writer = JSONWriter()
        record.writeJSON(to: &writer)
        let parsed = try #require(JSONValue.parse(writer.text))
        #expect(AuditRecord(json: parsed) == record)
        #expect(AuditRecord(tags: " a=1 , ,b=2,").tagPairs == ["a=1", "b=2"])
    }
}

private extension AuditRecord {
    init(tags: String) { self.init(requestID: "t", tags: tags, startNs: 0, endNs: 0, status: 200) }
}
