// whalescaled: a thin main over Node. Runs one node in the foreground
// (systemd-friendly: logs to stderr, SIGTERM cleans up and exits 0).
import ArgumentParser
import Foundation
import Logging
import Engine
import Config
import Crypto

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

            --wireguard IFNAME runs instead a userspace WireGuard device, as wireguard-go does \
            (docs/wireguard.md, "Drop-in mode"): it creates the interface IFNAME with no key and no \
            peers, serves WireGuard's UAPI on /var/run/wireguard/IFNAME.sock for wg and wg-quick, \
            goes to the background once both exist (not with -f or WG_PROCESS_FOREGROUND=1), and \
            exits, removing both, on SIGTERM/SIGINT or when the interface is deleted.
            """,
        version: "whalescaled, libsodium \(Sodium.version)")

    @Option(name: .long, help: "Path of the TOML configuration file.") var config: String?
    @Option(name: .long, help: ArgumentHelp(
        "Validate FILE (syntax, every field, the key file and its permissions) and exit: 0 if the node would start with it, 2 if not.",
        valueName: "FILE")) var checkConfig: String?
    @Option(name: .long, help: ArgumentHelp(
        "Run as a userspace WireGuard device named IFNAME, configured with wg / wg-quick (no config file).",
        valueName: "IFNAME")) var wireguard: String?
    @Flag(name: [.short, .long], help: "With --wireguard: stay in the foreground (also WG_PROCESS_FOREGROUND=1).")
    var foreground = false
    @Option(name: .long, help: ArgumentHelp(
        "Log level: trace, debug, info (default: one line per state change, nothing per packet or rekey), notice, warning, error, critical.",
        valueName: "LEVEL")) var logLevel: String = "info"

    func validate() throws {
        if config == nil && checkConfig == nil && wireguard == nil {
            throw ValidationError("--config FILE is required (or --check-config FILE, or --wireguard IFNAME)")
        }
        if let name = wireguard {
            if config != nil || checkConfig != nil { throw ValidationError("--wireguard IFNAME takes no config file") }
            let u = Array(name.utf8)
            if u.isEmpty || u.count > 15 || name == "." || name == ".."
                || u.contains(where: { $0 <= 0x20 || $0 == 0x2F || $0 == 0x3A || $0 >= 0x7F }) {
                throw ValidationError("--wireguard \(String(reflecting: name)): not an interface name (1 to 15 characters, no '/', ':' or spaces)")
            }
        }
        // A typo must not silently mean "info": say which levels exist.
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level \"\(logLevel)\" is not one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        if let path = checkConfig { return try check(path) }
        if let name = wireguard { return try runWireGuard(name) }
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

    /// `--wireguard IFNAME`: the drop-in WireGuard device. In the background by
    /// default: this process starts itself again in the foreground, in a new
    /// session, and exits 0 once that one says the interface and the UAPI socket
    /// exist (1 if it dies first), as wireguard-go does.
    func runWireGuard(_ name: String) throws {
        let env = ProcessInfo.processInfo.environment
        if !foreground && env["WG_PROCESS_FOREGROUND"] != "1" {
            throw ExitCode(Background.spawnAndWait(interface: name))
        }
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "whalescaled")
        if !Daemon.hardenProcess() { logger.warning("could not turn core dumps off; a core dump would hold the secret key") }
        do {
            let d = try Daemon(wireGuardInterface: name, logger: logger)
            if let text = env["WS_READY_FD"], let fd = Int32(text), fd > 2 {
                d.onReady = {
                    var one: UInt8 = 1
                    _ = write(fd, &one, 1)
                    close(fd)
                }
            }
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

/// Going to the background (drop-in mode): the daemon is this program again,
/// spawned with WG_PROCESS_FOREGROUND=1 in its own session, stdin on /dev/null
/// (stdout and stderr too unless LOG_LEVEL is set, as with wireguard-go); it
/// writes one byte to the pipe named by WS_READY_FD when it is ready.
enum Background {
    static func spawnAndWait(interface: String) -> Int32 {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return fail("pipe: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        var env = ProcessInfo.processInfo.environment
        env["WG_PROCESS_FOREGROUND"] = "1"
        env["WS_READY_FD"] = String(writeEnd)
        let quiet = (env["LOG_LEVEL"] ?? "silent") == "silent"
        let args = CommandLine.arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if quiet {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, 0x80)  // POSIX_SPAWN_SETSID (glibc 2.26+; not imported into Swift)
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv, envp)
        close(writeEnd)
        guard rc == 0 else {
            close(readEnd)
            return fail("cannot start the daemon: \(String(cString: strerror(rc)))")
        }
        var byte: UInt8 = 0
        var n: Int
        repeat { n = read(readEnd, &byte, 1) } while n < 0 && errno == EINTR
        close(readEnd)
        if n == 1 { return 0 }
        // It closed the pipe without saying so: it failed (its reason is on stderr when LOG_LEVEL is set).
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        return fail("the daemon for \(interface) did not start\(quiet ? " (set LOG_LEVEL=debug or run with -f to see why)" : "")")
    }

    static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write("whalescaled: \(message)\n".data(using: .utf8)!)
        return 1
    }
}
