#if canImport(Glibc)
import Glibc
#endif
import GatewayConfig
import GatewayIO
import GatewayProxy

/// What a benchmark's setup starts and its teardown stops: gwmock (a child process, not measured), the gateway
/// (embedded in this process, so the malloc interposer counts its reactor thread) and the measuring client.
final class Fixture: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Requests sent after connecting and before the framework's own warm-up iteration: they fill the gateway's
    /// upstream pool, its buffers and the allocator's caches, so the measurement sees the steady state.
    static let warmUpRequests = 200

    private(set) var mock: MockProcess?
    private(set) var server: GatewayServer?
    private(set) var client: KeepAliveClient?
    /// Where the client connects: gwmock's port (direct) or the gateway's (via).
    private(set) var targetPort: UInt16 = 0

    /// The gwmock binary: GWMOCK_BIN, else the root package's default release build (found from this file's path,
    /// since the plugin's working directory is not the package's).
    static var gwmockPath: String {
        if let path = getenv("GWMOCK_BIN") { return String(cString: path) }
        var root = "\(#filePath)"
        for _ in 0..<3 {  // …/Benchmarks/ProxyAllocations/Fixture.swift → …
            if let slash = root.lastIndex(of: "/") { root = String(root[..<slash]) }
        }
        return root + "/.build/release/gwmock"
    }

    /// The gateway's configuration: one OpenAI-style provider (the mock) and the model the client asks for.
    static func gatewayYAML(mockPort: UInt16) -> String {
        """
        server:
          listen: ["127.0.0.1:0"]
          threads: 1
        providers:
          - name: mock
            kind: openai
            base_url: http://127.0.0.1:\(mockPort)/v1
            max_connections: 8
        models:
          - name: gpt-4o-mini
            deployments:
              - {provider: mock}
        """
    }

    /// Starts gwmock and, when `viaGateway`, the embedded gateway in front of it; connects and warms up.
    func start(viaGateway: Bool) throws {
        stop()
        let mock = try MockProcess(binary: Fixture.gwmockPath)
        self.mock = mock
        targetPort = mock.port
        if viaGateway {
            let configuration = try GatewayConfiguration.parse(
                yaml: Fixture.gatewayYAML(mockPort: mock.port),
                environment: [:]
            )
            let server = try GatewayServer(
                configuration: configuration,
                configPath: nil,
                listen: "127.0.0.1:0",
                threads: 1
            )
            self.server = server
            let addresses = try server.start()
            guard let first = addresses.first else { throw Failure(description: "the gateway bound no address") }
            targetPort = first.port
        }
        let client = try KeepAliveClient(port: targetPort)
        self.client = client
        for index in 0..<Fixture.warmUpRequests {
            let status = client.roundTrip()
            guard status == 200 else {
                throw Failure(
                    description: "warm-up request \(index) to 127.0.0.1:\(targetPort) "
                        + "(\(viaGateway ? "gateway" : "gwmock")) got \(status) (<0: client failure); "
                        + "response so far:\n\(client.lastResponseText())"
                )
            }
        }
    }

    /// Closes the client, drains the gateway and stops gwmock.
    func stop() {
        client?.close()
        client = nil
        if let server {
            server.beginDrain()
            server.join()
        }
        server = nil
        mock?.stop()
        mock = nil
    }

    /// One line for the log about what was measured (setup only).
    func describe() -> String {
        guard let client else { return "not started" }
        return "client → 127.0.0.1:\(targetPort) (\(server == nil ? "gwmock directly" : "embedded gateway → gwmock")); "
            + "request \(client.requestBytes) B, response \(client.lastResponseLength) B"
    }
}
