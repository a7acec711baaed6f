/// The names behind the small integer ids that the hot path records with: model, group and deployment.
///
/// Id 0 of each list is reserved for "none" and renders as the empty label value (Prometheus reads an
/// empty value as "no such label"): a request rejected before its key or model was known counts there.
/// The configured names start at id 1, so no configured name can collide with it.
///
/// Ids are stable across reloads: `merging(models:groups:deployments:)` keeps every name's id and
/// appends new names, so a counter never moves to another series when the configuration changes.
public struct MetricsLabels: Sendable, Equatable {
    /// The id of "no model", "no group" and "no deployment".
    public static let none = 0

    public private(set) var models: [String]
    public private(set) var groups: [String]
    public private(set) var deployments: [String]

    private var modelIDs: [String: Int]
    private var groupIDs: [String: Int]
    private var deploymentIDs: [String: Int]

    /// - Parameters: the configured names, in the order that gives them ids 1, 2, …; duplicates are ignored.
    public init(models: [String] = [], groups: [String] = [], deployments: [String] = []) {
        self.models = [""]
        self.groups = [""]
        self.deployments = [""]
        modelIDs = [:]
        groupIDs = [:]
        deploymentIDs = [:]
        for name in models { _ = MetricsLabels.intern(name, into: &self.models, &modelIDs) }
        for name in groups { _ = MetricsLabels.intern(name, into: &self.groups, &groupIDs) }
        for name in deployments { _ = MetricsLabels.intern(name, into: &self.deployments, &deploymentIDs) }
    }

    /// The id of a model name, or `none` when the name is not known. Off the hot path: resolve ids once,
    /// when a configuration is built, and keep them beside the model.
    public func modelID(_ name: String) -> Int { modelIDs[name] ?? MetricsLabels.none }
    public func groupID(_ name: String) -> Int { groupIDs[name] ?? MetricsLabels.none }
    public func deploymentID(_ name: String) -> Int { deploymentIDs[name] ?? MetricsLabels.none }

    /// Labels for a new configuration: the names already here keep their ids, new names get new ids.
    /// Names that left the configuration stay, so the series they already have keep their values.
    public func merging(models: [String] = [], groups: [String] = [], deployments: [String] = []) -> MetricsLabels {
        var result = self
        for name in models { _ = MetricsLabels.intern(name, into: &result.models, &result.modelIDs) }
        for name in groups { _ = MetricsLabels.intern(name, into: &result.groups, &result.groupIDs) }
        for name in deployments { _ = MetricsLabels.intern(name, into: &result.deployments, &result.deploymentIDs) }
        return result
    }

    /// The name for an id; an id that no name has (a bug in the caller) renders as "#id", not as a crash.
    func model(_ id: Int) -> String { MetricsLabels.name(id, in: models) }
    func group(_ id: Int) -> String { MetricsLabels.name(id, in: groups) }
    func deployment(_ id: Int) -> String { MetricsLabels.name(id, in: deployments) }

    private static func name(_ id: Int, in names: [String]) -> String {
        id >= 0 && id < names.count ? names[id] : "#\(id)"
    }

    private static func intern(_ name: String, into names: inout [String], _ ids: inout [String: Int]) -> Int {
        if name.isEmpty { return MetricsLabels.none }
        if let id = ids[name] { return id }
        let id = names.count
        names.append(name)
        ids[name] = id
        return id
    }
}
