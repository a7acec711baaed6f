/// A point in time given to the admin API, as written and as Unix seconds (UTC).
public struct AdminInstant: Sendable, Equatable {
    /// The text the caller sent ("2026-01-31", "2026-01-31T12:00:00Z", or Unix seconds).
    public var text: String
    public var unixSeconds: Int64

    public init(text: String, unixSeconds: Int64) {
        self.text = text
        self.unixSeconds = unixSeconds
    }

    /// Parses the forms the admin API accepts:
    /// - a date, `YYYY-MM-DD`, meaning its midnight UTC;
    /// - an RFC 3339 time, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (a space may replace the `T`);
    /// - Unix seconds, digits only.
    /// - Returns: nil when the text is none of these, or names a day that does not exist.
    public static func parse(_ text: String) -> AdminInstant? {
        let bytes = Array(text.utf8)
        if !bytes.isEmpty, bytes.count <= 12, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let seconds = Int64(text) {
            return AdminInstant(text: text, unixSeconds: seconds)
        }
        guard bytes.count >= 10, let date = parseDate(bytes) else { return nil }
        var seconds = UTC.daysFromCivil(year: date.year, month: date.month, day: date.day) * 86_400
        if bytes.count == 10 { return AdminInstant(text: text, unixSeconds: seconds) }
        // "THH:MM:SS"
        guard bytes.count >= 20, bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t") || bytes[10] == UInt8(ascii: " "),
              let hour = number(bytes, 11, 2), bytes[13] == UInt8(ascii: ":"),
              let minute = number(bytes, 14, 2), bytes[16] == UInt8(ascii: ":"),
              let second = number(bytes, 17, 2), hour < 24, minute < 60, second < 61 else { return nil }
        seconds += Int64(hour * 3600 + minute * 60 + min(second, 59))
        var p = 19
        if bytes[p] == UInt8(ascii: ".") {
            p += 1
            let start = p
            while p < bytes.count, bytes[p] >= 0x30 && bytes[p] <= 0x39 { p += 1 }
            guard p > start else { return nil }
        }
        guard p < bytes.count else { return nil }
        switch bytes[p] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard p + 1 == bytes.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard p + 6 == bytes.count, let offsetHours = number(bytes, p + 1, 2), bytes[p + 3] == UInt8(ascii: ":"),
                  let offsetMinutes = number(bytes, p + 4, 2), offsetHours < 24, offsetMinutes < 60 else { return nil }
            let offset = Int64(offsetHours * 3600 + offsetMinutes * 60)
            seconds += bytes[p] == UInt8(ascii: "+") ? -offset : offset
        default:
            return nil
        }
        return AdminInstant(text: text, unixSeconds: seconds)
    }

    /// "YYYY-MM-DD" at the start of `bytes`, checked to be a real day.
    static func parseDate(_ bytes: [UInt8]) -> (year: Int, month: Int, day: Int)? {
        guard bytes.count >= 10, let year = number(bytes, 0, 4), bytes[4] == UInt8(ascii: "-"),
              let month = number(bytes, 5, 2), bytes[7] == UInt8(ascii: "-"), let day = number(bytes, 8, 2),
              (1...12).contains(month), day >= 1, day <= UTC.daysIn(month: month, year: year) else { return nil }
        return (year, month, day)
    }

    private static func number(_ bytes: [UInt8], _ start: Int, _ count: Int) -> Int? {
        guard start + count <= bytes.count else { return nil }
        var value = 0
        for i in start..<(start + count) {
            let digit = bytes[i] &- 0x30
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}

/// Calendar arithmetic in UTC, without Foundation.
enum UTC {
    /// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// RFC 3339 in UTC: "2026-01-31T12:00:00Z".
    static func format(unixSeconds: Int64) -> String {
        let days = unixSeconds >= 0 ? unixSeconds / 86_400 : (unixSeconds - 86_399) / 86_400
        let rest = unixSeconds - days * 86_400
        let (year, month, day) = civil(fromDays: days)
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : String(value) }
        let yearText = String(year)
        return String(repeating: "0", count: max(0, 4 - yearText.count)) + yearText + "-" + two(Int64(month)) + "-"
            + two(Int64(day)) + "T" + two(rest / 3600) + ":" + two(rest % 3600 / 60) + ":" + two(rest % 60) + "Z"
    }
}
