// A key as policy sees it, whichever place it came from: the config file or the admin API's store.
import GatewayConfig

/// One virtual key: who it is, what it may do, and the digest that authenticates it.
public struct KeyRecord: Sendable, Equatable {
    public enum Source: String, Sendable {
        case config, api
    }

    /// "cfg-<name>" for config keys; the store's id for API keys.
    public var id: String
    public var name: String
    public var groups: [String]
    public var limits: Limits?
    public var budget: Budget?
    /// Wall-clock seconds (UTC) from which the key no longer authenticates; nil for never.
    public var expires: Int64?
    public var revoked: Bool
    public var hash: KeyHash
    public var source: Source

    public init(
        id: String,
        name: String,
        groups: [String] = [],
        limits: Limits? = nil,
        budget: Budget? = nil,
        expires: Int64? = nil,
        revoked: Bool = false,
        hash: KeyHash,
        source: Source = .api
    ) {
        self.id = id
        self.name = name
        self.groups = groups
        self.limits = limits
        self.budget = budget
        self.expires = expires
        self.revoked = revoked
        self.hash = hash
        self.source = source
    }

    /// The record of a config key, or nil when its secret is unavailable (a `key_env` variable that is
    /// unset or empty, or a malformed hash): such a key cannot authenticate anyone.
    /// `expires: YYYY-MM-DD` means the key stops working at 00:00 UTC of that day.
    public init?(config key: KeySettings, environment: [String: String]) {
        let hash: KeyHash
        switch key.source {
        case .sha256Hex(let hex):
            guard let parsed = KeyHash(hex: hex) else { return nil }
            hash = parsed
        case .environment(let variable):
            guard let value = environment[variable], !value.isEmpty else { return nil }
            hash = KeyHash(of: value)
        case .plain(let value):
            hash = KeyHash(of: value)
        }
        var expires: Int64?
        if let text = key.expires {
            guard let seconds = CivilTime.secondsOfDate(text) else { return nil }
            expires = seconds
        }
        self.init(
            id: "cfg-" + key.name, name: key.name, groups: key.groups, limits: key.limits, budget: key.budget,
            expires: expires, revoked: false, hash: hash, source: .config)
    }
}

/// UTC calendar arithmetic without Foundation (Howard Hinnant's days-from-civil algorithms).
public enum CivilTime {
    /// Days since 1970-01-01 of a proleptic Gregorian date.
    public static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// (year, month, day) of a day number since 1970-01-01.
    public static func civil(days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    /// Seconds since the epoch of 00:00 UTC on "YYYY-MM-DD"; nil when the text is not such a date.
    public static func secondsOfDate(_ text: String) -> Int64? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
              (1...12).contains(month), day >= 1
        else { return nil }
        let seconds = days(year: year, month: month, day: day) * 86_400
        // Reject 2026-02-30 and the like: the date must survive the round trip.
        let back = civil(days: seconds / 86_400)
        guard back.year == year, back.month == month, back.day == day else { return nil }
        return seconds
    }
}
