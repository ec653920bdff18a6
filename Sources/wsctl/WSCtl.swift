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

              wsctl genkey > node.key && chmod 600 node.key
              wsctl pubkey < node.key
              wsctl status            # peers, how each is reached, warnings
              wsctl status --json     # the stable object documented in docs/status-json.md
            """,
        subcommands: [GenKey.self, PubKey.self, Status.self])
}

/// Where the daemon listens: --socket, else /run/whalescale/<interface>.sock.
struct SocketOptions: ParsableArguments {
    @Option(name: .long, help: "Control socket of the daemon (default: /run/whalescale/<interface>.sock).")
    var socket: String?

    @Option(name: [.short, .long], help: "Interface name, to find the default socket.")
    var interface: String = "ws0"

    var path: String { socket ?? "/run/whalescale/\(interface).sock" }
}
