import GatewayIO

/// Where the load goes: an address, the Host header and the request path, parsed from a URL such as
/// `http://127.0.0.1:9000/v1/chat/completions`, `https://…`, or just `127.0.0.1:9000` (then the path is the chat
/// endpoint).
public struct BenchTarget: Sendable, CustomStringConvertible {
    public static let defaultPath = "/v1/chat/completions"

    public var address: SocketAddress
    /// "HOST:PORT" as written, for the Host header.
    public var authority: String
    public var path: String
    /// https: the connections speak TLS (verified against the system's CAs unless `--insecure`).
    public var tls = false

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(parsing url: String) throws(ParseError) {
        var rest = Substring(url)
        if rest.hasPrefix("https://") {
            tls = true
            rest = rest.dropFirst("https://".count)
        } else if rest.hasPrefix("http://") {
            rest = rest.dropFirst("http://".count)
        }
        let slash = rest.firstIndex(of: "/")
        let hostPort = slash.map { rest[..<$0] } ?? rest
        let path = slash.map { String(rest[$0...]) } ?? ""
        guard !hostPort.isEmpty else { throw ParseError(description: "'\(url)': expected http://HOST:PORT[/PATH]") }
        do {
            address = try SocketAddress(parsing: String(hostPort))
        } catch {
            throw ParseError(description: "'\(url)': expected http://HOST:PORT[/PATH] with a numeric host")
        }
        authority = String(hostPort)
        self.path = path.isEmpty || path == "/" ? BenchTarget.defaultPath : path
    }

    public var description: String { "\(tls ? "https" : "http")://\(authority)\(path)" }

    /// The host part of `authority`, for the certificate check.
    var host: String {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            return String(authority[authority.index(after: authority.startIndex)..<close])
        }
        return String(authority.split(separator: ":").first ?? "")
    }
}
