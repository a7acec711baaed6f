#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

// What a request gets, whatever carries it: the steps both MockConnection (HTTP/1.1) and MockH2Connection
// (HTTP/2 streams) take, so that an answer and its count in /mock/stats do not depend on the protocol.
// 1. `MockLoopContext.beginRequest`: the head is in; count it and start the plan (profile, endpoint).
// 2. `RequestPlan.readHeader` for each header: the `x-mock-*` overrides.
// 3. `MockRequestBody.scan`: the body is in; read `model`, `stream` and friends.
// 4. `MockLoopContext.decide`: local answers, faults, `--fail-rate`, latency.
// 5. `MockRender.body` or `MockStream.emitGroup`: the bytes of the answer.

/// What to do with a request whose head and body are in.
enum MockDecision {
    /// `POST /mock/profiles/NAME?...`: answer with `MockRender.profileUpdate` after `applyProfileUpdate`.
    case profileUpdate(Result<MockProfile, MockProfile.ParseError>)
    /// Answer at once with an error body.
    case error(Int, StaticString)
    /// `/mock/stats`: gather every thread's counters (`StatsGather`), then answer.
    case stats
    /// `x-mock-fault: reset`.
    case reset
    /// `x-mock-fault: stall`.
    case stall
    /// Wait this long (latency), then `respond`.
    case wait(UInt64)
    /// Answer now: an error status, a whole body, or a stream.
    case respond
}

extension MockLoopContext {
    /// The head of a request is in: counts it and starts its plan from the defaults, a profile (`/NAME/v1/...`) and
    /// the endpoint.
    /// - Returns: the plan, and for `POST /mock/profiles/NAME?...` the profile it asks for (or why it cannot be).
    func beginRequest(method: HTTPMethod, target: UnsafeRawBufferPointer, receivedNs: UInt64)
        -> (RequestPlan, Result<MockProfile, MockProfile.ParseError>?)
    {
        var plan = defaults
        plan.receivedNs = receivedNs
        var target = target
        var update: Result<MockProfile, MockProfile.ParseError>?
        if method == .post, MockLoopContext.startsWith(target, "/mock/profiles/") {
            update = MockLoopContext.parseProfileUpdate(target)
        } else if let (profile, index, rest) = profile(for: target) {
            profile.apply(to: &plan)
            plan.profile = index
            stats.countProfile(index)
            target = rest
        }
        plan.endpoint = MockEndpoint.classify(target)
        stats.requests += 1
        stats.byPath[plan.endpoint.rawValue] += 1
        plan.methodMatches = method == plan.endpoint.method
        plan.isHead = method == .head
        return (plan, update)
    }

    /// Decides the response: local endpoints, faults, `--fail-rate`, then the latency wait. Takes the response id
    /// number of a model request.
    func decide(_ plan: inout RequestPlan, profileUpdate: Result<MockProfile, MockProfile.ParseError>?) -> MockDecision {
        if let profileUpdate { return .profileUpdate(profileUpdate) }
        if plan.endpoint == .other { return .error(404, "no such endpoint") }
        guard plan.methodMatches else { return .error(405, "method not allowed on this endpoint") }
        if plan.endpoint == .mockStats { return .stats }
        if plan.endpoint.isModelAPI {
            plan.sequence = nextSequence()
            if plan.status == 0 && pickedToFail() { plan.status = failStatus }
            switch plan.fault {
            case .reset: return .reset
            case .stall: return .stall
            case .none, .closeMidBody: break
            }
        }
        if plan.latencyNs > 0 { return .wait(plan.latencyNs) }
        return .respond
    }

    /// Sets the profile of a `POST /mock/profiles/NAME` for every thread when it parsed.
    /// - Returns: the status of the answer (`MockRender.profileUpdate` writes its body).
    func applyProfileUpdate(_ update: Result<MockProfile, MockProfile.ParseError>) -> Int {
        guard case .success(let profile) = update else { return 400 }
        shared?.profiles.set(profile)
        return 200
    }

    static func startsWith(_ bytes: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        bytes.count >= prefix.utf8CodeUnitCount && memcmp(bytes.baseAddress!, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0
    }

    /// The profile a `POST /mock/profiles/NAME?key=value&...` target describes.
    static func parseProfileUpdate(_ target: UnsafeRawBufferPointer) -> Result<MockProfile, MockProfile.ParseError> {
        let text = String(decoding: target.dropFirst("/mock/profiles/".utf8.count), as: UTF8.self)
        let parts = text.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        do throws(MockProfile.ParseError) {
            return .success(try MockProfile(
                name: String(parts[0]), settings: parts.count > 1 ? String(parts[1]) : "", separator: "&"))
        } catch {
            return .failure(error)
        }
    }
}

extension RequestPlan {
    /// The status a response starts with: `x-mock-status`, a profile's or `--fail-rate`'s, else 200.
    var responseStatus: Int { status == 0 ? 200 : status }

    /// The dynamic parts of the response body.
    func echo(model: UnsafeMutableRawPointer, modelCount: Int, created: Int) -> Echo {
        Echo(
            model: UnsafeRawBufferPointer(start: model, count: modelCount), sequence: sequence, created: created,
            prompt: promptTokens, completion: completionTokens, chunks: chunks, inputs: inputCount)
    }
}

enum MockRequestBody {
    /// The body is complete: reads `model` (copied into `model`, and counted), `stream`, `stream_options` and the
    /// embedding input count into `plan`. Only model APIs with the right method are scanned.
    /// - Returns: the bytes of the model name copied.
    static func scan(_ body: UnsafeRawBufferPointer, plan: inout RequestPlan, model: UnsafeMutableRawPointer,
                     stats: ThreadStats) -> Int {
        var modelCount = 0
        guard plan.endpoint.isModelAPI && plan.methodMatches && body.count > 0 else { return 0 }
        let fields = JSONFieldScanner.scan(body)
        if let range = fields.model {
            modelCount = copyModel(UnsafeRawBufferPointer(rebasing: body[range]), into: model)
            stats.models.increment(UnsafeRawBufferPointer(start: model, count: modelCount))
        }
        plan.stream = fields.stream ?? false
        if let options = fields.streamOptions {
            plan.includeUsage = BodyScanner.includeUsage(UnsafeRawBufferPointer(rebasing: body[options]))
        }
        if plan.endpoint == .embeddings {
            plan.inputCount = min(BodyScanner.inputCount(body), MockLimits.maxEmbeddingInputs)
        }
        return modelCount
    }

    /// Copies the model name, cut to `maxModelBytes` at an escape and character boundary when longer.
    static func copyModel(_ bytes: UnsafeRawBufferPointer, into model: UnsafeMutableRawPointer) -> Int {
        var count = bytes.count
        if count > MockLimits.maxModelBytes {
            var offset = 0
            while offset < count {
                var unit = 1
                if bytes[offset] == UInt8(ascii: "\\") {
                    unit = offset + 1 < count && bytes[offset + 1] == UInt8(ascii: "u") ? 6 : 2
                }
                if offset + unit > MockLimits.maxModelBytes { break }
                offset += unit
            }
            while offset > 0 && bytes[offset] & 0xC0 == 0x80 { offset -= 1 }
            count = offset
        }
        if count > 0 { model.copyMemory(from: bytes.baseAddress!, byteCount: count) }
        return count
    }
}

extension MockRender {
    /// Whether a successful, not streamed answer on this endpoint has a body to write (`/mock/stats` is gathered
    /// from every thread first; other paths get 404 before this).
    static func hasBody(_ endpoint: MockEndpoint) -> Bool {
        switch endpoint {
        case .mockStats, .other: false
        default: true
        }
    }

    static let healthBody: StaticString = #"{"status":"ok"}"#

    /// About how many bytes `body` writes: room to reserve before it.
    static func bodyEstimate(_ plan: RequestPlan, modelCount: Int) -> Int {
        switch plan.endpoint {
        case .chatCompletions where plan.toolCall, .messages where plan.toolCall: 1024 + modelCount
        case .chatCompletions: 1024 + modelCount + 4 * plan.chunks
        case .completions, .messages: 512 + modelCount + 4 * plan.chunks
        case .embeddings: 256 + modelCount + embeddingBytesPerInput * plan.inputCount
        case .models: modelList.utf8CodeUnitCount
        case .health: healthBody.utf8CodeUnitCount
        case .mockStats, .other: 0
        }
    }

    /// The JSON body of a successful, not streamed answer.
    static func body(_ out: inout ByteBuffer, _ plan: RequestPlan, _ echo: Echo) {
        switch plan.endpoint {
        case .chatCompletions where plan.toolCall: chatToolCompletion(&out, echo)
        case .messages where plan.toolCall: anthropicToolMessage(&out, echo)
        case .chatCompletions: chatCompletion(&out, echo)
        case .completions: textCompletion(&out, echo)
        case .embeddings: embeddings(&out, echo)
        case .messages: anthropicMessage(&out, echo)
        case .models: out.append(modelList)
        case .health: out.append(healthBody)
        case .mockStats, .other: break
        }
    }

    static func profileUpdateEstimate(_ update: Result<MockProfile, MockProfile.ParseError>) -> Int {
        switch update {
        case .success: 128
        case .failure(let error): 256 + error.description.utf8.count
        }
    }

    /// The answer to `POST /mock/profiles/NAME`: the profile set, or the setting that did not parse.
    static func profileUpdate(_ out: inout ByteBuffer, _ update: Result<MockProfile, MockProfile.ParseError>) {
        switch update {
        case .success(let profile):
            out.append("{\"profile\":\"")
            out.append(Array(profile.name.utf8))
            out.append("\",\"status\":")
            out.append(decimal: profile.status)
            out.append("}")
        case .failure(let error):
            let message = error.description
            out.append("{\"error\":{\"message\":\"")
            for byte in message.utf8 where byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") && byte >= 0x20 {
                out.append(byte: byte)
            }
            out.append("\",\"type\":\"invalid_request_error\",\"code\":\"invalid_request\"}}")
        }
    }
}

/// Where the events of a stream go: an HTTP/1.1 chunk each, or an HTTP/2 DATA frame each.
protocol MockEventWriter: AnyObject {
    /// Appends one SSE event that `render` writes.
    func event(_ render: (inout ByteBuffer) -> Void)
}

/// The events of a streamed answer, in groups: a group is what one content delta brings (with the stream's
/// opening events before the first and its closing events after the last), written together.
enum MockStream {
    /// The number of groups of a stream.
    static func groupCount(_ plan: RequestPlan) -> Int {
        plan.toolCall && plan.endpoint != .completions ? MockRender.toolFragments + 1 : max(plan.chunks, 1)
    }

    /// Room to reserve before a group.
    static func groupBytes(modelCount: Int) -> Int { 4096 + 8 * modelCount }

    /// Writes the events of group `index` of `groups`, one `writer.event` each.
    @inline(__always)
    static func emitGroup<Writer: MockEventWriter>(_ index: Int, of groups: Int, plan: RequestPlan, echo: Echo, into writer: Writer) {
        let first = index == 0
        let last = index == groups - 1
        let content = plan.chunks > 0
        switch plan.endpoint {
        case .chatCompletions where plan.toolCall:
            writer.event { MockRender.chatToolChunk(&$0, echo, index: index) }
            if last {
                writer.event { MockRender.chatToolFinish(&$0, echo) }
                if plan.includeUsage { writer.event { MockRender.chatFinish(&$0, echo, part: 1) } }
                writer.event { MockRender.done(&$0) }
            }
        case .messages where plan.toolCall:
            if first {
                writer.event { MockRender.anthropicMessageStart(&$0, echo) }
                writer.event { MockRender.anthropicToolBlockStart(&$0, echo) }
            } else {
                writer.event { MockRender.anthropicToolDelta(&$0, fragment: index - 1) }
            }
            if last {
                writer.event { $0.append(MockRender.anthropicBlockStop) }
                writer.event { MockRender.anthropicToolMessageDelta(&$0, echo) }
                writer.event { $0.append(MockRender.anthropicMessageStop) }
            }
        case .chatCompletions:
            if content { writer.event { MockRender.chatChunk(&$0, echo, index: index) } }
            if last {
                writer.event { MockRender.chatFinish(&$0, echo, part: 0) }
                if plan.includeUsage { writer.event { MockRender.chatFinish(&$0, echo, part: 1) } }
                writer.event { MockRender.done(&$0) }
            }
        case .completions:
            if content { writer.event { MockRender.completionChunk(&$0, echo, index: index) } }
            if last {
                writer.event { MockRender.completionChunk(&$0, echo, index: -1) }
                if plan.includeUsage { writer.event { MockRender.completionChunk(&$0, echo, index: -2) } }
                writer.event { MockRender.done(&$0) }
            }
        case .messages:
            if first {
                writer.event { MockRender.anthropicMessageStart(&$0, echo) }
                writer.event { $0.append(MockRender.anthropicBlockStart) }
            }
            if content { writer.event { MockRender.anthropicDelta(&$0, index: index) } }
            if last {
                writer.event { $0.append(MockRender.anthropicBlockStop) }
                writer.event { MockRender.anthropicMessageDelta(&$0, echo) }
                writer.event { $0.append(MockRender.anthropicMessageStop) }
            }
        default:
            break
        }
    }
}
