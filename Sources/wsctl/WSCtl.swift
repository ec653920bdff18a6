// wsctl: keys, and talking to a running whalescaled over its control socket.
// One file per verb (STYLE 18).
import ArgumentParser

@main
struct WSCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wsctl",
        abstract: "Whalescale control: keys, and the state of a running node.",
        discussion: """
            Keys are 32-byte values in standard base64, like WireGuard's. A node's secret is an \
            Ed25519 seed; its Noise static key is the X25519 key derived from it.

              (umask 077; wsctl genkey > node.key)
              wsctl pubkey < node.key
              wsctl pubkey --wireguard < node.key   # the key stock WireGuard peers configure for us
              wsctl status            # peers, how each is reached, warnings
              wsctl status --json     # the stable object documented in docs/status-json.md
              wsctl ping h2           # in-tunnel ping: which path answered, in how long
              wsctl netcheck          # NAT with evidence, port mapping, IPv4/IPv6
              wsctl explain h2        # every path to h2, who attested it, why this one
              wsctl metrics           # Prometheus text (HTTP too: [metrics] listen)
              wsctl show-wg           # WireGuard peers, in `wg show`'s layout

            The verbs that talk to the daemon take --socket PATH (before or after the verb). \
            The socket is for the daemon's owner (and node.control_group); anyone else is refused. \
            Reference: docs/wsctl.md.
            """,
        subcommands: [GenKey.self, PubKey.self, Status.self, Ping.self, Netcheck.self, ExplainPeer.self, Metrics.self, ShowWG.self])

    /// `wsctl --socket PATH status` (the form DESIGN §8 documents) as well as `wsctl status --socket PATH`.
    @OptionGroup var socket: SocketOptions
}

/// Where the daemon listens: --socket, else /run/whalescale/<interface>.sock
/// (interface ws0 unless -i names another). Given before the verb or after it.
struct SocketOptions: ParsableArguments {
    @Option(name: .long, help: "Control socket of the daemon (default: /run/whalescale/<interface>.sock).")
    var socket: String?

    @Option(name: [.short, .long], help: "Interface name, to find the default socket (default: ws0).")
    var interface: String?

    /// These options (after the verb) over `outer` (before it).
    func path(else outer: SocketOptions) -> String {
        Self.path(socket: socket, interface: interface, else: outer)
    }

    static func path(socket: String?, interface: String?, else outer: SocketOptions) -> String {
        socket ?? outer.socket ?? "/run/whalescale/\(interface ?? outer.interface ?? "ws0").sock"
    }
}
