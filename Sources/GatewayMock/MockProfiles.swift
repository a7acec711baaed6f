#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One provider that gwmock plays: requests to `/NAME/v1/...` take these settings over the command-line
/// defaults, and `x-mock-*` headers still override both. Several profiles let one gwmock stand in for several
/// deployments with different faults ("A answers 429 with retry-after 1, B succeeds").
public struct MockProfile: Sendable, Equatable {
    public var name: String
    /// Answer every model request with this status (0: answer normally).
    public var status = 0
    /// Seconds for a `retry-after` header on error responses; nil sends none.
    public var retryAfter: Int?
    public var latencyMs: Int?
    public var ttftMs: Int?
    public var itlMs: Int?
    public var chunks: Int?
    var fault = MockFault.none

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Parses `NAME:key=value,key=value` (the `--profile` flag).
    public init(flag: String) throws(ParseError) {
        let parts = flag.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        try self.init(name: String(parts[0]), settings: parts.count > 1 ? String(parts[1]) : "", separator: ",")
    }

    /// - Parameters:
    ///   - settings: `key=value` pairs (status, retry-after, latency-ms, ttft-ms, itl-ms, chunks, fault).
    ///   - separator: "," on the command line, "&" in a query string.
    init(name: String, settings: String, separator: Character) throws(ParseError) {
        guard MockProfile.isValidName(name) else {
            throw ParseError(description: "profile name \"\(name)\": use 1-64 letters, digits, '-' or '_'")
        }
        self.name = name
        for pair in settings.split(separator: separator) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(kv[0])
            let value = kv.count > 1 ? String(kv[1]) : ""
            func number(_ range: ClosedRange<Int>) throws(ParseError) -> Int {
                guard let n = Int(value), range.contains(n) else {
                    throw ParseError(description: "profile \(name): \(key) must be a number in \(range.lowerBound)...\(range.upperBound)")
                }
                return n
            }
            switch key {
            case "status":
                // 0 answers normally again (a recovered provider).
                status = try number(0...999)
                if status > 0 && status < 100 { throw ParseError(description: "profile \(name): status must be 0 or 100...999") }
            case "retry-after": retryAfter = try number(0...86_400)
            case "latency-ms": latencyMs = try number(0...600_000)
            case "ttft-ms": ttftMs = try number(0...600_000)
            case "itl-ms": itlMs = try number(0...600_000)
            case "chunks": chunks = try number(0...MockLimits.maxChunks)
            case "fault":
                switch value {
                case "none": fault = .none
                case "reset": fault = .reset
                case "stall": fault = .stall
                case "close-mid-body": fault = .closeMidBody
                default: throw ParseError(description: "profile \(name): fault must be none, reset, stall or close-mid-body")
                }
            default:
                throw ParseError(
                    description: "profile \(name): unknown setting \"\(key)\" (status, retry-after, latency-ms, ttft-ms, itl-ms, chunks, fault)")
            }
        }
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name != "v1" && name != "mock"
            && name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == 0x2D || byte == 0x5F
            }
    }

    /// Lays the profile over a request's starting plan.
    func apply(to plan: inout RequestPlan) {
        plan.status = status
        plan.retryAfter = retryAfter ?? -1
        if let latencyMs { plan.latencyNs = UInt64(latencyMs) * 1_000_000 }
        if let ttftMs { plan.ttftNs = UInt64(ttftMs) * 1_000_000 }
        if let itlMs { plan.itlNs = UInt64(itlMs) * 1_000_000 }
        if let chunks { plan.chunks = chunks }
        plan.fault = fault
    }
}

/// The profiles every thread reads. Set at startup and replaced by `POST /mock/profiles/NAME`; each thread
/// keeps its own copy and takes a new one only when the version moves (one atomic load per request).
final class MockProfiles: Sendable {
    private let table: Mutex<[MockProfile]>
    private let version = Atomic<UInt64>(1)

    init(_ profiles: [MockProfile]) {
        table = Mutex(profiles)
    }

    var currentVersion: UInt64 { version.load(ordering: .acquiring) }

    func snapshot() -> (profiles: [MockProfile], version: UInt64) {
        table.withLock { ($0, version.load(ordering: .acquiring)) }
    }

    /// Adds a profile, or replaces the one with its name.
    func set(_ profile: MockProfile) {
        table.withLock { profiles in
            if let index = profiles.firstIndex(where: { $0.name == profile.name }) {
                profiles[index] = profile
            } else {
                profiles.append(profile)
            }
            version.add(1, ordering: .releasing)
        }
    }
}

/// A thread's copy of the profiles, found by the bytes of a request target without allocating.
struct ProfileTable {
    private var entries: [(name: [UInt8], profile: MockProfile, index: Int)] = []
    private(set) var version: UInt64 = 0
    /// Every profile ever seen by this thread, in order; a profile's index into the per-thread counts.
    private(set) var names: [String] = []

    mutating func refresh(from shared: MockProfiles) {
        guard shared.currentVersion != version else { return }
        let (profiles, version) = shared.snapshot()
        entries = profiles.map { profile in
            if !names.contains(profile.name) { names.append(profile.name) }
            return (Array(profile.name.utf8), profile, names.firstIndex(of: profile.name)!)
        }
        self.version = version
    }

    /// The profile named by the first segment of `/NAME/rest`, with `rest` and the profile's counter index.
    func match(_ target: UnsafeRawBufferPointer) -> (profile: MockProfile, index: Int, rest: UnsafeRawBufferPointer)? {
        guard target.count > 1, target[0] == UInt8(ascii: "/"),
              let slash = target[1...].firstIndex(of: UInt8(ascii: "/")) else { return nil }
        let name = UnsafeRawBufferPointer(rebasing: target[1..<slash])
        for entry in entries where entry.name.count == name.count {
            let same = entry.name.withUnsafeBytes { memcmp($0.baseAddress!, name.baseAddress!, name.count) == 0 }
            if same { return (entry.profile, entry.index, UnsafeRawBufferPointer(rebasing: target[slash...])) }
        }
        return nil
    }
}
