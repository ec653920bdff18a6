// Operator pings (`wsctl ping PEER`): an ECHO_REQUEST inside the session,
// answered by the peer's daemon with an ECHO_REPLY sent back exactly the way
// the request came (Wire/ControlMessage.swift). Unlike ICMP through the
// tunnel it needs no route or firewall rule on the peer, and the reply names
// the path that carried it: direct, lan, or relay via an anchor.
//
//   engine                         NodeCore                          peer's NodeCore
//   startEcho(p, now) ───────────> ECHO_REQUEST (session, active path) ──> ECHO_REPLY (same path back)
//   pollEvent() <── .echoReply(EchoResult) <── receiveEchoReply ◀─────────┘
//   its own timer fired: cancelEcho(txid)   (NodeCore keeps no echo timer: the
//                                            asker decides how long to wait)
//
// Owns: the requests in flight, at most `EchoTable.capacity` (the oldest is
// forgotten first), so a client that never cancels costs a bounded table.
// A reply for no request in flight is a counted drop (`echo_unexpected_reply`).

import Support
import Wire
import Crypto

/// What an ECHO_REPLY told us.
public struct EchoResult: Sendable, Equatable {
    public var txid: UInt64
    public var peer: PeerID
    public var rtt: Span
    /// The kind of the path the reply came back on (relay when an anchor carried it).
    public var kind: PathKind
    /// Where it came from: the peer's address, or for a relay the anchor's.
    public var remote: Endpoint
    /// The anchor that relayed it.
    public var via: PeerID?
    /// Where the peer saw our request come from.
    public var observed: Endpoint
}

/// The operator pings in flight, oldest first.
struct EchoTable: Sendable {
    static let capacity = 64
    struct Pending: Sendable, Equatable {
        var txid: UInt64
        var peer: PeerID
        var sentAt: Instant
    }
    private(set) var pending: [Pending] = []

    mutating func add(_ p: Pending) {
        if pending.count >= Self.capacity { pending.removeFirst() }
        pending.append(p)
    }

    mutating func take(_ txid: UInt64, from peer: PeerID) -> Pending? {
        guard let i = pending.firstIndex(where: { $0.txid == txid && $0.peer == peer }) else { return nil }
        return pending.remove(at: i)
    }

    mutating func cancel(_ txid: UInt64) { pending.removeAll { $0.txid == txid } }
}

extension NodeCore {
    /// Sends an ECHO_REQUEST to `p` through its session (on the active path;
    /// queued and a handshake started if there is no session yet, as data
    /// would be; a peer without a path gets one first). Returns the
    /// txid that the `.echoReply` event will carry, or nil when `p` is not a
    /// peer or the request could be neither sent nor queued.
    public mutating func startEcho(to p: PeerID, now: Instant) -> UInt64? {
        start(now)
        guard isPeer(p) else { return nil }
        // As for data (`sendPacket`): a peer without a path gets one now (its
        // static endpoint, or a relay through an anchor while a direct path is sought).
        if tunnels.paths[p].active == nil { ensurePath(p, now: now) }
        let txid = rng.next()
        guard sendControl(.echoRequest(txid: txid), to: p, now: now) else { return nil }
        echoes.add(EchoTable.Pending(txid: txid, peer: p, sentAt: now))
        return txid
    }

    /// The asker stopped waiting: a reply that comes later is counted as unexpected.
    public mutating func cancelEcho(_ txid: UInt64) { echoes.cancel(txid) }

    /// Operator pings still waiting for their reply.
    public var echoesInFlight: Int { echoes.pending.count }

    mutating func receiveEchoReply(_ p: PeerID, txid: UInt64, observed: Endpoint, source: Endpoint, via: PeerID?,
                                   now: Instant) -> NodeInbound {
        guard let sent = echoes.take(txid, from: p) else { return drop(.echoUnexpected) }
        let kind: PathKind
        if via != nil {
            kind = .relay
        } else if let i = tunnels.paths[p].pathIndex(remote: source, via: nil) {
            kind = tunnels.paths[p].paths[i].kind
        } else {
            kind = book.directKind(p, for: source)
        }
        events.push(.echoReply(EchoResult(txid: txid, peer: p, rtt: now - sent.sentAt, kind: kind, remote: source,
                                          via: via, observed: observed)))
        return .consumed
    }
}
