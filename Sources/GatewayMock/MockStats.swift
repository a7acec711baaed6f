#if canImport(Glibc)
import Glibc
#endif
import GatewayIO
import Synchronization

/// One reactor thread's counters, touched only on that thread: counting a request is a few plain adds.
/// `/mock/stats` collects a snapshot from every thread through `EventLoop.execute` (see `StatsGather`).
final class ThreadStats {
    var requests = 0
    var connections = 0
    /// TLS handshakes completed, and how many of them resumed a session.
    var tlsHandshakes = 0
    var tlsResumed = 0
    /// HTTP/2 connections and streams, and the most streams open at once on one connection.
    var h2Connections = 0
    var h2Streams = 0
    var h2MaxConcurrent = 0
    var byPath = [Int](repeating: 0, count: MockEndpoint.allCases.count)
    var models = ModelCounts()
    /// Requests per profile, by the thread's profile index; `profileNames` names them.
    private var byProfile: [Int] = []
    var profileNames: [String] = []

    func countProfile(_ index: Int) {
        if index >= byProfile.count { byProfile += [Int](repeating: 0, count: index + 1 - byProfile.count) }
        byProfile[index] += 1
    }

    func snapshot() -> StatsSnapshot {
        var profiles: [String: Int] = [:]
        for (index, count) in byProfile.enumerated() where index < profileNames.count { profiles[profileNames[index]] = count }
        return StatsSnapshot(
            requests: requests, connections: connections, tlsHandshakes: tlsHandshakes, tlsResumed: tlsResumed,
            h2Connections: h2Connections, h2Streams: h2Streams, h2MaxConcurrent: h2MaxConcurrent, byPath: byPath, byModel: models.dictionary(), byProfile: profiles)
    }
}

/// A count per model name: an open-addressing table keyed by the name's bytes, so that counting a model
/// already seen allocates nothing. Only a new name allocates (its key).
struct ModelCounts {
    private struct Entry {
        var hash: UInt64
        var name: [UInt8]
        var count: Int
    }

    /// Distinct names kept; later ones are counted under "(other)".
    static let maxNames = 10_000
    private var slots = [Entry?](repeating: nil, count: 64)
    private var used = 0
    private var overflow = 0

    mutating func increment(_ name: UnsafeRawBufferPointer) {
        let hash = ModelCounts.hash(name)
        let mask = slots.count - 1
        var index = Int(truncatingIfNeeded: hash) & mask
        while slots[index] != nil {
            if slots[index]!.hash == hash, ModelCounts.equal(slots[index]!.name, name) {
                slots[index]!.count += 1
                return
            }
            index = (index + 1) & mask
        }
        guard used < ModelCounts.maxNames else {
            overflow += 1
            return
        }
        slots[index] = Entry(hash: hash, name: Array(name), count: 1)
        used += 1
        if used * 2 > slots.count { grow() }
    }

    private mutating func grow() {
        let old = slots
        slots = [Entry?](repeating: nil, count: old.count * 2)
        let mask = slots.count - 1
        for case let entry? in old {
            var index = Int(truncatingIfNeeded: entry.hash) & mask
            while slots[index] != nil { index = (index + 1) & mask }
            slots[index] = entry
        }
    }

    func dictionary() -> [String: Int] {
        var result: [String: Int] = [:]
        for case let entry? in slots { result[String(decoding: entry.name, as: UTF8.self)] = entry.count }
        if overflow > 0 { result["(other)"] = overflow }
        return result
    }

    @inline(__always)
    private static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    @inline(__always)
    private static func equal(_ name: [UInt8], _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard name.count == bytes.count else { return false }
        guard let base = bytes.baseAddress else { return true }
        return name.withUnsafeBytes { memcmp($0.baseAddress!, base, bytes.count) == 0 }
    }
}

/// The counters of one thread, or the sum of all, as plain values that can cross threads.
struct StatsSnapshot: Sendable {
    var requests = 0
    var connections = 0
    var tlsHandshakes = 0
    var tlsResumed = 0
    var h2Connections = 0
    var h2Streams = 0
    var h2MaxConcurrent = 0
    var byPath = [Int](repeating: 0, count: MockEndpoint.allCases.count)
    var byModel: [String: Int] = [:]
    var byProfile: [String: Int] = [:]

    mutating func add(_ other: StatsSnapshot) {
        requests += other.requests
        connections += other.connections
        tlsHandshakes += other.tlsHandshakes
        tlsResumed += other.tlsResumed
        h2Connections += other.h2Connections
        h2Streams += other.h2Streams
        h2MaxConcurrent = max(h2MaxConcurrent, other.h2MaxConcurrent)
        for i in byPath.indices { byPath[i] += other.byPath[i] }
        byModel.merge(other.byModel, uniquingKeysWith: +)
        byProfile.merge(other.byProfile, uniquingKeysWith: +)
    }

    /// `{"requests":N,"connections":N,"by_path":{…},"by_model":{…},"by_profile":{…},"tls":{"handshakes":N,"resumed":N},
    /// "h2":{"connections":N,"streams":N,"max_concurrent":N}}`. Every known path appears, 0 or not;
    /// model names are sorted. Names are echoed as the requests spelled them, escapes included.
    func json() -> [UInt8] {
        var text = "{\"requests\":\(requests),\"connections\":\(connections),\"by_path\":{"
        for endpoint in MockEndpoint.allCases {
            if endpoint.rawValue > 0 { text += "," }
            text += "\"\(endpoint.path)\":\(byPath[endpoint.rawValue])"
        }
        text += "},\"by_model\":{"
        for (index, name) in byModel.keys.sorted().enumerated() {
            if index > 0 { text += "," }
            text += "\"\(name)\":\(byModel[name]!)"
        }
        text += "},\"by_profile\":{"
        for (index, name) in byProfile.keys.sorted().enumerated() {
            if index > 0 { text += "," }
            text += "\"\(name)\":\(byProfile[name]!)"
        }
        text += "},\"tls\":{\"handshakes\":\(tlsHandshakes),\"resumed\":\(tlsResumed)}"
        text += ",\"h2\":{\"connections\":\(h2Connections),\"streams\":\(h2Streams),\"max_concurrent\":\(h2MaxConcurrent)}}"
        return Array(text.utf8)
    }
}

/// A connection waiting for a `/mock/stats` answer.
protocol MockStatsWaiter: AnyObject {
    /// The summed counters, on the waiter's own loop. `token` tells which request asked.
    func statsReady(token: UInt64, body: [UInt8])
}

/// One `/mock/stats` request: asks every loop for its snapshot and, when the last one has answered,
/// hands the sum back to the connection on its own loop.
final class StatsGather: @unchecked Sendable {
    private struct Progress {
        var remaining: Int
        var total = StatsSnapshot()
    }

    private let progress: Mutex<Progress>
    private let origin: EventLoop
    /// Touched only on `origin`'s thread.
    private let waiter: any MockStatsWaiter
    private let token: UInt64

    init(loops: Int, origin: EventLoop, waiter: any MockStatsWaiter, token: UInt64) {
        progress = Mutex(Progress(remaining: loops))
        self.origin = origin
        self.waiter = waiter
        self.token = token
    }

    /// Asks each loop for its counters.
    func start(_ shared: MockShared) {
        for context in shared.contexts {
            context.loop.execute { loop in
                self.add(shared.contexts[loop.index].stats.snapshot())
            }
        }
    }

    private func add(_ snapshot: StatsSnapshot) {
        let finished: StatsSnapshot? = progress.withLock { progress in
            progress.total.add(snapshot)
            progress.remaining -= 1
            return progress.remaining == 0 ? progress.total : nil
        }
        guard let finished else { return }
        let body = finished.json()
        origin.execute { _ in self.waiter.statsReady(token: self.token, body: body) }
    }
}
