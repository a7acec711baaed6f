#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// Name resolution, done once when a configuration loads, never on the request path.
enum Resolver {
    struct ResolveError: Error, CustomStringConvertible {
        let description: String
    }

    static func resolve(host: String, port: Int) throws -> SocketAddress {
        if let address = try? SocketAddress(parsing: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)") {
            return address
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw ResolveError(description: "cannot resolve host '\(host)'")
        }
        defer { freeaddrinfo(result) }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.baseAddress!.copyMemory(from: first.pointee.ai_addr, byteCount: Int(first.pointee.ai_addrlen))
        }
        return SocketAddress(storage: storage, length: first.pointee.ai_addrlen)
    }
}
