import GatewayHTTP
import GatewayIO

/// Active health checks (`providers[].health_check`), run by the first reactor thread for every thread:
/// `GET path` on one of the provider's pooled connections every interval. A connection failure, a timeout
/// or a 5xx cools every deployment of the provider down until the next check; a success ends their cooldown.
/// Health is shared (`DeploymentHealth`), so one prober serves all threads.
final class HealthProber {
    private unowned(unsafe) let context: LoopContext
    /// The probe in flight per provider index, and when the next one is due.
    private var probes: [Int: ProbeExchange] = [:]
    private var nextDue: [Int: UInt64] = [:]

    init(context: LoopContext) {
        self.context = context
    }

    func tick(now: UInt64) {
        let providers = context.config.source.providers
        for (index, provider) in providers.enumerated() {
            guard let check = provider.healthCheck, index < context.pools.count else { continue }
            if let probe = probes[index] {
                guard now > probe.startNs + UInt64(check.timeoutMs) * 1_000_000 else { continue }
                probe.cancel()
                finished(index, healthy: false, reason: "no answer within \(check.timeoutMs) ms", now: now)
                continue
            }
            guard now >= nextDue[index, default: 0] else { continue }
            let probe = ProbeExchange(prober: self, providerIndex: index, path: check.path, startNs: now)
            probes[index] = probe
            nextDue[index] = now + UInt64(check.intervalMs) * 1_000_000
            context.pools[index].acquire(for: probe)
        }
    }

    fileprivate func finished(_ providerIndex: Int, healthy: Bool, reason: String, now: UInt64) {
        guard probes.removeValue(forKey: providerIndex) != nil else { return }
        let providers = context.config.source.providers
        guard providerIndex < providers.count, let check = providers[providerIndex].healthCheck else { return }
        // Unhealthy until the next check can say otherwise.
        let until = now + UInt64(check.intervalMs + check.timeoutMs) * 1_000_000
        var changed = false
        for model in context.config.models {
            for deployment in model.deployments where deployment.providerIndex == providerIndex {
                let wasHealthy = deployment.health.state(nowNs: now) == .healthy
                if healthy {
                    if !wasHealthy { deployment.health.recordSuccess(probe: true) }
                    changed = changed || !wasHealthy
                } else {
                    deployment.health.coolDown(untilNs: until)
                    changed = changed || wasHealthy
                }
            }
        }
        if changed {
            let name = providers[providerIndex].name
            if healthy { Log.info("health check: \(name) is healthy again") } else { Log.warning("health check: \(name) is unhealthy: \(reason)") }
        }
    }

    /// The request of one probe: a GET with the provider's host and credentials, no body.
    private final class ProbeExchange: UpstreamExchange {
        unowned(unsafe) let prober: HealthProber
        let providerIndex: Int
        let path: String
        let startNs: UInt64
        private var connection: (any UpstreamChannel)?
        private var healthy = false
        private var headBytes: UnsafeMutableRawBufferPointer?

        deinit { headBytes?.deallocate() }

        init(prober: HealthProber, providerIndex: Int, path: String, startNs: UInt64) {
            self.prober = prober
            self.providerIndex = providerIndex
            self.path = path
            self.startNs = startNs
        }

        func cancel() {
            connection?.cancel()
            connection = nil
        }

        func upstreamReady(_ connection: any UpstreamChannel) {
            self.connection = connection
            let route = connection.route
            connection.passRawChunks = false
            var head = Array("GET \(path) HTTP/1.1\r\n".utf8)
            head += route.hostLine
            head += route.credentialLines
            head += Array("user-agent: gateway-health-check\r\ncontent-length: 0\r\n\r\n".utf8)
            // The queue keeps a pointer until the bytes are written: they live as long as the probe.
            headBytes?.deallocate()
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: head.count, alignment: 1)
            bytes.copyBytes(from: head)
            headBytes = bytes
            connection.out.append(bytes.baseAddress!, bytes.count)
            connection.requestBodyComplete = true
            connection.sendQueued(layout: nil)
        }

        func upstreamFailed(_ failure: UpstreamFailure) {
            connection = nil
            prober.finished(providerIndex, healthy: false, reason: failure.message, now: Clock.monotonicNs())
        }

        func upstreamWritable() {}

        func upstreamResponseHead(_ parser: HTTPHeadParser, framing: ResponseFraming) {
            healthy = parser.status < 500
            if !healthy {
                prober.finished(providerIndex, healthy: false, reason: "status \(parser.status)", now: Clock.monotonicNs())
            }
        }

        func upstreamBody(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool { true }

        func upstreamResponseComplete() {
            connection = nil
            if healthy { prober.finished(providerIndex, healthy: true, reason: "", now: Clock.monotonicNs()) }
        }

        func upstreamAborted() {
            connection = nil
            prober.finished(providerIndex, healthy: false, reason: "the response broke off", now: Clock.monotonicNs())
        }
    }
}
