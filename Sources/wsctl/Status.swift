import ArgumentParser
import Reactor
import Foundation
import Control
import Crypto

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the node: its peers, how each is reached, anchors, warnings.",
        discussion: """
            By default a table: this node's addresses, endpoints and NAT mapping, the anchors and \
            whether each answers, then for each peer its overlay address, session state, how it is \
            reached (direct ADDR:PORT, relay via ANCHOR, lan ADDR:PORT), the active path's RTT, the \
            last handshake and bytes in and out; counters and warnings last. The table's \
            layout may change: scripts should use --json, the stable object documented in \
            docs/status-json.md.
            """)

    @ParentCommand var wsctl: WSCtl
    @OptionGroup var socket: SocketOptions
    @Flag(help: "Print the status object as JSON.") var json = false

    func run() throws {
        let response = try ControlClient.request(.status, socket: socket.path(else: wsctl.socket))
        switch response {
        case .status(let s):
            print(json ? ControlCodec.prettyJSON(s) : renderStatusTable(s), terminator: json ? "\n" : "")
        case .error(let e):
            throw ControlClient.Failure(description: "daemon refused: \(e)")
        case .echo:
            throw ControlClient.Failure(description: "unexpected answer from the daemon")
        }
    }
}
