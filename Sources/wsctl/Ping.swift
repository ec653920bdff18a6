import ArgumentParser
import Control
import Foundation

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping",
        abstract: "Ping a peer inside the tunnel and say which path answered.",
        discussion: """
            Not ICMP: the daemon sends an encrypted ECHO_REQUEST inside the peer's session \
            (starting a handshake if there is none), and the peer's daemon answers with an \
            ECHO_REPLY sent back exactly the way the request came. Each reply prints the path \
            that carried it and the round-trip time, e.g.

              pong from h2 (10.77.0.22) via direct 203.0.113.102:51820 in 0.8 ms
              pong from h3 (10.77.0.23) via relay anchor-1 (203.0.113.10:51820) in 4.1 ms

            It needs no route, firewall rule or address on the peer's tunnel interface, so it \
            tells a broken path from a broken inner network. PEER is a name from the config, an \
            overlay address (one inside a peer's routes) or a public key. Ends with a summary; \
            exits 1 if no ping was answered.
            """)

    @ParentCommand var wsctl: WSCtl
    // Not SocketOptions: its -i (interface) would clash with ping's -i (interval).
    @Option(name: .long, help: "Control socket of the daemon (default: /run/whalescale/<interface>.sock).")
    var socket: String?
    @Option(name: .long, help: "Interface name, to find the default socket (default: ws0).")
    var interface: String?
    @Argument(help: "The peer: its name, an overlay address, or its public key.") var peer: String
    @Option(name: .short, help: "Number of pings to send (1...1000).") var c: Int = 3
    @Option(name: .short, help: "Seconds between pings (0.05...60).") var i: Double = 1
    @Option(name: .customLong("timeout"), help: "Seconds to wait for each reply (0.05...4).") var timeout: Double = 2

    func validate() throws {
        guard (1...1000).contains(c) else { throw ValidationError("-c must be 1...1000") }
        guard i >= 0.05, i <= 60 else { throw ValidationError("-i must be 0.05...60 seconds") }
        guard timeout >= 0.05, timeout <= 4 else { throw ValidationError("--timeout must be 0.05...4 seconds") }
    }

    func run() throws {
        let path = SocketOptions.path(socket: socket, interface: interface, else: wsctl.socket)
        var summary = EchoSummary()
        var name = peer
        for k in 0..<c {
            if k > 0 { Thread.sleep(forTimeInterval: i) }
            let request = ControlRequest.ping(peer: peer, timeoutMs: Int((timeout * 1000).rounded()))
            switch try ControlClient.request(request, socket: path) {
            case .echo(let r):
                name = r.peer
                summary.add(r)
                print(r.line)
            case .error(let e):
                throw ControlClient.Failure(description: "daemon refused: \(e)")
            case .status:
                throw ControlClient.Failure(description: "the daemon answered a ping with a status: is it an older whalescaled?")
            }
            fflush(nil)  // each line as it comes, also into a pipe
        }
        print("--- \(name): \(summary.line)")
        if summary.received == 0 { throw ExitCode(1) }
    }
}
