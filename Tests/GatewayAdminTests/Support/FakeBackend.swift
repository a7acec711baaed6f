#if canImport(Glibc)
import Glibc
#endif
import GatewayAdmin
import GatewayConfig
import Synchronization

/// An in-memory `AdminBackend` that records what it was asked.
final class FakeBackend: AdminBackend {
    struct State {
        var ready = true
        var keys: [AdminKeyInfo] = []
        var groups: [AdminGroup] = [AdminGroup(name: "interns", models: ["gpt-4o-mini"], source: "config")]
        var nextID = 1
        var usageQueries: [AdminUsageQuery] = []
        var logQueries: [AdminLogQuery] = []
        var keyRequests: [AdminKeyRequest] = []
        var reloadError: AdminError?
        var reloads = 0
        var usageDelayMs = 0
        var failNextWith: String?
    }

    let state = Mutex(State())
    let metrics: @Sendable () -> String

    init(metrics: @escaping @Sendable () -> String = { "# HELP x y\n# TYPE x gauge\nx 1\n" }) {
        self.metrics = metrics
    }

    var isReady: Bool { state.withLock { $0.ready } }

    func metricsText() -> String { metrics() }

    func createKey(_ request: AdminKeyRequest) throws -> AdminCreatedKey {
        try state.withLock { state in
            for group in request.groups where !state.groups.contains(where: { $0.name == group }) {
                throw AdminError.invalid("'groups' names an unknown group '\(group)'", param: "groups")
            }
            state.keyRequests.append(request)
            let id = "key_\(state.nextID)"
            state.nextID += 1
            let info = AdminKeyInfo(
                id: id, name: request.name, groups: request.groups, limits: request.limits, budget: request.budget,
                expires: request.expires?.text, createdAt: 1_767_225_600, source: "api", hint: "sk-…\(id.suffix(2))")
            state.keys.append(info)
            return AdminCreatedKey(key: "sk-secret-\(id)", info: info)
        }
    }

    func listKeys() throws -> [AdminKeyInfo] { state.withLock { $0.keys } }

    func revokeKey(id: String) throws -> Bool {
        state.withLock { state in
            guard let index = state.keys.firstIndex(where: { $0.id == id && !$0.revoked }) else { return false }
            state.keys[index].revoked = true
            return true
        }
    }

    func listGroups() throws -> [AdminGroup] { state.withLock { $0.groups } }

    func getGroup(name: String) throws -> AdminGroup? { state.withLock { $0.groups.first { $0.name == name } } }

    func putGroup(_ group: AdminGroup) throws {
        state.withLock { state in
            var stored = group
            stored.source = "api"
            if let index = state.groups.firstIndex(where: { $0.name == group.name }) {
                state.groups[index] = stored
            } else {
                state.groups.append(stored)
            }
        }
    }

    func deleteGroup(name: String) throws -> Bool {
        state.withLock { state in
            guard let index = state.groups.firstIndex(where: { $0.name == name }) else { return false }
            state.groups.remove(at: index)
            return true
        }
    }

    struct Boom: Error, CustomStringConvertible {
        var description: String
    }

    func usageJSON(_ query: AdminUsageQuery) throws -> String {
        let (delay, failure) = state.withLock { state in
            state.usageQueries.append(query)
            let failure = state.failNextWith
            state.failNextWith = nil
            return (state.usageDelayMs, failure)
        }
        if delay > 0 { usleep(UInt32(delay * 1000)) }
        if let failure { throw Boom(description: failure) }
        return #"{"by":"\#(query.by.rawValue)","data":[]}"#
    }

    func logsJSON(_ query: AdminLogQuery) throws -> String {
        state.withLock { $0.logQueries.append(query) }
        return #"{"data":[{"request_id":"r1"}]}"#
    }

    func reload() throws -> String {
        try state.withLock { state in
            if let error = state.reloadError { throw error }
            state.reloads += 1
            return #"{"status":"reloaded","generation":\#(state.reloads)}"#
        }
    }
}
