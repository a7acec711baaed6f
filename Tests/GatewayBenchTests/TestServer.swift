#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A tiny HTTP/1.1 keep-alive server for tests: plain threads and blocking sockets on 127.0.0.1:0.
/// It answers every request at once with a small JSON body, except that the `stallAt`-th request
/// (counting from 1, across connections) waits `stallNs` before its answer.
final class TestServer: @unchecked Sendable {
    let port: UInt16
    let requests = Atomic<Int>(0)
    let stallAt: Int
    let stallNs: UInt64
    private let listenFD: Int32
    private let stopping = Atomic<Bool>(false)

    static let response = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}".utf8)

    init(stallAt: Int = 0, stallNs: UInt64 = 0) {
        self.stallAt = stallAt
        self.stallNs = stallNs
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                precondition(bind(fd, $0, length) == 0, "bind failed")
                precondition(getsockname(fd, $0, &length) == 0)
            }
        }
        precondition(listen(fd, 128) == 0)
        listenFD = fd
        port = UInt16(bigEndian: address.sin_port)
        spawn(TestServerTask(server: self, fd: -1))
    }

    var url: String { "http://127.0.0.1:\(port)/v1/chat/completions" }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(listenFD, Int32(SHUT_RDWR))
    }

    fileprivate func acceptLoop() {
        while !stopping.load(ordering: .relaxed) {
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                break
            }
            var one: Int32 = 1
            _ = setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            spawn(TestServerTask(server: self, fd: client))
        }
        close(listenFD)
    }

    fileprivate func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var filled = 0
        while true {
            // A complete request: head, then Content-Length bytes of body.
            if let headEnd = TestServer.headEnd(buffer, filled) {
                let bodyLength = TestServer.contentLength(buffer, headEnd)
                if filled >= headEnd + bodyLength {
                    let number = requests.add(1, ordering: .relaxed).newValue
                    if number == stallAt {
                        var pause = timespec(tv_sec: Int(stallNs / 1_000_000_000), tv_nsec: Int(stallNs % 1_000_000_000))
                        _ = nanosleep(&pause, nil)
                    }
                    let sent = TestServer.response.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
                    if sent != TestServer.response.count { return }
                    let used = headEnd + bodyLength
                    buffer.withUnsafeMutableBytes { raw in
                        _ = memmove(raw.baseAddress!, raw.baseAddress! + used, filled - used)
                    }
                    filled -= used
                    continue
                }
            }
            if filled == buffer.count { return }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count <= 0 { return }
            filled += count
        }
    }

    static func headEnd(_ buffer: [UInt8], _ count: Int) -> Int? {
        guard count >= 4 else { return nil }
        for i in 0...(count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i + 4
        }
        return nil
    }

    static func contentLength(_ buffer: [UInt8], _ headEnd: Int) -> Int {
        let head = String(decoding: buffer[0..<headEnd], as: UTF8.self).lowercased()
        for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
            return Int(line.dropFirst("content-length:".count).filter { $0 != " " }) ?? 0
        }
        return 0
    }
}

private final class TestServerTask {
    let server: TestServer
    let fd: Int32
    init(server: TestServer, fd: Int32) {
        self.server = server
        self.fd = fd
    }
}

private func spawn(_ task: TestServerTask) {
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, testServerThreadEntry, Unmanaged.passRetained(task).toOpaque())
    precondition(result == 0)
    pthread_detach(thread)
}

/// A free function: a closure would inherit the caller's isolation (SWIFT-NOTES.md).
private func testServerThreadEntry(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let task = Unmanaged<TestServerTask>.fromOpaque(argument!).takeRetainedValue()
    if task.fd < 0 { task.server.acceptLoop() } else { task.server.serve(task.fd) }
    return nil
}
