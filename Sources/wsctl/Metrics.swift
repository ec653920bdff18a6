import ArgumentParser
import Control

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the node's metrics in Prometheus' text format.",
        discussion: """
            Reads the status from the daemon's control socket and prints it as Prometheus \
            exposition text (families whalescale_…: peers up, bytes, packets and handshakes per peer, each path's RTT \
            and loss, anchors reachable, the NAT mapping, and every status counter as \
            whalescale_counter_total{name=…}: drops by reason, relay, handoffs, gossip, port \
            mapping), and the port mappings in force. The daemon serves the same text over HTTP \
            when the config has [metrics] listen = "127.0.0.1:9586" (GET /metrics).
            """)

    @ParentCommand var wsctl: WSCtl
    @OptionGroup var socket: SocketOptions

    func run() throws {
        switch try ControlClient.request(.status, socket: socket.path(else: wsctl.socket)) {
        case .status(let s): print(PrometheusText.render(s), terminator: "")
        case .error(let e): throw ControlClient.Failure(description: "daemon refused: \(e)")
        case .echo: throw ControlClient.Failure(description: "unexpected answer from the daemon")
        }
    }
}
