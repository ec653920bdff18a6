// whalescaled: a thin main over Node. Runs one node in the foreground
// (systemd-friendly: logs to stderr, SIGTERM cleans up and exits 0).
import ArgumentParser
import Foundation
import Logging
import Engine
import Config

@main
struct WhalescaleD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whalescaled",
        abstract: "Run a Whalescale node in the foreground.",
        discussion: """
            Reads the TOML config (see README), creates the TUN interface with the node's overlay \
            address, routes each peer's addresses to it, listens on one UDP port for IPv4 and IPv6, \
            and brings up encrypted sessions with the configured members. A bad config is refused \
            with the field and line named. SIGTERM or SIGINT removes the interface and the control \
            socket and exits 0. Logs go to stderr.
            """)

    @Option(name: .long, help: "Path of the TOML configuration file.") var config: String?
    @Option(name: .long, help: ArgumentHelp(
        "Validate FILE (syntax, every field, the key file and its permissions) and exit: 0 if the node would start with it, 2 if not.",
        valueName: "FILE")) var checkConfig: String?
    @Option(name: .long, help: ArgumentHelp(
        "Log level: trace, debug, info (default: one line per state change, nothing per packet or rekey), notice, warning, error, critical.",
        valueName: "LEVEL")) var logLevel: String = "info"

    func validate() throws {
        if config == nil && checkConfig == nil { throw ValidationError("--config FILE is required (or --check-config FILE)") }
        // A typo must not silently mean "info": say which levels exist.
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level \"\(logLevel)\" is not one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        if let path = checkConfig { return try check(path) }
        let config = self.config!
        let level = Logger.Level(rawValue: logLevel)!  // validate() checked it
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "whalescaled")
        if !Daemon.hardenProcess() { logger.warning("could not turn core dumps off; a core dump would hold the secret key") }
        let cfg: Config
        do {
            cfg = try Config.load(path: config)
        } catch {
            FileHandle.standardError.write("whalescaled: \(error)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        for w in cfg.warnings { logger.warning("\(w)") }
        do {
            let d = try Daemon(config: cfg, logger: logger)
            try d.run()
        } catch {
            FileHandle.standardError.write("whalescaled: \(error)\n".data(using: .utf8)!)
            throw ExitCode(1)
        }
    }

    /// `--check-config FILE`: what the daemon would refuse at start, without starting it:
    /// the config's syntax and fields (with file, line and field), the key (file, mode,
    /// format), the control group. Prints the warnings and one line saying it is fine.
    func check(_ path: String) throws {
        do {
            let cfg = try Config.load(path: path)
            var warnings = cfg.warnings
            _ = try cfg.node.loadPrivateKey { warnings.append($0) }
            _ = try cfg.controlGroupID()
            for w in warnings { FileHandle.standardError.write("\(w)\n".data(using: .utf8)!) }
            let anchors = cfg.peers.filter(\.anchor).count
            print("\(path): ok (interface \(cfg.node.interface), \(cfg.peers.count) peer\(cfg.peers.count == 1 ? "" : "s"), \(anchors) anchor\(anchors == 1 ? "" : "s")\(warnings.isEmpty ? "" : ", \(warnings.count) warning\(warnings.count == 1 ? "" : "s")"))")
        } catch {
            FileHandle.standardError.write("whalescaled: \(error)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
    }
}
