// N nodes running the real gossip machines (`Protocol/Gossip/Gossip.swift`)
// over a `NetworkModel`, with a virtual clock. No reimplementation: every
// message is the bytes the machines produced, delivered after the model's
// delay (or lost). Bytes are counted as sent on the wire: the gossip message
// inside a DATA message (16-byte header, 16-byte tag) in UDP over IPv4.
import Support
import Wire
import Crypto
import Protocol

public final class GossipWorld {
    public static let wireOverhead = 16 + 16 + 8 + 20

    public let roster: GossipRoster
    public let identities: [Identity]
    public private(set) var nodes: [Gossip]
    public var network: NetworkModel
    public private(set) var now = Instant(ns: 1_000_000_000)
    /// Wire bytes and datagrams sent, per node and in all.
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var datagramsSent: UInt64 = 0
    /// Called after every delivery to node j (for convergence tracking).
    public var onDelivered: ((Int) -> Void)?

    private enum Event: Sendable {
        case deliver(to: Int, from: Int, bytes: [UInt8])
        case wake(Int)
    }
    private var queue = EventQueue<Event>()
    private var wakeAt: [Instant?]

    /// Nodes with deterministic keys (from `seed`) and a record each (sequence 1,
    /// one observed endpoint), which every node already holds: the converged state.
    public init(nodes n: Int, timings: GossipTimings = .default, network: NetworkModel, seed: UInt64) {
        var rng = SessionRandom(seed: seed)
        var ids: [Identity] = []
        ids.reserveCapacity(n)
        for _ in 0..<n {
            var b = [UInt8](repeating: 0, count: 32)
            for k in stride(from: 0, to: 32, by: 8) { withUnsafeBytes(of: rng.next()) { b.replaceSubrange(k..<(k + 8), with: $0) } }
            ids.append(Identity(secret: SecretKey(bytes: b)!))
        }
        identities = ids
        roster = GossipRoster(keys: ids.map(\.publicKey))
        self.network = network
        var shared: [StoredRecord?] = []
        shared.reserveCapacity(n)
        for (i, id) in ids.enumerated() {
            let r = EndpointRecord.signed(by: id, sequence: 1, endpoints: [Candidate(Self.endpoint(i, version: 1), .observed)])
            shared.append(Gossip.share(r))
        }
        var ns: [Gossip] = []
        ns.reserveCapacity(n)
        for i in 0..<n {
            var g = Gossip(roster: roster, me: i, identity: ids[i], timings: timings, seed: seed &+ UInt64(i) &* 0x9E37)
            g.adopt(shared)
            ns.append(g)
        }
        nodes = ns
        wakeAt = Array(repeating: nil, count: n)
        for i in 0..<n {
            nodes[i].start(now: now)
            drain(i)
        }
    }

    /// Node i's endpoint in version v of its record (an address per node and version).
    public static func endpoint(_ i: Int, version: Int) -> Endpoint {
        var a = IPAddressBytes()
        a.hi = (UInt64(0xC633_6400 | UInt32(truncatingIfNeeded: i & 0xFF)) << 32)  // 198.51.100.x
        return Endpoint(family: .v4, address: a, port: UInt16(truncatingIfNeeded: 20000 + i * 7 + version))
    }

    /// Node i's endpoints change (a new record, pushed).
    public func publish(_ i: Int, version: Int) {
        nodes[i].publish([Candidate(Self.endpoint(i, version: version), .observed)], now: now)
        drain(i)
    }

    /// Node i goes down (it keeps its state, as a sleeping laptop) or comes back up;
    /// every other node learns it through its session going down or up.
    public func setDown(_ i: Int, _ isDown: Bool) {
        if isDown { network.down.insert(i) } else { network.down.remove(i) }
        for j in nodes.indices where j != i && !network.down.contains(j) {
            if isDown { nodes[j].peerDown(PeerID(rawValue: i)) } else {
                nodes[j].peerUp(PeerID(rawValue: i), now: now)
                drain(j)
            }
        }
    }

    /// Runs every event up to `t` (inclusive); returns early when `until` says so after an event.
    public func run(until t: Instant, stop: (() -> Bool)? = nil) {
        while let next = queue.nextTime, next <= t {
            let (at, e) = queue.pop()!
            now = at
            switch e {
            case .deliver(let to, let from, let bytes):
                guard !network.down.contains(to) else { continue }
                nodes[to].handle(bytes, from: PeerID(rawValue: from), now: now)
                drain(to)
                onDelivered?(to)
            case .wake(let i):
                guard wakeAt[i] == at else { continue }  // superseded
                wakeAt[i] = nil
                nodes[i].handleTimeout(now: now)
                drain(i)
            }
            if let stop, stop() { return }
        }
        if now < t { now = t }
    }

    private func drain(_ i: Int) {
        while let m = nodes[i].pollTransmit() {
            bytesSent &+= UInt64(m.bytes.count + Self.wireOverhead)
            datagramsSent &+= 1
            if let d = network.delay(from: i, to: m.to.rawValue) {
                queue.push(.deliver(to: m.to.rawValue, from: i, bytes: m.bytes), at: now + d)
            }
        }
        while nodes[i].pollEvent() != nil {}
        if let (d, _) = nodes[i].pollTimeout(), wakeAt[i].map({ d < $0 }) ?? true {
            wakeAt[i] = d
            queue.push(.wake(i), at: max(d, now))
        }
    }
}
