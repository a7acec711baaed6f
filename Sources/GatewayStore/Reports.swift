/// Chargeback and audit queries: spend at startup, usage per group/key/model/tag, filtered logs.
/// Time bounds are seconds since the Unix epoch and select records by start time, half-open: `since ≤ t < until`.

/// What a usage report groups by.
public enum UsageDimension: String, Sendable, CaseIterable {
    case group
    case key
    case model
    case tag
    /// The deployment (`provider/model`) that served the request: an extension for capacity questions.
    case deployment
}

/// One line of a usage report.
public struct UsageRow: Sendable, Equatable {
    /// The group, key id, model, `k=v` tag or deployment; empty for records without one (for example requests
    /// rejected before a key was known, or untagged requests).
    public var value: String
    /// The key's name, for the key dimension.
    public var name: String?
    public var requests: Int
    public var promptTokens: Int
    public var completionTokens: Int
    public var costMicroUSD: Int64
    /// Requests that ended with status 400 or above (rejected by policy or failed upstream).
    public var errors: Int

    public init(value: String, name: String? = nil, requests: Int, promptTokens: Int, completionTokens: Int,
                costMicroUSD: Int64, errors: Int) {
        self.value = value
        self.name = name
        self.requests = requests
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.costMicroUSD = costMicroUSD
        self.errors = errors
    }
}

/// A status filter for `logs`: one code (`429`), a class (`4xx`, `5xx`) or every error (`error`, status ≥ 400).
public enum StatusFilter: Sendable, Equatable {
    case exact(Int)
    case range(Int, Int)

    public static let errors = StatusFilter.range(400, 999)

    /// Parses `429`, `4xx`, `5XX` or `error`/`errors`.
    public init?(_ text: String) {
        let lower = text.lowercased()
        if lower == "error" || lower == "errors" { self = .errors; return }
        if let code = Int(lower), (100...999).contains(code) { self = .exact(code); return }
        if lower.count == 3, lower.hasSuffix("xx"), let digit = Int(lower.prefix(1)), (1...9).contains(digit) {
            self = .range(digit * 100, digit * 100 + 99)
            return
        }
        return nil
    }
}

extension Store {
    /// Spend per key id and per group over records that started at or after `unixSeconds`, for rebuilding budget
    /// counters at startup. A record in several groups counts toward each; records without a key count toward none.
    /// - Returns: micro-USD by key id and by group name.
    public func spendSince(unixSeconds: Int64) throws -> (byKey: [String: Int64], byGroup: [String: Int64]) {
        let sinceNs = unixSeconds.multipliedReportingOverflow(by: UTCTime.nanosecondsPerSecond)
        let bound = sinceNs.overflow ? (unixSeconds < 0 ? Int64.min : Int64.max) : sinceNs.partialValue
        return try withConnection { db in
            var byKey: [String: Int64] = [:]
            let ids = Schema.idRange(since: "?1", until: "9223372036854775807")
            let keys = try db.prepare("""
                SELECT key_id, SUM(cost_micro_usd) FROM audit
                WHERE id BETWEEN \(ids.low) AND \(ids.high) AND start_ns >= ?1 AND key_id IS NOT NULL GROUP BY key_id
                """)
            keys.bind(1, bound)
            while try keys.step() { byKey[keys.text(0)] = keys.int64(1) }
            var byGroup: [String: Int64] = [:]
            let groups = try db.prepare("""
                SELECT \(Schema.recordGroup), SUM(a.cost_micro_usd) FROM \(Schema.recordGroups)
                WHERE a.id BETWEEN \(ids.low) AND \(ids.high) AND a.start_ns >= ?1 AND a.groups <> '' GROUP BY 1
                """)
            groups.bind(1, bound)
            while try groups.step() { byGroup[groups.text(0)] = groups.int64(1) }
            return (byKey, byGroup)
        }
    }

    /// Requests, tokens, cost and errors per value of `dimension`, highest cost first.
    /// - Parameters:
    ///   - dimension: group, key, model (the requested name), tag (each `k=v` pair) or deployment.
    ///     With group or tag, a record with several groups or tags counts toward each of them.
    ///   - since: seconds since the epoch, inclusive; nil: from the start.
    ///   - until: seconds since the epoch, exclusive; nil: until now.
    public func usage(by dimension: UsageDimension, since: Int64? = nil, until: Int64? = nil) throws -> [UsageRow] {
        let from: String
        let value: String
        let name: String
        switch dimension {
        case .key:
            from = "audit a"
            value = "COALESCE(a.key_id, '')"
            name = "MAX(a.key_name)"
        case .model:
            from = "audit a"
            value = "a.requested_model"
            name = "NULL"
        case .deployment:
            from = "audit a"
            value = "a.deployment"
            name = "NULL"
        case .group:
            from = Schema.recordGroups
            value = Schema.recordGroup
            name = "NULL"
        case .tag:
            from = "audit a LEFT JOIN audit_tags d ON d.audit_id = a.id"
            value = "COALESCE(d.tag, '')"
            name = "NULL"
        }
        let ids = Schema.idRange(since: "?1", until: "?2")
        let sql = """
            SELECT \(value) AS v, \(name), COUNT(*), SUM(a.prompt_tokens), SUM(a.completion_tokens),
                SUM(a.cost_micro_usd), SUM(a.status >= 400)
            FROM \(from)
            WHERE a.id BETWEEN \(ids.low) AND \(ids.high) AND a.start_ns >= ?1 AND a.start_ns < ?2
            GROUP BY v
            ORDER BY SUM(a.cost_micro_usd) DESC, COUNT(*) DESC, v
            """
        let bounds = Store.nsBounds(since: since, until: until)
        return try withConnection { db in
            let statement = try db.prepare(sql)
            statement.bind(1, bounds.since)
            statement.bind(2, bounds.until)
            var rows: [UsageRow] = []
            while try statement.step() {
                rows.append(UsageRow(
                    value: statement.text(0),
                    name: statement.optionalText(1),
                    requests: statement.int(2),
                    promptTokens: statement.int(3),
                    completionTokens: statement.int(4),
                    costMicroUSD: statement.int64(5),
                    errors: statement.int(6)
                ))
            }
            return rows
        }
    }

    /// Audit records, newest first.
    /// - Parameters:
    ///   - limit: at most this many (clamped to 1…10,000).
    ///   - key: a key id or key name.
    ///   - model: the requested model name, or the deployment (`provider/model`).
    ///   - status: a status code, class or `errors`.
    ///   - since, until: start-time bounds in seconds, as in `usage`.
    ///   - includeBodies: whether the stored bodies are read too.
    public func logs(
        limit: Int = 100,
        key: String? = nil,
        model: String? = nil,
        status: StatusFilter? = nil,
        since: Int64? = nil,
        until: Int64? = nil,
        includeBodies: Bool = false
    ) throws -> [AuditRecord] {
        var conditions = ["id BETWEEN ?8 AND ?9", "start_ns >= ?1", "start_ns < ?2"]
        if key != nil { conditions.append("(key_id = ?3 OR key_name = ?3)") }
        if model != nil { conditions.append("(requested_model = ?4 OR deployment = ?4)") }
        if status != nil { conditions.append("status BETWEEN ?5 AND ?6") }
        let sql = """
            SELECT request_id, key_id, key_name, groups, tags, client_address, start_ns, end_ns, total_latency_us,
                upstream_latency_us, overhead_us, ttfb_us, requested_model, deployment, attempts, status, error_code,
                prompt_tokens, completion_tokens, cost_micro_usd, streamed, bytes_in, bytes_out,
                \(includeBodies ? "request_body, response_body" : "NULL, NULL"), attempt_log
            FROM audit WHERE \(conditions.joined(separator: " AND "))
            ORDER BY start_ns DESC, id DESC LIMIT ?7
            """
        let bounds = Store.nsBounds(since: since, until: until)
        let limit = min(max(limit, 1), 10_000)
        return try withConnection { db in
            // The blocks that may hold rows in the range, newest first, and the latest start in each suffix of them.
            let blockQuery = try db.prepare("""
                SELECT block, max_start_ns FROM audit_blocks WHERE max_start_ns >= ?1 AND min_start_ns < ?2 ORDER BY block DESC
                """)
            blockQuery.bind(1, bounds.since)
            blockQuery.bind(2, bounds.until)
            var blocks: [Int64] = []
            var latestStartFrom: [Int64] = []
            while try blockQuery.step() {
                blocks.append(blockQuery.int64(0))
                latestStartFrom.append(blockQuery.int64(1))
            }
            guard !blocks.isEmpty else { return [] }
            latestStartFrom.append(.min)
            for i in stride(from: blocks.count - 1, through: 0, by: -1) {
                latestStartFrom[i] = max(latestStartFrom[i], latestStartFrom[i + 1])
            }
            // Newest first over a window of the newest blocks, widened until no row outside it can rank: rows below
            // the window have smaller ids, so one that starts at the same time as the last row taken ranks after it.
            let s = try db.prepare(sql)
            var window = 1
            while true {
                let covered = min(window, blocks.count)
                s.reset()
                s.bind(1, bounds.since)
                s.bind(2, bounds.until)
                if let key { s.bind(3, key) }
                if let model { s.bind(4, model) }
                switch status {
                case let .exact(code)?: s.bind(5, code); s.bind(6, code)
                case let .range(low, high)?: s.bind(5, low); s.bind(6, high)
                case nil: break
                }
                s.bind(7, limit)
                s.bind(8, blocks[covered - 1] << Schema.blockShift)
                s.bind(9, ((blocks[0] + 1) << Schema.blockShift) - 1)
                let records = try Store.readLogRows(s)
                if covered == blocks.count { return records }
                if records.count == limit, latestStartFrom[covered] <= records[limit - 1].startNs { return records }
                window *= 4
            }
        }
    }

    private static func readLogRows(_ s: SQLiteStatement) throws -> [AuditRecord] {
        var records: [AuditRecord] = []
        while try s.step() {
            records.append(AuditRecord(
                requestID: s.text(0),
                keyID: s.optionalText(1),
                keyName: s.optionalText(2),
                groups: AuditRecord.splitList(s.text(3)),
                tags: s.text(4),
                clientAddress: s.text(5),
                startNs: s.int64(6),
                endNs: s.int64(7),
                totalLatencyUs: s.int64(8),
                upstreamLatencyUs: s.int64(9),
                overheadUs: s.int64(10),
                ttfbUs: s.int64(11),
                requestedModel: s.text(12),
                deployment: s.text(13),
                attempts: s.int(14),
                status: s.int(15),
                errorCode: s.optionalText(16),
                promptTokens: s.int(17),
                completionTokens: s.int(18),
                costMicroUSD: s.int64(19),
                streamed: s.int(20) != 0,
                bytesIn: s.int64(21),
                bytesOut: s.int64(22),
                requestBody: s.optionalText(23),
                responseBody: s.optionalText(24)
            ))
            records[records.count - 1].attemptLog = s.optionalText(25)
        }
        return records
    }

    /// The number of audit rows (for tests and `gateway report` summaries).
    public func auditCount() throws -> Int {
        try withConnection { Int(try $0.scalarInt("SELECT COUNT(*) FROM audit") ?? 0) }
    }

    static func nsBounds(since: Int64?, until: Int64?) -> (since: Int64, until: Int64) {
        func ns(_ seconds: Int64) -> Int64 {
            let (value, overflow) = seconds.multipliedReportingOverflow(by: UTCTime.nanosecondsPerSecond)
            return overflow ? (seconds < 0 ? Int64.min : Int64.max) : value
        }
        return (since.map(ns) ?? Int64.min, until.map(ns) ?? Int64.max)
    }
}

// MARK: - Rendering

/// How `gateway report` and `GET /admin/usage` print a usage report.
public enum ReportFormat: String, Sendable, CaseIterable {
    case table
    case json
    case csv
}

/// Renders a usage report.
/// - Parameters:
///   - rows: from `Store.usage`.
///   - format: an aligned text table with a total line, JSON (`{"by":…,"rows":[…],"total":{…}}`), or CSV with a
///     header line. Costs are USD with six decimals; JSON also carries the exact `cost_micro_usd`.
///   - dimension: names the first column.
///   - since, until: echoed in the JSON.
public func renderUsage(
    _ rows: [UsageRow],
    format: ReportFormat,
    by dimension: UsageDimension = .group,
    since: Int64? = nil,
    until: Int64? = nil
) -> String {
    var total = UsageRow(value: "TOTAL", requests: 0, promptTokens: 0, completionTokens: 0, costMicroUSD: 0, errors: 0)
    for row in rows {
        total.requests += row.requests
        total.promptTokens += row.promptTokens
        total.completionTokens += row.completionTokens
        total.costMicroUSD += row.costMicroUSD
        total.errors += row.errors
    }
    let showName = dimension == .key
    switch format {
    case .json:
        var json = JSONWriter(capacity: 128 * (rows.count + 1))
        json.beginObject()
        json.field("by", dimension.rawValue)
        json.field("since", since)
        json.field("until", until)
        json.key("rows")
        json.beginArray()
        for row in rows { writeUsageRow(row, dimension: dimension, showName: showName, to: &json) }
        json.endArray()
        json.key("total")
        writeUsageRow(total, dimension: nil, showName: false, to: &json)
        json.endObject()
        return json.text

    case .csv:
        var header = [dimension.rawValue]
        if showName { header.append("name") }
        header += ["requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "errors"]
        var lines = [header.joined(separator: ",")]
        for row in rows {
            var fields = [csvField(row.value)]
            if showName { fields.append(csvField(row.name ?? "")) }
            fields += [String(row.requests), String(row.promptTokens), String(row.completionTokens),
                       String(row.promptTokens + row.completionTokens), formatMicro(row.costMicroUSD), String(row.errors)]
            lines.append(fields.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"

    case .table:
        var header = [dimension.rawValue.uppercased()]
        if showName { header.append("NAME") }
        header += ["REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "COST_USD", "ERRORS"]
        func cells(_ row: UsageRow, label: String) -> [String] {
            var cells = [label]
            if showName { cells.append(row.name ?? "") }
            cells += [String(row.requests), String(row.promptTokens), String(row.completionTokens),
                      formatMicro(row.costMicroUSD), String(row.errors)]
            return cells
        }
        var table = [header]
        for row in rows { table.append(cells(row, label: row.value.isEmpty ? "(none)" : row.value)) }
        table.append(cells(total, label: "TOTAL"))
        var widths = [Int](repeating: 0, count: header.count)
        for line in table { for (index, cell) in line.enumerated() { widths[index] = max(widths[index], cell.count) } }
        let numericFrom = showName ? 2 : 1
        func render(_ line: [String]) -> String {
            var parts: [String] = []
            for (index, cell) in line.enumerated() {
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                // Labels align left, numbers right.
                parts.append(index < numericFrom ? cell + padding : padding + cell)
            }
            var text = parts.joined(separator: "  ")
            while text.last == " " { text.removeLast() }
            return text
        }
        var out: [String] = []
        for (index, line) in table.enumerated() {
            if index == table.count - 1 {
                out.append(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)))
            }
            out.append(render(line))
        }
        return out.joined(separator: "\n") + "\n"
    }
}

private func writeUsageRow(_ row: UsageRow, dimension: UsageDimension?, showName: Bool, to json: inout JSONWriter) {
    json.beginObject()
    if let dimension { json.field(dimension.rawValue, row.value) }
    if showName { json.field("name", row.name) }
    json.field("requests", row.requests)
    json.field("prompt_tokens", row.promptTokens)
    json.field("completion_tokens", row.completionTokens)
    json.field("total_tokens", row.promptTokens + row.completionTokens)
    json.key("cost_usd")
    json.micro(row.costMicroUSD)
    json.field("cost_micro_usd", row.costMicroUSD)
    json.field("errors", row.errors)
    json.endObject()
}

/// Quotes a CSV field when it holds a comma, a quote or a line break (RFC 4180).
func csvField(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
    var quoted = "\""
    for character in text {
        if character == "\"" { quoted.append("\"") }
        quoted.append(character)
    }
    return quoted + "\""
}
