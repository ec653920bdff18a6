// The node-level share of the session layer that `Tunnels` passes to each
// member's `PeerSession` (identity, timings, randomness, the index table and the
// output queues), and the queue type of those outputs.

import Support
import Wire
import Crypto

/// Node-level state a peer's session needs: identity, timings, randomness, the
/// index table and the output queues. Owned by `Tunnels`.
struct SessionContext: Sendable {
    let identity: Identity
    let timings: SessionTimings
    /// `[node] cipher` allows AES-256-GCM: offered in our INITs, accepted in peers' (Whalescale suite only).
    let aesGCM: Bool
    /// This node's TUN takes inner packets with partial checksums (the engine sets it
    /// once its TUN has offloads): DATA header flags offered and accepted (Whalescale suite only).
    var headerFlags = false
    var rng: SessionRandom
    /// Receiver index -> peer, for every live keypair and in-flight initiation.
    var indices: [UInt32: PeerID] = [:]
    /// What the sessions made to send; `to` nil: the member's destination
    /// (Tunnels fills it in from the path manager when draining).
    var transmits = Outbox<SessionTransmit>()
    var events = Outbox<TunnelEvent>()
    /// The last timestamp we put in an initiation (kept strictly increasing).
    var lastTimestamp: HandshakeTimestamp?
    /// Reactors the sessions are split across (1: one lane owns them all). See SessionShard.swift.
    let owners: Int
    /// The data plane is SessionShards (the engine at any reactor count, the
    /// simulator): keys are pushed to the owners, DATA is opened only there,
    /// and each keypair's send counter is shared with its owner. False only for
    /// drivers that seal and open through NodeCore alone (unit tests, benchmarks).
    let split: Bool
    /// Split only: peers whose keypairs changed, for the engine to install on the owning reactor.
    var keyChanges = Outbox<PeerID>()

    /// Split only: makes each new keypair's shared send counter (the engine's is atomic).
    let sendCounters: SendCounterFactory

    init(identity: Identity, timings: SessionTimings, rng: SessionRandom, owners: Int = 1, sharded: Bool = false,
         sendCounters: @escaping SendCounterFactory = { LocalSendCounter() }, cipher: CipherSetting = .auto) {
        self.identity = identity
        self.timings = timings
        aesGCM = cipher.allowsAESGCM
        self.rng = rng
        self.owners = max(1, owners)
        split = sharded || owners > 1
        self.sendCounters = sendCounters
    }

    mutating func keysChanged(_ peer: PeerID) {
        if split { keyChanges.push(peer) }
    }

    /// A new keypair's send counter: shared with the owning reactor when split.
    var newSendCounter: (any SharedSendCounter)? { split ? sendCounters() : nil }

    /// A random index not in use. 32 bits and a few live indices per peer: the
    /// loop ends at once in practice. Split: an index the owning reactor's
    /// steering program sends to it (`SessionOwnership`), so about `owners` tries.
    /// Its bit 8 (the low bit of its second byte) is `pairBit`, which the two
    /// ends of a session set opposite (`SessionOwnership.pairBit`): an anchor
    /// steers a RELAY by that byte, so the two directions of a relayed pair
    /// land on different lanes of an anchor with an even number of them.
    mutating func allocateIndex(for peer: PeerID, pairBit: Bool) -> UInt32 {
        let owner = SessionOwnership.owner(of: peer, owners: owners)
        while true {
            let i = UInt32(truncatingIfNeeded: rng.next()) & ~0x100 | (pairBit ? 0x100 : 0)
            if indices[i] == nil, SessionOwnership.owner(ofIndex: i, owners: owners) == owner {
                indices[i] = peer
                return i
            }
        }
    }

    mutating func freeIndex(_ i: UInt32) { indices.removeValue(forKey: i) }

    mutating func nextTimestamp(_ wallClock: HandshakeTimestamp) -> HandshakeTimestamp {
        var t = wallClock
        if let last = lastTimestamp, t <= last { t = last.successor }
        lastTimestamp = t
        return t
    }
}

/// A datagram a session made, before Tunnels addressed it.
struct SessionTransmit: Sendable {
    /// Nil: wherever the member's path manager says (`PathSet.destination`) at drain time.
    let to: Endpoint?
    let bytes: [UInt8]
    let peer: PeerID?
}

/// A FIFO that reuses its storage once drained (amortised allocation-free).
struct Outbox<Element: Sendable>: Sendable {
    private var items: [Element] = []
    private var head = 0
    var count: Int { items.count - head }
    mutating func push(_ e: Element) { items.append(e) }
    mutating func pop() -> Element? {
        guard head < items.count else { return nil }
        let e = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return e
    }
}
