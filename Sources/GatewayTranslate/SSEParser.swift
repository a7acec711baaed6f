/// Splits a Server-Sent Events byte stream into events as bytes arrive, whatever the chunk boundaries.
///
/// Follows the WHATWG event-stream rules: lines end in LF, CRLF or CR; a blank line dispatches the event; lines
/// starting with ':' are comments; several `data` lines join with LF; fields other than `event` and `data` are
/// ignored. Only the unfinished line and event are kept between chunks, so the work is linear in the stream.
struct SSEParser {
    /// One dispatched event: its `event` field (empty when absent) and its data.
    struct Event {
        var name: String
        var data: [UInt8]
    }

    private var line: [UInt8] = []
    private var eventName = ""
    private var data: [UInt8] = []
    private var hasData = false
    /// The last chunk ended in CR: an LF opening the next chunk ends the same line.
    private var afterCarriageReturn = false

    /// Parses `bytes` and calls `dispatch` for every event they complete.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ dispatch: (Event) -> Void) {
        var lineStart = 0
        var index = 0
        if afterCarriageReturn, bytes.first == UInt8(ascii: "\n") { lineStart = 1; index = 1 }
        afterCarriageReturn = false
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") else { index += 1; continue }
            line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[lineStart..<index]))
            process(dispatch)
            line.removeAll(keepingCapacity: true)
            index += 1
            if byte == UInt8(ascii: "\r") {
                if index == bytes.count { afterCarriageReturn = true } else if bytes[index] == UInt8(ascii: "\n") { index += 1 }
            }
            lineStart = index
        }
        line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[lineStart..<bytes.count]))
    }

    private mutating func process(_ dispatch: (Event) -> Void) {
        if line.isEmpty {
            if hasData { dispatch(Event(name: eventName, data: data)) }
            eventName = ""
            data.removeAll(keepingCapacity: true)
            hasData = false
            return
        }
        if line[0] == UInt8(ascii: ":") { return }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.count
        var valueStart = min(colon + 1, line.count)
        if valueStart < line.count, line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let value = line[valueStart...]
        switch String(decoding: line[..<colon], as: UTF8.self) {
        case "data":
            if hasData { data.append(UInt8(ascii: "\n")) }
            data.append(contentsOf: value)
            hasData = true
        case "event":
            eventName = String(decoding: value, as: UTF8.self)
        default:
            break
        }
    }
}

/// Writing SSE events.
enum SSEWriter {
    /// `data: …` and the blank line that ends the event.
    static func data(_ json: [UInt8], into out: inout [UInt8]) {
        out.append(contentsOf: "data: ".utf8)
        out.append(contentsOf: json)
        out.append(contentsOf: "\n\n".utf8)
    }

    /// `event: …`, `data: …` and the blank line.
    static func event(_ name: String, _ json: [UInt8], into out: inout [UInt8]) {
        out.append(contentsOf: "event: ".utf8)
        out.append(contentsOf: name.utf8)
        out.append(UInt8(ascii: "\n"))
        data(json, into: &out)
    }
}
