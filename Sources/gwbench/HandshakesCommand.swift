import ArgumentParser
import GatewayBench

/// `gwbench handshakes URL`: TLS handshakes per second, full or resumed, and the server's CPU per handshake.
struct HandshakesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handshakes",
        abstract: "TLS handshakes per second against an https:// server: connect, handshake, close, again.")

    @Argument(help: "https://HOST:PORT")
    var url: String
    @Option(name: [.customShort("c", allowingJoined: true), .long], help: "Clients handshaking at once.")
    var connections = 16
    @Option(name: [.customShort("d", allowingJoined: true), .long], help: "Measured duration, e.g. 5s.")
    var duration = "5s"
    @Option(help: "Warm-up before the measured window.")
    var warmup = "500ms"
    @Flag(help: "Offer the server's last session ticket: resumed handshakes.")
    var resume = false
    @Flag(help: "Accept any certificate (a self-signed server).")
    var insecure = false
    @Option(help: "Server CPU to measure over the window: NAME=PID (repeatable).")
    var pid: [String] = []
    @Option(help: "Write the figures as JSON to FILE.")
    var json: String?

    func run() throws {
        var config = HandshakeLoadConfig(target: try parseTarget(url))
        guard connections >= 1 else { throw ValidationError("-c must be at least 1") }
        config.connections = connections
        guard let window = Durations.parse(duration), window > 0 else { throw ValidationError("-d '\(duration)': expected e.g. 5s") }
        config.durationNs = window
        guard let warm = Durations.parse(warmup) else { throw ValidationError("--warmup '\(warmup)': expected e.g. 500ms") }
        config.warmupNs = warm
        config.resume = resume
        config.insecure = insecure
        for entry in pid {
            guard let equals = entry.firstIndex(of: "="), let number = Int32(entry[entry.index(after: equals)...]), number > 0 else {
                throw ValidationError("--pid '\(entry)': expected NAME=PID")
            }
            config.observedProcesses.append(ObservedProcess(name: String(entry[..<equals]), pid: number))
        }
        let result: HandshakeLoadResult
        do {
            result = try HandshakeLoad.run(config)
        } catch {
            throw ValidationError(error.description)
        }
        print(HandshakeReport.text(result, config: config), terminator: "")
        if let json { try write(HandshakeReport.json(result, config: config), to: json) }
        if result.handshakes == 0 { throw ExitCode(1) }
    }
}
