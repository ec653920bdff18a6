// The rules between lanes, as one sans-IO type that the daemon's lanes
// (Engine/DataPath.swift, Engine/Daemon.swift) and the simulator
// (Tests/NodeTests/Connectivity/NetSim.swift) both run, so the simulator
// tests the glue the daemon runs.
//
//   datagram ─▶ kernel steering (BPF, `steer`) ─▶ lane k ─▶ SessionShard k
//        .packet             ─▶ deliver to the TUN here
//        .control            ─▶ NodeCore (lane 0; another lane hands the plaintext over)
//        .transmit           ─▶ (anchor) a RELAY this lane forwarded: send it from where it lies
//        .core               ─▶ NodeCore (lane 0; another lane hands the datagram over)
//        .elsewhere(o)       ─▶ hand the datagram to lane o, once
//   NodeCore .handoff(o)     ─▶ hand the datagram to lane o, once
//
// A datagram handed over once is never handed on again (`.loop`, counted as
// `handoff_loop`): the rules cannot send one round the lanes.
//
// And after NodeCore ran, `ShardSync` says what the owners must be told:
// new keys, changed routes, a changed anchor list (or new keys with an anchor), and on an
// anchor a changed relay table (every lane forwards RELAY: Connectivity/RelayTable.swift).
// What the driver could not deliver (a full mailbox) is offered again next time.
import Support
import Wire

/// Where a datagram goes next, for a lane that just ran its shard (or NodeCore) on it.
public enum LaneStep: Equatable, Sendable {
    /// An IP packet for the TUN, decrypted in place.
    case deliver(PeerID, offset: Int, length: Int)
    /// A control message (plaintext in place) for NodeCore: run it here on lane 0, else hand it to lane 0.
    case control(PeerID, offset: Int, length: Int, via: PeerID?)
    /// The whole datagram is NodeCore's: run it here on lane 0, else hand it to lane 0.
    case core
    /// (Anchor) send `buffer[offset ..< offset + length]` to the endpoint: a RELAY forwarded on this lane.
    case transmit(Endpoint, offset: Int, length: Int)
    /// Hand the whole datagram to lane `k`.
    case handTo(Int)
    /// It was handed over already and would be handed on again: drop and count.
    case loop
    /// Nothing more to do (consumed, or dropped and counted by the shard).
    case done
}

/// The rules between `lanes` lanes (see the header). N = 1 is the same rules with one lane.
public struct LaneRouter: Sendable {
    public let lanes: Int
    /// An anchor forwards RELAY on whichever lane it lands (the relay table is
    /// published to every lane). Steering reads the DATA inside a RELAY on every
    /// node: a member by the inner receiver index's low byte (its owner), an
    /// anchor by its second byte, whose low bit the two ends of a session set
    /// opposite (`SessionOwnership.pairBit`), so a relayed pair's two directions
    /// land on different lanes (with an even number of lanes; more pairs spread
    /// over the rest). A RELAY for the anchor itself may then land off its owner
    /// and is handed over once (`handoff_datagrams`), as any mis-steered datagram.
    public let isAnchor: Bool

    public init(lanes: Int, isAnchor: Bool) {
        self.lanes = max(1, lanes)
        self.isAnchor = isAnchor
    }

    /// Whether steering reads the DATA inside a RELAY (on every node: see `isAnchor`).
    public static let relayInner = true

    /// The lane that owns `peer`'s session.
    @inline(__always)
    public func owner(of peer: PeerID) -> Int { SessionOwnership.owner(of: peer, owners: lanes) }

    /// The lane the kernel's steering program delivers this datagram to (`CReactor/steering.c`).
    @inline(__always)
    public func steer(_ p: UnsafeRawBufferPointer, length: Int) -> Int {
        SessionOwnership.owner(ofDatagram: p, length: length, owners: lanes, relayInner: Self.relayInner, anchor: isAnchor)
    }

    /// What lane `lane` does after its shard answered `result`.
    public func afterShard(_ result: ShardInbound, handedOver: Bool) -> LaneStep {
        switch result {
        case .packet(let peer, let offset, let length): return .deliver(peer, offset: offset, length: length)
        case .control(let peer, let offset, let length, let via): return .control(peer, offset: offset, length: length, via: via)
        case .core: return .core
        case .forward(let to, let offset, let length): return .transmit(to, offset: offset, length: length)
        case .elsewhere(let k): return handedOver ? .loop : .handTo(k)
        case .consumed, .drop: return .done
        }
    }

    /// What lane `lane` does when NodeCore answered `.handoff(k)` (session data another lane owns).
    public func afterCoreHandoff(to k: Int, at lane: Int, handedOver: Bool) -> LaneStep {
        if handedOver { return .loop }
        return k == lane ? .done : .handTo(k)
    }

    /// Whether lane `lane` may hand a datagram to lane 0 for NodeCore (false: it was handed over already).
    public func toCore(at lane: Int, handedOver: Bool) -> LaneStep {
        if lane == 0 { return .core }
        return handedOver ? .loop : .handTo(0)
    }
}

/// What the control plane (NodeCore, lane 0) must push to the lanes that own the
/// sessions, computed as a difference from what was delivered before.
package struct ShardSync: Sendable {
    /// One thing for one lane to apply.
    package enum Push: Sendable {
        case keys(PeerID, KeypairSlots)
        case route(PeerID, DataRoute?)
        case anchors([RelayAnchor])
        case relayTable(RelayTable)
    }

    package let router: LaneRouter
    private var keysToSend = Set<PeerID>()
    private var sentRoutes: [DataRoute?]
    private var sentAnchors: [RelayAnchor] = []
    private var anchorsSentTo: [Bool]
    private var sentRelayTable = RelayTable()
    private var relayTableSentTo: [Bool]
    /// Syncs since the relay table was last compared in full.
    private var relayTableAge = 0
    /// A full compare at least this often (syncs), whatever changed: a safety net.
    static let relayTableRecheck = 256

    package init(router: LaneRouter, peers: Int) {
        self.router = router
        sentRoutes = Array(repeating: nil, count: peers)
        anchorsSentTo = Array(repeating: true, count: router.lanes)
        relayTableSentTo = Array(repeating: true, count: router.lanes)
    }

    /// Runs every push NodeCore's state calls for; `apply(lane, push)` returns false
    /// when it could not deliver (offered again on the next call).
    package mutating func sync(_ core: inout NodeCore, _ apply: (Int, Push) -> Bool) {
        // The relay table is a function of the members' keys and routes (RelayTable.swift):
        // it is compared (O(members), a few copies each) only after one of them changed.
        var relayInputsChanged = false
        while let p = core.pollKeyChange() {
            keysToSend.insert(p)
            relayInputsChanged = true
        }
        for p in keysToSend where apply(router.owner(of: p), .keys(p, core.shardKeys(of: p))) {
            keysToSend.remove(p)
        }
        for i in sentRoutes.indices {
            let p = PeerID(rawValue: i)
            let r = core.dataRoute(for: p)
            guard r != sentRoutes[i] else { continue }
            relayInputsChanged = true
            if apply(router.owner(of: p), .route(p, r)) { sentRoutes[i] = r }
        }
        // The anchors and our sessions' keys with them: re-sent when either changes (a rekey too).
        if !core.relayAnchorsEqual(sentAnchors) {
            sentAnchors = core.relayAnchorList
            anchorsSentTo = Array(repeating: false, count: router.lanes)
        }
        for k in anchorsSentTo.indices where !anchorsSentTo[k] {
            anchorsSentTo[k] = apply(k, .anchors(sentAnchors))
        }
        // An anchor's relay table, to every lane (each forwards what lands on it).
        guard router.isAnchor else { return }
        relayTableAge += 1
        if relayInputsChanged || relayTableAge >= Self.relayTableRecheck || sentRelayTable.members.isEmpty {
            relayTableAge = 0
            if !core.relayTableEqual(sentRelayTable) {
                sentRelayTable = core.relayTable
                relayTableSentTo = Array(repeating: false, count: router.lanes)
            }
        }
        for k in relayTableSentTo.indices where !relayTableSentTo[k] {
            relayTableSentTo[k] = apply(k, .relayTable(sentRelayTable))
        }
    }
}

extension SessionShard {
    /// Applies one push from `ShardSync` (on the lane that owns this shard).
    package mutating func apply(_ push: ShardSync.Push) {
        switch push {
        case .keys(let p, let keys): install(keys, for: p)
        case .route(let p, let r): setRoute(r, for: p)
        case .anchors(let list): setAnchors(list)
        case .relayTable(let t): setRelayTable(t)
        }
    }
}

/// What a synchronous driver of the lanes must hear about (the daemon counts
/// `handoff_loop` for the second; the first must never happen).
public enum LaneFault: Equatable, Sendable {
    /// Session data landed on lane `on`, but lane `owner` owns it: the kernel's
    /// steering and our choice of receiver indices disagree.
    case misSteered(on: Int, owner: Int)
    /// A datagram handed over once was to be handed on again.
    case loop
    /// More hops than the rules allow (a bug in the rules).
    case roundTheLanes
}

extension LaneRouter {
    /// One datagram through every lane on one thread, by the rules above, as a
    /// single-threaded driver runs the daemon's lanes (the simulator, the fuzz
    /// harness). `shard(k)` runs lane k's shard on the datagram, `opened` hands
    /// NodeCore a control message that a shard decrypted in place, `core` hands
    /// NodeCore the whole datagram; `fault` hears what the daemon would count
    /// or what must not happen.
    public func deliver(_ b: UnsafeMutableRawBufferPointer, length: Int,
                        shard: (Int) -> ShardInbound,
                        opened: (_ peer: PeerID, _ offset: Int, _ length: Int, _ via: PeerID?) -> NodeInbound,
                        core: () -> NodeInbound,
                        fault: (LaneFault) -> Void) -> NodeInbound {
        var k = steer(UnsafeRawBufferPointer(b), length: length)
        var handedOver = false
        for _ in 0..<4 {
            let result = shard(k)
            if case .drop(let r) = result { return .drop(r) }
            switch afterShard(result, handedOver: handedOver) {
            case .deliver(let p, let off, let len): return .packet(p, offset: off, length: len)
            case .transmit(let to, let off, let len): return .transmit(to, offset: off, length: len)
            case .control(let p, let off, let len, let via): return opened(p, off, len, via)
            case .done: return .consumed
            case .loop:
                fault(.loop)
                return .consumed
            case .handTo(let o):
                // DATA is steered to its owner by the receiver index we chose; so is a
                // RELAY carrying DATA for a member. An anchor forwards a RELAY where it lands,
                // and hands over only one for itself (steered by the pair byte, not the owner).
                if length > 0, b[0] == MessageType.data.rawValue || (b[0] == MessageType.relay.rawValue && !isAnchor) {
                    fault(.misSteered(on: k, owner: o))
                }
                k = o
                handedOver = true
            case .core:
                switch toCore(at: k, handedOver: handedOver) {
                case .handTo(let o):
                    k = o
                    handedOver = true
                    continue
                case .loop:
                    fault(.loop)
                    return .consumed
                default:
                    break
                }
                let r = core()
                guard case .handoff(let o) = r else { return r }
                switch afterCoreHandoff(to: o, at: k, handedOver: handedOver) {
                case .handTo(let o):
                    k = o
                    handedOver = true
                case .loop:
                    fault(.loop)
                    return .consumed
                default:
                    handedOver = true  // its owner is this lane: opened here, as the daemon does
                }
            }
        }
        fault(.roundTheLanes)
        return .consumed
    }
}
