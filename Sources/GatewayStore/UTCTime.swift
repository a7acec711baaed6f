#if canImport(Glibc)
import Glibc
#endif

/// UTC calendar arithmetic without Foundation: days since the Unix epoch ⇄ year, month, day
/// (Howard Hinnant's `days_from_civil` / `civil_from_days`, exact for the proleptic Gregorian calendar).
public enum UTCTime {
    public static let nanosecondsPerSecond: Int64 = 1_000_000_000
    public static let secondsPerDay: Int64 = 86_400

    /// The wall clock, in nanoseconds since the Unix epoch.
    public static func nowNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * nanosecondsPerSecond + Int64(ts.tv_nsec)
    }

    /// A monotonic clock in nanoseconds, for intervals.
    static func monotonicNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * nanosecondsPerSecond + Int64(ts.tv_nsec)
    }

    /// Days since 1970-01-01 of a civil date.
    public static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The civil date of a day number (days since 1970-01-01).
    public static func civil(days: Int64) -> (year: Int, month: Int, day: Int) {
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

    /// Floor division, so that instants before 1970 land on the right day.
    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// The start (00:00 UTC) of the day containing `unixSeconds`.
    public static func startOfDay(_ unixSeconds: Int64) -> Int64 {
        floorDiv(unixSeconds, secondsPerDay) * secondsPerDay
    }

    /// The start (the 1st, 00:00 UTC) of the month containing `unixSeconds`.
    public static func startOfMonth(_ unixSeconds: Int64) -> Int64 {
        let date = civil(days: floorDiv(unixSeconds, secondsPerDay))
        return days(year: date.year, month: date.month, day: 1) * secondsPerDay
    }

    /// Parses a report boundary, in UTC:
    /// `2025-01-31`, `2025-01-31T12:00`, `2025-01-31T12:00:00`, `2025-01-31 12:00:00`, each optionally ending in `Z`,
    /// or an integer number of seconds since the epoch.
    /// - Returns: seconds since the Unix epoch, or nil when the text is none of these.
    public static func parse(_ text: String) -> Int64? {
        var bytes = Array(text.utf8)
        if bytes.isEmpty { return nil }
        let unsignedDigits = bytes.dropFirst(bytes[0] == UInt8(ascii: "-") ? 1 : 0)
        if !unsignedDigits.isEmpty, unsignedDigits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            return Int64(text)
        }
        if bytes.last == UInt8(ascii: "Z") || bytes.last == UInt8(ascii: "z") { bytes.removeLast() }
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[from..<from + count] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard bytes.count >= 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month) else { return nil }
        var seconds = days(year: year, month: month, day: day) * secondsPerDay
        if bytes.count == 10 { return seconds }
        guard bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t") || bytes[10] == UInt8(ascii: " "),
              bytes.count == 16 || bytes.count == 19,
              bytes[13] == UInt8(ascii: ":"), let hour = number(11, 2), let minute = number(14, 2),
              hour < 24, minute < 60 else { return nil }
        var second = 0
        if bytes.count == 19 {
            guard bytes[16] == UInt8(ascii: ":"), let s = number(17, 2), s < 60 else { return nil }
            second = s
        }
        seconds += Int64(hour * 3600 + minute * 60 + second)
        return seconds
    }

    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// RFC 3339 in UTC with milliseconds: `2025-01-31T12:00:00.123Z`.
    public static func format(unixNs: Int64) -> String {
        let seconds = floorDiv(unixNs, nanosecondsPerSecond)
        let millis = (unixNs - seconds * nanosecondsPerSecond) / 1_000_000
        let date = civil(days: floorDiv(seconds, secondsPerDay))
        let secondOfDay = seconds - floorDiv(seconds, secondsPerDay) * secondsPerDay
        func pad(_ value: Int64, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return pad(Int64(date.year), 4) + "-" + pad(Int64(date.month), 2) + "-" + pad(Int64(date.day), 2)
            + "T" + pad(secondOfDay / 3600, 2) + ":" + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2)
            + "." + pad(millis, 3) + "Z"
    }
}
