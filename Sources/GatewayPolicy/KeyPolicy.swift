// What a snapshot knows about one key, compiled for the request path.
import GatewayConfig

/// One key's compiled policy: identity for the audit record, the models it may use (one flag per
/// config model, so the check is an array read), and its limit scopes (its own, then each group's).
/// Immutable (hence @unchecked Sendable: its scope memory is written once, in init); a reload or an
/// admin change builds new ones. In-flight requests keep the one they were admitted with, whose
/// counters are the same shared cells.
public final class KeyPolicy: @unchecked Sendable {
    public let id: String
    public let name: String
    /// The key's groups that exist, in the key's order.
    public let groups: [String]
    /// Wall-clock seconds from which the key is refused; nil for never.
    public let expires: Int64?
    public let source: KeyRecord.Source
    /// The period of the key's own budget, if it has one (spend is rebuilt per period at startup).
    public let budgetPeriod: BudgetPeriod?
    /// Store this key's request and response bodies with its audit records (a group asked for it).
    public let logBodies: Bool
    let hash: KeyHash
    /// Indexed by config model index.
    let allowed: [Bool]
    /// The config model indexes the key may use, in config order.
    public let allowedModelIndexes: [Int]
    /// The union of the groups' patterns, as bytes (for names no model carries).
    let patterns: [[UInt8]]
    /// Scope 0 is the key itself; scopes 1... are its groups (at most 64 in all). Plain values in
    /// memory this object owns, so the request path reads them without touching a reference count:
    /// with every reactor thread admitting for the same key, a retain of a shared object would be
    /// one more contended cache line per request.
    let scopes: UnsafeBufferPointer<LimitScope>
    /// What a refusal names, by scope ("requests per minute of key 'alice' (10)").
    let labels: [ScopeLabels]
    /// Keeps the cells alive for the scopes' pointers into them.
    private let cells: [LimiterCell]

    init(record: KeyRecord, groups: [GroupSettings], cells: [LimiterCell], modelNames: [String]) {
        id = record.id
        name = record.name
        self.groups = groups.map(\.name)
        expires = record.expires
        source = record.source
        budgetPeriod = record.budget?.period
        logBodies = groups.contains { $0.logBodies }
        hash = record.hash
        var patterns: [String] = []
        for group in groups {
            for pattern in group.models where !patterns.contains(pattern) { patterns.append(pattern) }
        }
        self.patterns = patterns.map { Array($0.utf8) }
        let allowed = modelNames.map { name in patterns.contains { globMatch(pattern: $0, name: name) } }
        self.allowed = allowed
        allowedModelIndexes = allowed.indices.filter { allowed[$0] }
        precondition(cells.count == groups.count + 1 && cells.count <= 64)
        var limits = [(record.limits, record.budget, "key '\(record.name)'")]
        limits += groups.map { ($0.limits, $0.budget, "group '\($0.name)'") }
        let scopes = UnsafeMutableBufferPointer<LimitScope>.allocate(capacity: cells.count)
        for i in cells.indices {
            (scopes.baseAddress! + i).initialize(to: LimitScope(cell: cells[i], limits: limits[i].0, budget: limits[i].1))
        }
        self.scopes = UnsafeBufferPointer(scopes)
        labels = limits.map { ScopeLabels(limits: $0.0, budget: $0.1, label: $0.2) }
        self.cells = cells
    }

    deinit {
        UnsafeMutableBufferPointer(mutating: scopes).deallocate()
    }

    /// True when a group pattern matches the name (used only for names no model carries).
    func patternsMatch(_ name: UnsafeRawBufferPointer) -> Bool {
        for pattern in patterns {
            let matched = pattern.withUnsafeBytes { byteGlobMatch($0, name) }
            if matched { return true }
        }
        return false
    }
}

/// One set of limits and the cell that counts against them: a key's own, or one of its groups'.
/// A trivial value: `cell` points into a LimiterCell that its KeyPolicy keeps alive.
struct LimitScope {
    let cell: UnsafeMutablePointer<CellCounters>
    /// 0 when there is no such limit.
    let rpm: Int
    /// Window nanoseconds per request (W / rpm).
    let requestCostNs: Int64
    let tpm: Int
    /// Window nanoseconds per token (W / tpm).
    let tokenCostNs: Int64
    let concurrency: Int
    /// Negative when there is no budget.
    let budgetMicroUSD: Int64
    let period: BudgetPeriod

    init(cell: LimiterCell, limits: Limits?, budget: Budget?) {
        self.cell = cell.counters
        let rpm = max(0, limits?.rpm ?? 0)
        let tpm = max(0, limits?.tpm ?? 0)
        self.rpm = rpm
        self.tpm = tpm
        requestCostNs = rpm > 0 ? max(1, CellCounters.windowNs / Int64(rpm)) : 0
        tokenCostNs = tpm > 0 ? max(1, CellCounters.windowNs / Int64(tpm)) : 0
        concurrency = max(0, limits?.concurrency ?? 0)
        if let budget {
            budgetMicroUSD = Int64((budget.usd * 1_000_000).rounded())
            period = budget.period
        } else {
            budgetMicroUSD = -1
            period = .total
        }
    }

    /// Window nanoseconds for `tokens` tokens, saturating rather than overflowing.
    @inline(__always)
    func tokenNs(_ tokens: Int) -> Int64 {
        let (product, overflow) = Int64(tokens).multipliedReportingOverflow(by: tokenCostNs)
        if overflow { return tokens < 0 ? Int64.min / 2 : Int64.max / 2 }
        return product
    }
}

/// The words a refusal uses for each limit of a scope.
struct ScopeLabels: Sendable {
    let rpm: String
    let tpm: String
    let concurrency: String
    let budget: String

    init(limits: Limits?, budget: Budget?, label: String) {
        rpm = "requests per minute of \(label) (\(limits?.rpm ?? 0))"
        tpm = "tokens per minute of \(label) (\(limits?.tpm ?? 0))"
        concurrency = "concurrent requests of \(label) (\(limits?.concurrency ?? 0))"
        self.budget = budget.map { "the \($0.period.rawValue) budget of \(label) ($\($0.usd))" } ?? ""
    }
}

/// '*' matches any run of bytes, everything else itself (the byte form of GatewayConfig's globMatch).
func byteGlobMatch(_ p: UnsafeRawBufferPointer, _ n: UnsafeRawBufferPointer) -> Bool {
    let star = UInt8(ascii: "*")
    var pi = 0, ni = 0
    var lastStar = -1, resumeAt = 0
    while ni < n.count {
        if pi < p.count, p[pi] == star {
            lastStar = pi
            resumeAt = ni
            pi += 1
        } else if pi < p.count, p[pi] == n[ni] {
            pi += 1
            ni += 1
        } else if lastStar >= 0 {
            pi = lastStar + 1
            resumeAt += 1
            ni = resumeAt
        } else {
            return false
        }
    }
    while pi < p.count, p[pi] == star { pi += 1 }
    return pi == p.count
}
