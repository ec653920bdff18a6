import ArgumentParser
import Control

struct Netcheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netcheck",
        abstract: "Show this node's NAT, port mapping, LAN peers and IPv4/IPv6, with the evidence.",
        discussion: """
            Reads what the daemon already knows; it sends nothing new. The NAT's mapping behaviour \
            (RFC 4787) comes from comparing where each anchor sees this node's packets come from: \
            the same public port for every anchor is endpoint-independent (hole punching works), \
            different ports is endpoint-dependent ("symmetric": such peers meet through a relay), \
            an anchor seeing one of our own addresses means no NAT; fewer than two anchors cannot \
            tell. Each anchor's observation is listed with its age. Then the port mapping in force \
            (PCP, NAT-PMP or UPnP, and the public endpoint the gateway mapped) or what was tried, \
            the peers reached over a LAN path, and whether IPv4 and IPv6 are available (local and \
            public addresses). --json prints the same as an object (docs/wsctl.md).
            """)

    @ParentCommand var wsctl: WSCtl
    @OptionGroup var socket: SocketOptions
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        switch try ControlClient.request(.status, socket: socket.path(else: wsctl.socket)) {
        case .status(let s):
            let r = NetcheckReport(s)
            print(json ? ControlCodec.prettyJSON(r) : r.text, terminator: json ? "\n" : "")
        case .error(let e): throw ControlClient.Failure(description: "daemon refused: \(e)")
        case .echo: throw ControlClient.Failure(description: "unexpected answer from the daemon")
        }
    }
}
