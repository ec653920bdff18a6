// Configures the TUN interface's address and routes with iproute2, once at
// start-up (never on the packet path). wg-quick does the same; netlink would
// save a fork per route, which matters only with thousands of routes.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Foundation
import Logging

enum InterfaceSetup {
    struct Failure: Error, CustomStringConvertible {
        let command: String
        let output: String
        var description: String { "\(command): \(output.trimmingCharacters(in: .whitespacesAndNewlines))" }
    }

    static func ip(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus != 0 {
            throw Failure(command: "ip " + args.joined(separator: " "), output: String(decoding: out, as: UTF8.self))
        }
    }

    /// The addresses on the interface, and a route per peer prefix not already
    /// covered by one of the interface's own subnets.
    static func configure(interface: String, addresses: [CIDR], routes: [CIDR], logger: Logger) throws {
        for a in addresses {
            try ip([a.family == .v4 ? "-4" : "-6", "address", "replace", a.description, "dev", interface])
        }
        for r in routes where !addresses.contains(where: { $0.network.contains(r) }) {
            try ip([r.family == .v4 ? "-4" : "-6", "route", "replace", r.network.description, "dev", interface])
            logger.debug("route \(r.network) dev \(interface)")
        }
    }
}
