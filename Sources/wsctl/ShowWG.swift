import ArgumentParser
import Control

struct ShowWG: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show-wg",
        abstract: "Show the node's stock WireGuard peers in the layout of `wg show`.",
        discussion: """
            Only peers configured with wireguard = true are listed. "public key" is the node's \
            X25519 key: the one to give those peers (also `wsctl pubkey --wireguard`). Roaming of \
            a WireGuard peer is monitored, not obeyed: packets from a new source are counted here \
            and in `wsctl status --json` (peers[].roam).
            """)

    @ParentCommand var wsctl: WSCtl
    @OptionGroup var socket: SocketOptions

    func run() throws {
        let response = try ControlClient.request(.status, socket: socket.path(else: wsctl.socket))
        switch response {
        case .status(let s): print(renderWireGuardShow(s), terminator: "")
        case .error(let e): throw ControlClient.Failure(description: "daemon refused: \(e)")
        case .echo: throw ControlClient.Failure(description: "unexpected answer from the daemon")
        }
    }
}
