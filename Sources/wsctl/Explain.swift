import ArgumentParser
import Control

struct ExplainPeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Explain how a peer is reached: every path, who attested it, why this one.",
        discussion: """
            Lists every path to PEER that the node knows (direct, lan, relay via an anchor), with \
            the probe results (RTT, loss, whether it answers pings now) and who said the peer may \
            be at that address: its own self-signed gossip record (with the record's sequence), \
            an unsigned hint (its candidates or an anchor's introduction), the endpoint cache, \
            or the config. Then which path carries data and why, and for a relayed peer what \
            would make it direct (e.g. "both sides are behind endpoint-dependent NAT; a port \
            mapping on either side would allow a direct path"). PEER is a name, an overlay \
            address or a public key.
            """)

    @ParentCommand var wsctl: WSCtl
    @OptionGroup var socket: SocketOptions
    @Argument(help: "The peer: its name, an overlay address, or its public key.") var peer: String

    func run() throws {
        switch try ControlClient.request(.status, socket: socket.path(else: wsctl.socket)) {
        case .status(let s):
            switch PeerQuery.resolve(peer, in: s.peers) {
            case .success(let i): print(Explain.render(s, peer: i), terminator: "")
            case .failure(let e): throw ControlClient.Failure(description: e.message)
            }
        case .error(let e): throw ControlClient.Failure(description: "daemon refused: \(e)")
        case .echo: throw ControlClient.Failure(description: "unexpected answer from the daemon")
        }
    }
}
