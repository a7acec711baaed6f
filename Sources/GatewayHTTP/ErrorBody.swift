import GatewayIO

/// Error responses: OpenAI-style `{"error":{"message":…,"type":…,"code":…}}`, or on the Anthropic
/// Messages API Anthropic-style `{"type":"error","error":{"type":…,"message":…}}` (with our `code` beside).
public enum ErrorBody {
    /// Appends a complete HTTP/1.1 error response (head and JSON body) to `out`.
    /// - Parameters:
    ///   - close: adds `Connection: close`; the caller then closes after the write.
    ///   - requestID: echoed in `x-request-id` when given.
    public static func appendResponse(
        to out: inout ByteBuffer, status: Int, code: StaticCode, message: String, close: Bool,
        requestID: UnsafeRawBufferPointer? = nil, extraHeaders: String = "", anthropic: Bool = false
    ) {
        let body = anthropic ? anthropicJSON(code: code, message: message) : json(code: code, message: message)
        out.append("HTTP/1.1 ")
        out.append(decimal: status)
        out.append(byte: UInt8(ascii: " "))
        let reason = HTTPStatus.reason(status)
        out.append(UnsafeRawPointer(reason.utf8Start), reason.utf8CodeUnitCount)
        out.append("\r\ncontent-type: application/json\r\ncontent-length: ")
        out.append(decimal: body.count)
        if let requestID, requestID.count > 0 {
            out.append("\r\nx-request-id: ")
            out.append(requestID.baseAddress!, requestID.count)
        }
        if close { out.append("\r\nconnection: close") }
        out.append("\r\n")
        if !extraHeaders.isEmpty { out.append(Array(extraHeaders.utf8)) }
        out.append("\r\n")
        out.append(body)
    }

    public static func json(code: StaticCode, message: String) -> [UInt8] {
        var text = "{\"error\":{\"message\":\""
        text += escape(message)
        text += "\",\"type\":\"\(code.type)\",\"code\":\"\(code.rawValue)\"}}"
        return Array(text.utf8)
    }

    public static func anthropicJSON(code: StaticCode, message: String) -> [UInt8] {
        var text = "{\"type\":\"error\",\"error\":{\"type\":\"\(code.anthropicType)\",\"message\":\""
        text += escape(message)
        text += "\",\"code\":\"\(code.rawValue)\"}}"
        return Array(text.utf8)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u00" + String(scalar.value, radix: 16).leftPadded(to: 2)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
