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
            By default a table: for each peer how it is reached (direct ADDR:PORT, relay via ANCHOR, \
            lan ADDR:PORT, or idle), handshake age, traffic. --json prints the stable object \
            documented in docs/status-json.md, for scripts.
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
            throw ValidationError("daemon refused: \(e)")
        }
    }
}
