import ArgumentParser
import CNghttp2
import COpenSSL
import GatewayConfig
import GatewayPolicy
import GatewayProxy
import GatewayStore

@main
struct GatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "A lean OpenAI-compatible gateway in front of many LLM providers.",
        subcommands: [Serve.self, Check.self, Report.self, Version.self]
    )
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the client API until SIGTERM or SIGINT.")

    @Option(help: "The YAML configuration file.") var config: String
    @Option(help: "Listen on HOST:PORT instead of server.listen (port 0 picks a free port).") var listen: String?
    @Option(help: "Reactor threads (default: server.threads, else one per core).") var threads: Int?

    func run() throws {
        let configuration: GatewayConfiguration
        do {
            configuration = try GatewayConfiguration.load(path: config)
        } catch {
            printError("invalid configuration \(config):\n\(error)")
            throw ExitCode(1)
        }
        do {
            let server = try GatewayServer(configuration: configuration, configPath: config, listen: listen, threads: threads)
            throw ExitCode(try server.run())
        } catch let error as ExitCode {
            throw error
        } catch {
            printError("gateway: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a configuration file; each error names its field.")

    @Option(help: "The YAML configuration file.") var config: String

    func run() throws {
        do {
            let configuration = try GatewayConfiguration.load(path: config)
            _ = try RuntimeConfig(configuration)
            for warning in configuration.warnings { printError("warning: \(warning.field): \(warning.message)") }
            print("\(config): ok (\(configuration.providers.count) providers, \(configuration.models.count) models)")
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a chargeback report from the audit store.")

    @Option(help: "The YAML configuration file (its store is read).") var config: String
    @Option(help: "group, key, model or tag.") var by: String = "group"
    @Option(help: "Start date, YYYY-MM-DD (UTC), inclusive.") var since: String?
    @Option(help: "End date, YYYY-MM-DD (UTC), exclusive.") var until: String?
    @Option(help: "table, json or csv.") var format: String = "table"

    func run() throws {
        let configuration: GatewayConfiguration
        do {
            configuration = try GatewayConfiguration.load(path: config)
        } catch {
            printError("invalid configuration \(config):\n\(error)")
            throw ExitCode(1)
        }
        guard let dimension = UsageDimension(rawValue: by) else {
            printError("--by: expected group, key, model or tag, got '\(by)'")
            throw ExitCode(1)
        }
        guard let output = ReportFormat(rawValue: format) else {
            printError("--format: expected table, json or csv, got '\(format)'")
            throw ExitCode(1)
        }
        var bounds: [Int64?] = []
        for (name, text) in [("--since", since), ("--until", until)] {
            guard let text else { bounds.append(nil); continue }
            guard let seconds = CivilTime.secondsOfDate(text) else {
                printError("\(name): expected a date YYYY-MM-DD, got '\(text)'")
                throw ExitCode(1)
            }
            bounds.append(seconds)
        }
        guard let path = configuration.store.sqlite else {
            printError("store: no sqlite store is configured")
            throw ExitCode(1)
        }
        do {
            let store = try Store(path: path)
            let rows = try store.usage(by: dimension, since: bounds[0], until: bounds[1])
            print(renderUsage(rows, format: output, by: dimension, since: bounds[0], until: bounds[1]), terminator: "")
        } catch {
            printError("report: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and the C libraries in use.")

    func run() {
        let nghttp2 = nghttp2_version(0).map { String(cString: $0.pointee.version_str) } ?? "?"
        let openssl = String(cString: OpenSSL_version(Int32(OPENSSL_VERSION)))
        print("gateway 0.1.0 (nghttp2 \(nghttp2), \(openssl))")
    }
}

func printError(_ text: String) {
    var line = text
    if !line.hasSuffix("\n") { line += "\n" }
    FileOutput.standardError(line)
}
