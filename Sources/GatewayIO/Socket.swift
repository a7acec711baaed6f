#if canImport(Glibc)
import Glibc
#endif
import CShims

/// An IPv4 or IPv6 address with a port, parsed from "HOST:PORT" or "[V6]:PORT".
public struct SocketAddress: Sendable, CustomStringConvertible, Equatable {
    public var storage: sockaddr_storage
    public var length: socklen_t

    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        lhs.description == rhs.description
    }

    public enum ParseError: Error, CustomStringConvertible {
        case invalid(String)
        public var description: String {
            switch self { case .invalid(let text): "invalid address '\(text)': expected HOST:PORT" }
        }
    }

    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// Parses "127.0.0.1:8080", "[::1]:8080", "localhost:8080" (localhost means 127.0.0.1).
    public init(parsing text: String) throws(ParseError) {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .invalid(text) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .invalid(text) }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .invalid(text) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portText) else { throw .invalid(text) }
        if host == "localhost" || host.isEmpty { host = "127.0.0.1" }
        if host == "*" { host = "0.0.0.0" }
        var storage = sockaddr_storage()
        var length: socklen_t = 0
        let ok: Bool = withUnsafeMutableBytes(of: &storage) { raw in
            if host.contains(":") {
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = port.bigEndian
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
                return inet_pton(AF_INET6, String(host), &sin6.pointee.sin6_addr) == 1
            } else {
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                sin.pointee.sin_family = sa_family_t(AF_INET)
                sin.pointee.sin_port = port.bigEndian
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
                return inet_pton(AF_INET, String(host), &sin.pointee.sin_addr) == 1
            }
        }
        guard ok else { throw .invalid(text) }
        self.storage = storage
        self.length = length
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: UInt16 {
        get {
            withUnsafeBytes(of: storage) { raw in
                if family == AF_INET6 {
                    return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
                }
                return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
            }
        }
        set {
            let isV6 = family == AF_INET6
            withUnsafeMutableBytes(of: &storage) { raw in
                if isV6 {
                    raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self).pointee.sin6_port = newValue.bigEndian
                } else {
                    raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self).pointee.sin_port = newValue.bigEndian
                }
            }
        }
    }

    /// The host part as text ("127.0.0.1" or "::1").
    public var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                var addr = raw.load(as: sockaddr_in6.self).sin6_addr
                _ = inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count))
            } else {
                var addr = raw.load(as: sockaddr_in.self).sin_addr
                _ = inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count))
            }
        }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes the host as ASCII into `out` without allocating; returns the byte count.
    public func writeHost(into out: UnsafeMutableRawPointer, capacity: Int) -> Int {
        withUnsafeBytes(of: storage) { raw -> Int in
            let result: UnsafePointer<CChar>?
            let dst = out.assumingMemoryBound(to: CChar.self)
            if family == AF_INET6 {
                var addr = raw.load(as: sockaddr_in6.self).sin6_addr
                result = inet_ntop(AF_INET6, &addr, dst, socklen_t(capacity))
            } else {
                var addr = raw.load(as: sockaddr_in.self).sin_addr
                result = inet_ntop(AF_INET, &addr, dst, socklen_t(capacity))
            }
            guard result != nil else { return 0 }
            return strlen(dst)
        }
    }

    public var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }
}

public enum Sockets {
    /// Opens a nonblocking listening socket with SO_REUSEPORT, so that each reactor thread can own one.
    /// - Returns: the descriptor and the bound address (with the real port when asked for port 0).
    public static func listen(on address: SocketAddress, backlog: Int32 = 4096) throws(IOError) -> (Int32, SocketAddress) {
        let fd = try Posix.socket(domain: address.family, type: Int32(SOCK_STREAM.rawValue))
        Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
        Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1)
        let bound = address.withSockaddr { bind(fd, $0, $1) }
        if bound != 0 {
            let code = errno
            Posix.close(fd)
            throw IOError(errno: code, function: "bind")
        }
        if Glibc.listen(fd, backlog) != 0 {
            let code = errno
            Posix.close(fd)
            throw IOError(errno: code, function: "listen")
        }
        return (fd, localAddress(fd) ?? address)
    }

    public static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 ? SocketAddress(storage: storage, length: length) : nil
    }

    /// Starts a nonblocking connect. `.wouldBlock` means in progress: wait for writability, then check SO_ERROR.
    public static func connect(to address: SocketAddress) throws(IOError) -> (Int32, IOResult<Void>) {
        let fd = try Posix.socket(domain: address.family, type: Int32(SOCK_STREAM.rawValue))
        setNoDelay(fd)
        do {
            let result = try syscall("connect") { address.withSockaddr { Glibc.connect(fd, $0, $1) } }
            switch result {
            case .processed: return (fd, .processed(()))
            case .wouldBlock: return (fd, .wouldBlock)
            }
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    public static func setNoDelay(_ fd: Int32) {
        Posix.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1)
    }
}
