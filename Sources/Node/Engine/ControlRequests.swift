// The control socket's verbs, on the reactor's thread: `status` is answered at
// once; `ping` asks NodeCore to send an ECHO_REQUEST (Protocol/Connectivity/Echo.swift)
// and answers when its `.echoReply` event comes out of `service`, or when a
// reactor timer says the wait is over, whichever is first. Nothing blocks: the
// connection simply stays open in the ControlServer meanwhile.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Reactor
import Glibc

/// A `wsctl ping` in flight.
struct PendingEcho {
    let peer: PeerID
    let timeoutMs: Int
    let reply: (ControlResponse) -> Void
    let timer: TimerID
}

extension Daemon {
    func handle(_ request: ControlRequest, reply: @escaping (ControlResponse) -> Void) {
        switch request {
        case .status:
            reply(.status(status()))
        case .ping(let query, let timeoutMs):
            ping(query, timeoutMs: timeoutMs, reply: reply)
        }
    }

    /// At most this many pings wait at once (the control server has 32 connections anyway).
    static let maxPendingEchoes = 32

    private func ping(_ query: String, timeoutMs: Int, reply: @escaping (ControlResponse) -> Void) {
        let report = status()
        let index: Int
        switch PeerQuery.resolve(query, in: report.peers) {
        case .success(let i): index = i
        case .failure(let e): return reply(.error(e.message))
        }
        guard pendingEchoes.count < Self.maxPendingEchoes else {
            return reply(.error("too many pings in flight (\(Self.maxPendingEchoes)); try again in a moment"))
        }
        let p = PeerID(rawValue: index)
        let now = Self.now()
        guard let txid = core.startEcho(to: p, now: now) else {
            return reply(.error("cannot send to \(report.peers[index].name): no path to it (no address known, no reachable anchor to relay through) and no session"))
        }
        let timer = reactor.addTimer(after: UInt64(timeoutMs) * 1_000_000) { [unowned self] in
            guard let e = self.pendingEchoes.removeValue(forKey: txid) else { return }
            self.core.cancelEcho(txid)
            e.reply(.echo(self.echoReport(e, result: nil)))
        }
        pendingEchoes[txid] = PendingEcho(peer: p, timeoutMs: timeoutMs, reply: reply, timer: timer)
        service(now: now)  // the request (or a handshake for it) leaves now
    }

    /// NodeCore's `.echoReply` event (from `log`).
    func echoReplied(_ r: EchoResult) {
        guard let e = pendingEchoes.removeValue(forKey: r.txid) else { return }
        reactor.cancelTimer(e.timer)
        e.reply(.echo(echoReport(e, result: r)))
    }

    private func echoReport(_ e: PendingEcho, result r: EchoResult?) -> EchoReport {
        let cfg = config.peers[e.peer.rawValue]
        let address = cfg.addresses.first.map { $0.description.split(separator: "/").first.map(String.init) ?? $0.description }
        guard let r else { return EchoReport(peer: cfg.name, address: address, answered: false, timeoutMs: e.timeoutMs) }
        return EchoReport(peer: cfg.name, address: address, answered: true, timeoutMs: e.timeoutMs,
                          rttMs: Double(r.rtt.ns) / 1e6, kind: r.kind, remote: "\(r.remote)",
                          via: r.via.map(peerName), observed: "\(r.observed)")
    }

    /// `node.control_group` as a gid (Config.controlGroupID: an unknown name stops the start, with its line).
    func controlGroupID() throws -> gid_t? { try config.controlGroupID() }
}
