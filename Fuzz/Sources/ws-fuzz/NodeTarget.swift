// S1 (review C.3): NodeCore.receive, stateful.
//
// At start, a small mesh runs for a few virtual seconds on a lossless
// in-process network (no NAT, every node at its own address):
//
//     anchor-1 192.0.2.1:51820     anchor-2 192.0.2.2:51820
//            \                      /
//         a 192.0.2.10:51820 ---- b 192.0.2.11:51820
//
// Member `a`'s NodeCore after that run, with sessions to both anchors and to b,
// is the template (node-receive; node-receive-split: the same with the sessions
// split across 3 SessionShards, routed as the engine's lanes do); every input starts from a copy of it. The datagrams `a`
// received during the run are kept ("captured").
//
// An input is a sequence of records:
//
//   [source: u8][dt: u8][len: u16 LE][len bytes]
//
//   source % 6      0 anchor-1, 1 anchor-2, 2 b, 3 b's other port, 4 and 5 strangers
//   source & 0x80   underLoad
//   dt              virtual milliseconds * 8 before this datagram (timers run first)
//   len & 0x8000    the datagram is captured[bytes[0] % count] XOR the rest of
//                   the bytes (authentic traffic, replayed or altered); else the
//                   bytes themselves (len & 0x7FFF of them)
//
// Invariants: no crash; a datagram from a stranger that the fuzzer made up
// (it cannot forge a MAC) makes `a` send that stranger at most as many bytes as
// it received: no amplification, in place or through pollTransmit.
import Support
import Wire
import Crypto
import Protocol

/// One node as the engine drives it: NodeCore on reactor 0, and the sessions' keys
/// in one SessionShard per reactor (one with `owners` = 1), routed and synced by the
/// engine's own rules (LaneRouter, ShardSync: Protocol/Lanes/LaneRouter.swift).
struct Host: Sendable {
    var core: NodeCore
    var shards: [SessionShard]
    var sync: ShardSync
    let router: LaneRouter
    let owners: Int

    init(identity: Identity, members: [MemberSpec], anchor: Bool, seed: UInt64, owners: Int) {
        self.owners = owners
        let c = NodeCore(identity: identity, members: members, isAnchor: anchor, seed: seed, owners: owners, sharded: true)
        core = c
        // An anchor's lanes take from one relay budget per member (the engine's AtomicRelayBudget).
        let budget = LocalRelayBudget(members: members.count, rule: c.relayBudgetRule)
        shards = (0..<owners).map {
            SessionShard(index: $0, owners: owners, roster: c.roster, isAnchor: anchor, relayBudget: budget)
        }
        router = LaneRouter(lanes: owners, isAnchor: anchor)
        sync = ShardSync(router: router, peers: members.count)
    }

    /// One datagram in, as the engine's lanes take it.
    mutating func receive(_ b: UnsafeMutableRawBufferPointer, length: Int, from source: Endpoint, now: Instant,
                          underLoad: Bool = false) -> NodeInbound {
        // The daemon's rules (LaneRouter.deliver); a fault the daemon would only count is no oracle here.
        var steeredWrong = false
        let router = self.router
        let r = router.deliver(b, length: length,
                               shard: { k in self.shards[k].receive(b, length: length, from: source, now: now) },
                               opened: { p, off, len, via in
                                   self.core.receiveOpened(from: p, payload: UnsafeRawBufferPointer(rebasing: b[off..<(off + len)]),
                                                      source: source, via: via, now: now)
                               },
                               core: { self.core.receive(b, length: length, from: source, now: now, underLoad: underLoad) },
                               fault: { f in if f == .roundTheLanes { steeredWrong = true } })
        if steeredWrong { fatalError("oracle: a datagram went round the lanes (type \(length > 0 ? b[0] : 0), \(length) bytes)") }
        return r
    }

    mutating func fire(now: Instant) {
        if let (deadline, _) = core.pollTimeout(), deadline <= now {
            core.handleTimeout(now: now, wallClock: MeshFixture.wallClock(now))
        }
    }

    /// The shards' reports to the core, the core's datagrams out, new keys and routes to the shards.
    mutating func drain(now: Instant, _ emit: (Transmit) -> Void) {
        for k in shards.indices {
            _ = shards[k].flushActivity(now: now)
            while let r = shards[k].pollReport() { core.applyShardReport(r, now: now) }
        }
        while let t = core.pollTransmit() { emit(t) }
        var s = shards
        shards = []
        sync.sync(&core) { k, push in
            s[k].apply(push)
            return true
        }
        shards = s
        while core.pollEvent() != nil {}
    }
}

struct MeshFixture: @unchecked Sendable {
    static let names = ["anchor-1", "anchor-2", "a", "b"]
    static let endpoints: [Endpoint] = [.v4(192, 0, 2, 1, port: 51820), .v4(192, 0, 2, 2, port: 51820),
                                        .v4(192, 0, 2, 10, port: 51820), .v4(192, 0, 2, 11, port: 51820)]
    let sources: [Endpoint]
    var node: Host
    var captured: [(from: Endpoint, bytes: [UInt8])] = []
    var now = Instant(ns: 1_000_000_000)

    static func wallClock(_ now: Instant) -> HandshakeTimestamp {
        HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: UInt32(now.ns % 1_000_000_000))
    }

    init(owners: Int) {
        let endpoints = Self.endpoints
        sources = [endpoints[0], endpoints[1], endpoints[3], .v4(192, 0, 2, 11, port: 40001),
                   .v4(198, 51, 100, 77, port: 4242), Endpoint(family: .v6, address: IPAddressBytes(v6: "2001:db8::77")!, port: 53)]
        let ids = (0..<4).map { Identity(secret: SecretKey(bytes: [UInt8](repeating: UInt8(10 + $0), count: 32))!) }
        let members = (0..<4).map { i in
            MemberSpec(publicKey: ids[i].publicKey, name: Self.names[i], endpoint: i < 2 ? endpoints[i] : nil, isAnchor: i < 2)
        }
        var nodes = (0..<4).map { Host(identity: ids[$0], members: members, anchor: $0 < 2, seed: UInt64(100 + $0), owners: owners) }
        var queue: [(to: Endpoint, from: Endpoint, bytes: [UInt8])] = []
        var now = Instant(ns: 1_000_000_000)
        for i in 0..<4 { nodes[i].core.setLocalEndpoints([endpoints[i]], now: now) }
        nodes[2].core.connect(PeerID(rawValue: 3), now: now)
        var captured: [(from: Endpoint, bytes: [UInt8])] = []
        let end = now + .seconds(6 as UInt64)
        while now < end {
            for i in 0..<4 {
                nodes[i].fire(now: now)
                nodes[i].drain(now: now) { queue.append(($0.to, endpoints[i], $0.bytes)) }
            }
            while !queue.isEmpty {
                let d = queue.removeFirst()
                guard let i = endpoints.firstIndex(of: d.to) else { continue }
                if i == 2, captured.count < 512 { captured.append((d.from, d.bytes)) }
                var bytes = d.bytes + [UInt8](repeating: 0, count: 64)
                let result = bytes.withUnsafeMutableBytes { nodes[i].receive($0, length: d.bytes.count, from: d.from, now: now) }
                if case .transmit(let to, let off, let len) = result { queue.append((to, endpoints[i], Array(bytes[off..<(off + len)]))) }
                nodes[i].drain(now: now) { queue.append(($0.to, endpoints[i], $0.bytes)) }
            }
            now = now + .milliseconds(5 as UInt64)
        }
        // The template must have sessions: a received handshake responses (it initiates to all three) and DATA.
        let types = Set(captured.compactMap(\.bytes.first))
        if !types.isSuperset(of: [2, 4]) { fatalError("mesh setup (owners \(owners)): a received only types \(types.sorted())") }
        node = nodes[2]
        self.captured = captured
        self.now = now
    }
}

let mesh = MeshFixture(owners: 1)
let splitMesh = MeshFixture(owners: 3)

/// Runs one S1 input against a copy of `fixture`'s node (format and invariants above).
func runNodeInput(_ input: [UInt8], _ fixture: MeshFixture) {
    var node = fixture.node
    var now = fixture.now
    var r = FuzzReader(input)
    // Strangers that were sent authentic traffic may get answers (they are then a roamed peer).
    var trusted = Set<Int>()
    var steps = 0
    while !r.isEmpty, steps < 64 {
        steps += 1
        let sel = r.u8()
        let dt = Int(r.u8())
        let lenField = Int(r.u16())
        let src = Int(sel & 0x7f) % fixture.sources.count
        let source = fixture.sources[src]
        now = now + .milliseconds(UInt64(dt * 8))
        node.fire(now: now)
        node.drain(now: now) { _ in }
        var bytes: [UInt8]
        if lenField & 0x8000 != 0, !fixture.captured.isEmpty {
            let delta = r.take(lenField & 0x7fff)
            let base = fixture.captured[Int(delta.first ?? 0) % fixture.captured.count].bytes
            bytes = xorOnto(base, Array(delta.dropFirst()) + [UInt8](repeating: 0, count: max(0, base.count - delta.count + 1)))
            trusted.insert(src)
        } else {
            bytes = r.take(lenField & 0x7fff)
        }
        let stranger = src >= 4 && !trusted.contains(src)
        let length = bytes.count
        // Headroom behind the datagram, as the engine's slab has.
        var buffer = bytes + [UInt8](repeating: 0, count: 64)
        let result = buffer.withUnsafeMutableBytes {
            node.receive($0, length: length, from: source, now: now, underLoad: sel & 0x80 != 0)
        }
        var sentBack = 0
        switch result {
        case .transmit(let to, let off, let len):
            check(off >= 0 && len >= 0 && off + len <= buffer.count, "transmit outside the buffer")
            if to == source { sentBack += len }
        case .packet(_, let off, let len):
            check(off >= 0 && len >= 0 && off + len <= length, "packet outside the datagram")
            check(!stranger, "a packet from a made-up datagram")
        case .handoff:
            fatalError("oracle: handoff left over")
        case .consumed, .drop:
            break
        }
        node.drain(now: now) { if $0.to == source { sentBack += $0.bytes.count } }
        if stranger { check(sentBack <= length, "amplification: \(length) bytes in, \(sentBack) out to \(source)") }
    }
}

/// Every captured datagram once, replayed from its own source, and raw from a stranger.
func nodeSeeds(_ fixture: MeshFixture) -> [[UInt8]] {
    var seeds: [[UInt8]] = []
    for (i, c) in fixture.captured.enumerated().prefix(24) {
        let src = UInt8(fixture.sources.firstIndex(of: c.from) ?? 4)
        seeds.append([src, 1] + le16(0x8001) + [UInt8(i)])
        seeds.append([4, 1] + le16(c.bytes.count) + c.bytes)
    }
    // A probe from a stranger, under load.
    let probe = PathProbe(txid: 9, sender: testKey(9)).bytes
    seeds.append([0x84, 0] + le16(probe.count) + probe)
    return seeds
}

let nodeTargets: [FuzzTarget] = [
    FuzzTarget(name: "node-receive", summary: "S1: one reactor's lane (SessionShard.receive, NodeCore) over a sequence of datagrams, sources and delays") { input in
        runNodeInput(input, mesh)
    } seeds: {
        nodeSeeds(mesh)
    },
    FuzzTarget(name: "node-receive-split", summary: "S1 with owners = 3: SessionShard.receive, handoffs, NodeCore") { input in
        runNodeInput(input, splitMesh)
    } seeds: {
        nodeSeeds(splitMesh)
    },
]
