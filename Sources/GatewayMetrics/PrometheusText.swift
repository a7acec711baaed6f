/// Renders metrics in the Prometheus text exposition format, version 0.0.4: a `# HELP` and a `# TYPE`
/// line per metric family, then its samples; histograms as cumulative `_bucket{le=…}` samples ending
/// with `le="+Inf"`, then `_sum` and `_count`. Series are sorted, so the output is stable.
public enum PrometheusText {
    /// The Content-Type of the exposition.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// - Parameters:
    ///   - snapshot: the sum over the threads.
    ///   - labels: the names for the snapshot's ids.
    ///   - audit: the audit queue's state, or nil when there is no audit log (rendered as zeros).
    ///   - staleThreads: threads whose last copy is older than this scrape (they did not answer in time).
    public static func render(
        _ snapshot: MetricsSnapshot, labels: MetricsLabels, audit: AuditMetrics? = nil, staleThreads: Int = 0
    ) -> String {
        var out = ""
        out.reserveCapacity(8192)

        family(&out, "gateway_requests_total", "counter", "Client requests answered, by model, group and status.")
        for series in snapshot.requests.keys.sorted() {
            sample(&out, "gateway_requests_total",
                   [("model", labels.model(series.model)), ("group", labels.group(series.group)), ("status", String(series.status))],
                   String(snapshot.requests[series]!))
        }

        family(&out, "gateway_request_duration_seconds", "histogram",
               "Time from a request's first byte to its last response byte.")
        histogram(&out, "gateway_request_duration_seconds", [], snapshot.requestDuration)

        family(&out, "gateway_overhead_seconds", "histogram",
               "The gateway's own time per request: the total time minus the time spent waiting on upstreams.")
        histogram(&out, "gateway_overhead_seconds", [], snapshot.overhead)

        family(&out, "gateway_upstream_duration_seconds", "histogram",
               "Time of each upstream attempt, from sending the request to the end of the response.")
        for deployment in snapshot.upstreamDuration.keys.sorted() {
            histogram(&out, "gateway_upstream_duration_seconds", [("deployment", labels.deployment(deployment))],
                      snapshot.upstreamDuration[deployment]!)
        }

        family(&out, "gateway_tokens_total", "counter", "Tokens used, by model, group and kind (prompt or completion).")
        let tokenKeys = Set(snapshot.promptTokens.keys).union(snapshot.completionTokens.keys).sorted()
        for key in tokenKeys {
            let names = [("model", labels.model(key.model)), ("group", labels.group(key.group))]
            if let prompt = snapshot.promptTokens[key] {
                sample(&out, "gateway_tokens_total", names + [("kind", "prompt")], String(prompt))
            }
            if let completion = snapshot.completionTokens[key] {
                sample(&out, "gateway_tokens_total", names + [("kind", "completion")], String(completion))
            }
        }

        family(&out, "gateway_cost_usd_total", "counter", "Cost in US dollars, by model and group.")
        for key in snapshot.costNanoUSD.keys.sorted() {
            sample(&out, "gateway_cost_usd_total", [("model", labels.model(key.model)), ("group", labels.group(key.group))],
                   DecimalText.dollars(nano: snapshot.costNanoUSD[key]!))
        }

        family(&out, "gateway_inflight_requests", "gauge", "Client requests being served.")
        sample(&out, "gateway_inflight_requests", [], String(snapshot.inflight))

        family(&out, "gateway_upstream_connections", "gauge", "Upstream connections, by deployment and state (active or idle).")
        for deployment in snapshot.upstreamConnections.keys.sorted() {
            let counts = snapshot.upstreamConnections[deployment]!
            let name = labels.deployment(deployment)
            sample(&out, "gateway_upstream_connections", [("deployment", name), ("state", "active")], String(counts.active))
            sample(&out, "gateway_upstream_connections", [("deployment", name), ("state", "idle")], String(counts.idle))
        }

        family(&out, "gateway_deployment_state", "gauge",
               "Deployment health: 0 healthy, 1 cooling down after failures, 2 half-open (one probe request allowed).")
        for deployment in snapshot.deploymentStates.keys.sorted() {
            sample(&out, "gateway_deployment_state", [("deployment", labels.deployment(deployment))],
                   String(snapshot.deploymentStates[deployment]!))
        }

        family(&out, "gateway_rejections_total", "counter", "Requests the gateway refused itself, by reason (the error code).")
        for reason in RejectionReason.allCases {
            sample(&out, "gateway_rejections_total", [("reason", reason.label)], String(snapshot.rejections[reason.rawValue]))
        }

        let audit = audit ?? AuditMetrics()
        family(&out, "gateway_audit_queue_depth", "gauge", "Audit records waiting for the writer thread.")
        sample(&out, "gateway_audit_queue_depth", [], String(audit.queueDepth))
        family(&out, "gateway_audit_spilled_total", "counter", "Audit records that found the queue full and went to the spill file.")
        sample(&out, "gateway_audit_spilled_total", [], String(audit.spilled))
        family(&out, "gateway_audit_dropped_total", "counter", "Audit records lost.")
        sample(&out, "gateway_audit_dropped_total", [], String(audit.dropped))
        family(&out, "gateway_audit_writer_raises_total", "counter",
               "Times the audit writer fell behind at its background CPU priority (SCHED_IDLE) and was raised to the normal one.")
        sample(&out, "gateway_audit_writer_raises_total", [], String(audit.writerRaises))

        family(&out, "gateway_metrics_stale_threads", "gauge",
               "Reactor threads that did not answer this scrape in time; their last copy was used.")
        sample(&out, "gateway_metrics_stale_threads", [], String(staleThreads))
        return out
    }

    private static func family(_ out: inout String, _ name: String, _ type: String, _ help: String) {
        out += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(type)\n"
    }

    private static func sample(_ out: inout String, _ name: String, _ labels: [(String, String)], _ value: String) {
        out += name
        if !labels.isEmpty {
            out += "{"
            for (i, (label, labelValue)) in labels.enumerated() {
                if i > 0 { out += "," }
                out += label
                out += "=\""
                out += escapeLabelValue(labelValue)
                out += "\""
            }
            out += "}"
        }
        out += " "
        out += value
        out += "\n"
    }

    private static func histogram(_ out: inout String, _ name: String, _ labels: [(String, String)], _ histogram: HistogramSnapshot) {
        var cumulative: UInt64 = 0
        let bounds = histogram.buckets.boundsNs
        for (i, count) in histogram.counts.enumerated() {
            cumulative &+= count
            let le = i < bounds.count ? DecimalText.seconds(bounds[i]) : "+Inf"
            sample(&out, name + "_bucket", labels + [("le", le)], String(cumulative))
        }
        sample(&out, name + "_sum", labels, DecimalText.seconds(histogram.sumNs))
        sample(&out, name + "_count", labels, String(cumulative))
    }

    /// A label value: backslash, double quote and line feed are escaped (`\\`, `\"`, `\n`).
    public static func escapeLabelValue(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else {
            return value
        }
        var out = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// HELP text: backslash and line feed are escaped.
    static func escapeHelp(_ text: String) -> String {
        var out = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }
}
