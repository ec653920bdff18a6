import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor
@testable import Simulation

/// A deterministic internet in one process, on a virtual clock, with NAT
/// boxes that behave as RFC 4787 describes, and hosts running `NodeCore`.
///
///                 203.0.113.1  anchor-1        203.0.113.2  anchor-2        198.51.100.9  public host
///                        \                          |                          /
///   ─────────────────────────────────── internet (10 ms one way) ───────────────────────────────────
///        |                         |                          |
///   198.51.100.10 NAT (EIM, EIF)   198.51.100.11 NAT (EDM, APDF)   198.51.100.12 NAT (EIM, APDF)  ...
///        |  1 ms                   |                          |   \
///   192.168.1.2 host          192.168.1.2 host           192.168.1.2  192.168.1.3   (every LAN is 192.168.1.0/24)
///
/// NAT boxes:
///  - mapping: endpoint-independent (one external port per internal endpoint)
///    or endpoint-dependent (a new random external port per destination
///    address and port: "symmetric");
///  - filtering of inbound packets to a mapping: endpoint-independent,
///    address-dependent (the inside host sent to that address) or
///    address-and-port-dependent (to that address and port);
///  - mappings expire after `timeout` without traffic (either direction);
///  - unsolicited inbound (no mapping, or filtered) is dropped and counted, as
///    home routers do; no hairpinning (a LAN pair must find its LAN path);
///  - `renumber` gives the box a new public address and kills every mapping.
///
/// `drive(for:)` runs until a virtual-time limit and fails the test on
/// livelock (too many steps, or too many steps without the clock moving);
/// `drive(until:within:)` stops as soon as a condition holds and fails if it
/// never does (STYLE 19).
final class NetSim {
    enum Mapping { case independent, dependent }
    enum Filtering { case independent, address, addressAndPort }

    final class NATBox {
        var publicIP: IPAddressBytes
        var mapping: Mapping
        var filtering: Filtering
        var timeout: Span
        struct Entry {
            var inside: Endpoint
            /// The destination the mapping is for (endpoint-dependent mapping only).
            var destination: Endpoint?
            var port: UInt16
            var lastUsed: Instant
            /// Where the inside host has sent through this mapping (for filtering).
            var sentTo: Set<Endpoint>
        }
        var entries: [Entry] = []
        /// Port mappings (what UPnP-IGD/NAT-PMP/PCP would install): external port -> inside endpoint.
        /// An inbound packet through one creates a mapping for its flow, as conntrack does,
        /// so the replies leave through the same external port.
        var forwards: [UInt16: Endpoint] = [:]
        var droppedUnsolicited = 0
        init(publicIP: IPAddressBytes, mapping: Mapping, filtering: Filtering, timeout: Span) {
            self.publicIP = publicIP
            self.mapping = mapping
            self.filtering = filtering
            self.timeout = timeout
        }
    }

    struct Packet {
        var deliverAt: Instant
        var seq: Int
        var from: Endpoint
        var to: Endpoint
        var bytes: [UInt8]
    }

    struct Host {
        let name: String
        let identity: Identity
        var core: NodeCore
        /// One shard per reactor (one with `owners` = 1), as the engine's lanes.
        var shards: [SessionShard] = []
        /// What NodeCore told the shards: the engine's own `ShardSync` (Protocol/Lanes/LaneRouter.swift).
        var sync: ShardSync?
        var local: Endpoint
        var nat: Int?
        var up = true
        var wake: Instant?
        /// IP packets delivered: (from host, payload, time).
        var received: [(from: Int, payload: [UInt8], at: Instant)] = []
        var events: [(at: Instant, event: NodeEvent)] = []
        var drops: [NodeDropReason] = []
        /// The receiver's reorder buffers (Multipath/SessionReorder.swift), as a lane's: IP
        /// packets of a peer that spreads over several paths leave in counter order.
        var reorder = SessionReorder<[UInt8]>(peers: 0)
        /// Packets the reorder buffers dropped as late.
        var reorderDrops = 0
    }

    /// A datagram as it left a host (before any NAT), for inspection.
    struct Sent {
        var at: Instant
        var host: Int
        var to: Endpoint
        var type: UInt8
        var length: Int
    }

    var hosts: [Host] = []
    var nats: [NATBox] = []
    var now = Instant(ns: 1_000_000_000)
    var inFlight: [Packet] = []
    var seq = 0
    var rng = SessionRandom(seed: 77)
    var sent: [Sent] = []
    var steps = 0
    /// The Internet between NATs and public hosts: 10 ms, no jitter, no loss by default;
    /// WS_SIM_LOSS (0...1) and WS_SIM_JITTER_MS (±) in the environment give every
    /// scenario random loss and jitter (Simulation/NetworkModel.swift, the gossip simulator's model).
    var network = NetSim.defaultNetwork
    let hopDelay = Span.milliseconds(1)

    static var defaultNetwork: NetworkModel {
        let env = ProcessInfo.processInfo.environment
        return NetworkModel(latency: .milliseconds(10), jitter: .milliseconds(env["WS_SIM_JITTER_MS"].flatMap { UInt64($0) } ?? 0),
                            loss: env["WS_SIM_LOSS"].flatMap { Double($0) } ?? 0, seed: 77)
    }
    var timings: ConnectivityTimings
    var sessionTimings: SessionTimings

    struct HostSpec {
        var name: String
        var anchor = false
        /// Nil: a public host (its address is `publicIP`).
        var nat: Int?
        var publicIP: IPAddressBytes?
        var lanIP: IPAddressBytes?
    }

    /// Reactors every host splits its sessions across (SessionShard.swift): one shard
    /// each, as the engine's lanes; 1: one shard owns every session, as the engine
    /// with one reactor. WS_SIM_OWNERS in the environment sets the default, so the
    /// whole suite can run split.
    var owners: Int

    static var defaultOwners: Int { ProcessInfo.processInfo.environment["WS_SIM_OWNERS"].flatMap { Int($0) } ?? 1 }

    init(timings: ConnectivityTimings = .default, sessionTimings: SessionTimings = .default, owners: Int = NetSim.defaultOwners) {
        self.timings = timings
        self.sessionTimings = sessionTimings
        self.owners = owners
    }

    /// `[node] cipher` of every host (`cipherOf` overrides it by host name). WS_SIM_CIPHER
    /// in the environment sets the default ("auto": AES-256-GCM where this CPU has it).
    var cipher: CipherSetting = ProcessInfo.processInfo.environment["WS_SIM_CIPHER"].flatMap(CipherSetting.init(rawValue:)) ?? .auto
    var cipherOf: [String: CipherSetting] = [:]

    func makeCore(_ identity: Identity, _ members: [MemberSpec], anchor: Bool, seed: UInt64,
                  cipher: CipherSetting = .auto) -> (NodeCore, [SessionShard]) {
        let core = NodeCore(identity: identity, members: members, isAnchor: anchor, timings: timings,
                            sessionTimings: sessionTimings, seed: seed, owners: owners, sharded: true, cipher: cipher)
        // An anchor's lanes take from one relay budget per member, as the engine's (AtomicRelayBudget there).
        let budget = LocalRelayBudget(members: members.count, rule: core.relayBudgetRule)
        let shards = (0..<owners).map {
            SessionShard(index: $0, owners: owners, roster: core.roster, isAnchor: anchor, timings: sessionTimings,
                         relayBudget: budget)
        }
        return (core, shards)
    }

    @discardableResult
    func addNAT(_ mapping: Mapping, _ filtering: Filtering, timeout: Span = .seconds(30 as UInt64)) -> Int {
        nats.append(NATBox(publicIP: IPAddressBytes(v4: (198, 51, 100, UInt8(10 + nats.count))), mapping: mapping,
                           filtering: filtering, timeout: timeout))
        return nats.count - 1
    }

    /// Creates every host with the full member list (PeerID j = host j; a
    /// host's own entry is skipped by NodeCore). Call once, after the NATs.
    func build(_ specs: [HostSpec], seed: UInt64 = 1) {
        var keyRNG = SessionRandom(seed: seed ^ 0x5EED)
        var lanNext: [Int: UInt8] = [:]
        var pubNext: UInt8 = 9
        var locals: [Endpoint] = []
        for s in specs {
            if s.anchor {
                locals.append(Endpoint(family: .v4, address: s.publicIP ?? IPAddressBytes(v4: (203, 0, 113, UInt8(locals.count + 1))), port: 51820))
            } else if let n = s.nat {
                let k = lanNext[n, default: 2]
                lanNext[n] = k + 1
                locals.append(Endpoint(family: .v4, address: s.lanIP ?? IPAddressBytes(v4: (192, 168, 1, k)), port: 51820))
            } else {
                locals.append(Endpoint(family: .v4, address: s.publicIP ?? IPAddressBytes(v4: (198, 51, 100, pubNext)), port: 51820))
                pubNext -= 1
            }
        }
        let ids = specs.map { _ in SessionSim.identity(&keyRNG) }
        let members = specs.indices.map {
            MemberSpec(publicKey: ids[$0].publicKey, name: specs[$0].name, endpoint: specs[$0].anchor ? locals[$0] : nil,
                       isAnchor: specs[$0].anchor)
        }
        for (i, s) in specs.enumerated() {
            let (core, shards) = makeCore(ids[i], members, anchor: s.anchor, seed: seed &+ UInt64(i) &* 7919,
                                          cipher: cipherOf[s.name] ?? cipher)
            hosts.append(Host(name: s.name, identity: ids[i], core: core, shards: shards,
                              sync: ShardSync(router: LaneRouter(lanes: owners, isAnchor: s.anchor), peers: members.count),
                              local: locals[i], nat: s.nat, reorder: SessionReorder(peers: members.count)))
        }
        for i in hosts.indices {
            let local = hosts[i].local
            let now = self.now
            hosts[i].core.setLocalEndpoints([local], now: now)
            drain(i)
        }
    }

    func index(_ name: String) -> Int { hosts.firstIndex { $0.name == name }! }
    func pid(_ j: Int) -> PeerID { PeerID(rawValue: j) }

    var wallClock: HandshakeTimestamp {
        HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: UInt32(now.ns % 1_000_000_000))
    }

    // MARK: Hosts' inputs

    /// Host i sends an IP packet to host j through NodeCore (engine layout:
    /// 64 bytes of headroom, 32 of tailroom). Payload: 0x45, from, to, n.
    @discardableResult
    func sendIP(from i: Int, to j: Int, _ n: Int, size: Int = 60) -> Outbound {
        guard hosts[i].up else { return .drop(.noEndpoint) }
        let payload = Self.ipPayload(from: i, to: j, n, size: size)
        var buffer = [UInt8](repeating: 0, count: 64 + payload.count + 32)
        buffer.replaceSubrange(64..<(64 + payload.count), with: payload)
        let now = self.now
        let result = buffer.withUnsafeMutableBytes { b -> Outbound in
            // The owner seals; without keys or a path there it is NodeCore's (as the engine's lanes do).
            let k = SessionOwnership.owner(of: pid(j), owners: owners)
            switch hosts[i].shards[k].send(to: pid(j), b, payloadOffset: 64, payloadLength: payload.count, now: now) {
            case .send(let to, let off, let len): return .send(to, offset: off, length: len)
            case .drop(let r):
                if case .session(let d) = r { return .drop(d) }
                return .drop(.badLength)
            case .core: break
            }
            return hosts[i].core.sendPacket(to: pid(j), b, payloadOffset: 64, payloadLength: payload.count, now: now)
        }
        if case .send(let to, let off, let len) = result { emit(from: i, to: to, Array(buffer[off..<(off + len)])) }
        drain(i)
        return result
    }

    static func ipPayload(from i: Int, to j: Int, _ n: Int, size: Int = 60) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: max(size, 16))
        p[0] = 0x45
        p[1] = UInt8(i)
        p[2] = UInt8(j)
        withUnsafeBytes(of: UInt64(n).littleEndian) { p.replaceSubrange(8..<16, with: $0) }
        return p
    }

    static func packetNumber(_ p: [UInt8]) -> Int { Int(p.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) }) }

    /// Delivers `bytes` to host i as if from `source` (also used by tests to inject).
    @discardableResult
    func deliver(_ bytes: [UInt8], to i: Int, from source: Endpoint) -> NodeInbound {
        var buffer = bytes + [UInt8](repeating: 0, count: 32)
        let now = self.now
        var opened: SessionShard.Opened?
        let result = buffer.withUnsafeMutableBytes { b -> NodeInbound in
            // As the engine's lanes, by the same rules (LaneRouter.deliver): steered to a lane by the
            // BPF rule, opened by the owner, the rest NodeCore's on lane 0; handed over at most once.
            let router = LaneRouter(lanes: owners, isAnchor: hosts[i].core.isAnchor)
            let name = hosts[i].name
            return router.deliver(b, length: bytes.count,
                                  shard: { k in
                                      let r = hosts[i].shards[k].receive(b, length: bytes.count, from: source, now: now)
                                      switch r {
                                      case .packet, .control, .consumed: opened = hosts[i].shards[k].lastOpened
                                      default: opened = nil
                                      }
                                      return r
                                  },
                                  opened: { p, off, len, via in
                                      hosts[i].core.receiveOpened(from: p, payload: UnsafeRawBufferPointer(rebasing: b[off..<(off + len)]),
                                                                  source: source, via: via, now: now)
                                  },
                                  core: { hosts[i].core.receive(b, length: bytes.count, from: source, now: now) },
                                  fault: { f in
                                      XCTFail("lanes at \(name): \(f), type \(bytes.first ?? 0), \(bytes.count) bytes from \(source)")
                                  })
        }
        if let o = opened, o.peer.rawValue >= 0 {
            // What a lane does with what its shard opened: the reorder buffer (a marker for what is no IP packet).
            var packet: [UInt8]?
            if case .packet(let peer, let off, let len) = result, peer == o.peer { packet = Array(buffer[off..<(off + len)]) }
            switch hosts[i].reorder.handle(peer: o.peer, counter: o.counter, receiverIndex: o.receiverIndex, source: o.source,
                                           relayed: o.relayed, packet: packet, now: now) {
            case .deliver, .late:
                if let packet { hosts[i].received.append((o.peer.rawValue, packet, now)) }
            case .held: break
            case .drop: hosts[i].reorderDrops += 1
            }
            while let h = hosts[i].reorder.pollRelease(peer: o.peer) { hosts[i].received.append((o.peer.rawValue, h, now)) }
            if packet != nil {
                drain(i)
                return result
            }
        }
        switch result {
        case .packet(let peer, let off, let len):
            hosts[i].received.append((peer.rawValue, Array(buffer[off..<(off + len)]), now))
        case .transmit(let to, let off, let len):
            emit(from: i, to: to, Array(buffer[off..<(off + len)]))
        case .drop(let r):
            hosts[i].drops.append(r)
        case .consumed:
            break
        case .handoff:
            XCTFail("the lanes left a datagram handed over (LaneRouter.deliver resolves every handoff)")
        }
        drain(i)
        return result
    }

    /// Runs `bytes` through host i's lanes (LaneRouter.deliver: steered, its shard, NodeCore) in
    /// place, as `deliver` does, but sends nothing on: for tests that look at the verdict and the
    /// rewritten bytes. `lane` hears which lane's shard ran last.
    func receiveOnLanes(_ bytes: inout [UInt8], at i: Int, from source: Endpoint, lane: ((Int) -> Void)? = nil) -> NodeInbound {
        let n = bytes.count
        bytes += [UInt8](repeating: 0, count: 32)
        defer { bytes.removeLast(32) }
        let now = self.now
        let router = LaneRouter(lanes: owners, isAnchor: hosts[i].core.isAnchor)
        return bytes.withUnsafeMutableBytes { b in
            router.deliver(b, length: n,
                           shard: { k in
                               lane?(k)
                               return hosts[i].shards[k].receive(b, length: n, from: source, now: now)
                           },
                           opened: { p, off, len, via in
                               hosts[i].core.receiveOpened(from: p, payload: UnsafeRawBufferPointer(rebasing: b[off..<(off + len)]),
                                                           source: source, via: via, now: now)
                           },
                           core: { hosts[i].core.receive(b, length: n, from: source, now: now) },
                           fault: { f in XCTFail("lanes: \(f)") })
        }
    }

    func fire(_ i: Int) {
        let now = self.now
        if let w = hosts[i].core.pollTimeout()?.deadline, w <= now {
            hosts[i].core.handleTimeout(now: now, wallClock: wallClock)
        }
        if let w = hosts[i].reorder.pollTimeout()?.deadline, w <= now {
            var out: [(Int, [UInt8])] = []
            hosts[i].reorder.handleTimeout(now: now) { p, h in out.append((p.rawValue, h)) }
            for (p, h) in out { hosts[i].received.append((p, h, now)) }
        }
        drain(i)
    }

    func drain(_ i: Int) {
        var reportsDue: Instant?
        // The shards' reports, at most one per peer per 20 ms (a new path at once), as the lanes send them.
        for k in hosts[i].shards.indices {
            if let d = hosts[i].shards[k].flushActivity(now: now), reportsDue.map({ d < $0 }) ?? true { reportsDue = d }
            while let r = hosts[i].shards[k].pollReport() { hosts[i].core.applyShardReport(r, now: now) }
        }
        while let t = hosts[i].core.pollTransmit() { emit(from: i, to: t.to, t.bytes) }
        syncShards(i)
        while let e = hosts[i].core.pollEvent() { hosts[i].events.append((now, e)) }
        hosts[i].wake = hosts[i].core.pollTimeout()?.deadline
        if let d = hosts[i].reorder.pollTimeout()?.deadline, hosts[i].wake.map({ d < $0 }) ?? true { hosts[i].wake = d }
        if let d = reportsDue, hosts[i].wake.map({ d < $0 }) ?? true { hosts[i].wake = d }
    }

    /// New keys, routes and anchors to the owners: the engine's `ShardSync`, every push delivered.
    func syncShards(_ i: Int) {
        guard var sync = hosts[i].sync else { return }
        var shards = hosts[i].shards
        hosts[i].shards = []  // moved out, so the closure does not touch hosts[i] while its core is borrowed
        sync.sync(&hosts[i].core) { k, push in
            shards[k].apply(push)
            return true
        }
        hosts[i].shards = shards
        hosts[i].sync = sync
    }

    // MARK: Control of the world

    func stop(_ i: Int) {
        hosts[i].up = false
        hosts[i].wake = nil
    }

    /// Restarts host i with a fresh NodeCore (same key, no state).
    func restart(_ i: Int, seed: UInt64 = 99) {
        let members = hosts.indices.map {
            MemberSpec(publicKey: hosts[$0].identity.publicKey, name: hosts[$0].name,
                       endpoint: hosts[$0].core.isAnchor ? hosts[$0].local : nil, isAnchor: hosts[$0].core.isAnchor)
        }
        (hosts[i].core, hosts[i].shards) = makeCore(hosts[i].identity, members, anchor: hosts[i].core.isAnchor, seed: seed,
                                                    cipher: cipherOf[hosts[i].name] ?? cipher)
        hosts[i].sync = ShardSync(router: LaneRouter(lanes: owners, isAnchor: hosts[i].core.isAnchor), peers: members.count)
        hosts[i].reorder = SessionReorder(peers: members.count)
        hosts[i].up = true
        let local = hosts[i].local
        let now = self.now
        hosts[i].core.setLocalEndpoints([local], now: now)
        drain(i)
    }

    /// The NAT gets a new public address; every mapping dies with the old one.
    func renumber(_ n: Int, to ip: IPAddressBytes) {
        nats[n].publicIP = ip
        nats[n].entries.removeAll()
    }

    // MARK: The network

    /// Return true to lose a datagram as it leaves host `host` (after it is logged in `sent`).
    var lose: (_ host: Int, _ to: Endpoint, _ type: UInt8) -> Bool = { _, _, _ in false }
    /// Changes a datagram as it leaves host `host` (an attacker on the path; after `lose`).
    var tamper: ((_ host: Int, _ bytes: inout [UInt8]) -> Void)?

    func emit(from i: Int, to: Endpoint, _ bytes: [UInt8]) {
        sent.append(Sent(at: now, host: i, to: to, type: bytes.first ?? 0, length: bytes.count))
        if lose(i, to, bytes.first ?? 0) { return }
        var bytes = bytes
        tamper?(i, &bytes)
        var src = hosts[i].local
        var hops = Span.zero
        if let n = hosts[i].nat {
            if Self.isLAN(to) {
                // Stays on this LAN.
                enqueue(Packet(deliverAt: now + hopDelay, seq: 0, from: src, to: to, bytes: bytes), lan: n)
                return
            }
            guard let out = translateOut(n, from: src, to: to) else { return }
            src = out
            hops = hopDelay
        } else if Self.isLAN(to) {
            return  // a public host has no route to a private address
        }
        guard let internet = network.sample() else { return }  // lost on the way
        let delay = internet + hops
        enqueue(Packet(deliverAt: now + delay, seq: 0, from: src, to: to, bytes: bytes), lan: nil)
    }

    /// Packets on a LAN carry the NAT index in the high bits of seq's sibling field.
    private var lanOf: [Int: Int] = [:]

    func enqueue(_ p: Packet, lan: Int?) {
        var p = p
        seq += 1
        p.seq = seq
        if let lan { lanOf[seq] = lan }
        let k = inFlight.firstIndex { ($0.deliverAt, $0.seq) > (p.deliverAt, p.seq) } ?? inFlight.count
        inFlight.insert(p, at: k)
    }

    static func isLAN(_ e: Endpoint) -> Bool { e.address[0] == 192 && e.address[1] == 168 }

    func translateOut(_ n: Int, from inside: Endpoint, to: Endpoint) -> Endpoint? {
        let nat = nats[n]
        nat.entries.removeAll { now - $0.lastUsed >= nat.timeout }
        let key: Endpoint? = nat.mapping == .dependent ? to : nil
        if let k = nat.entries.firstIndex(where: { $0.inside == inside && $0.destination == key }) {
            nat.entries[k].lastUsed = now
            nat.entries[k].sentTo.insert(to)
            return Endpoint(family: .v4, address: nat.publicIP, port: nat.entries[k].port)
        }
        var port: UInt16
        repeat { port = UInt16(1024 + rng.next() % 64000) } while nat.entries.contains { $0.port == port } || nat.forwards[port] != nil
        nat.entries.append(NATBox.Entry(inside: inside, destination: key, port: port, lastUsed: now, sentTo: [to]))
        return Endpoint(family: .v4, address: nat.publicIP, port: port)
    }

    /// Where an inbound packet from `from` to the NAT's `port` goes, if anywhere.
    func translateIn(_ n: Int, from: Endpoint, port: UInt16) -> Endpoint? {
        let nat = nats[n]
        nat.entries.removeAll { now - $0.lastUsed >= nat.timeout }
        guard from.address != nat.publicIP else {
            nat.droppedUnsolicited += 1
            return nil
        }
        if let inside = nat.forwards[port] {
            if !nat.entries.contains(where: { $0.port == port && $0.inside == inside && ($0.destination == nil || $0.destination == from) }) {
                nat.entries.append(NATBox.Entry(inside: inside, destination: nat.mapping == .dependent ? from : nil, port: port,
                                                lastUsed: now, sentTo: [from]))
            }
            return inside
        }
        guard let k = nat.entries.firstIndex(where: { $0.port == port }) else {
            nat.droppedUnsolicited += 1
            return nil
        }
        let e = nat.entries[k]
        let allowed: Bool
        switch nat.filtering {
        case .independent: allowed = true
        case .address: allowed = e.sentTo.contains { $0.address == from.address }
        case .addressAndPort: allowed = e.sentTo.contains(from)
        }
        guard allowed else {
            nat.droppedUnsolicited += 1
            return nil
        }
        nat.entries[k].lastUsed = now
        return e.inside
    }

    func arrive(_ p: Packet) {
        if let lan = lanOf.removeValue(forKey: p.seq) {
            if let i = hosts.indices.first(where: { hosts[$0].nat == lan && hosts[$0].local == p.to && hosts[$0].up }) {
                deliver(p.bytes, to: i, from: p.from)
            }
            return
        }
        if let i = hosts.indices.first(where: { hosts[$0].nat == nil && hosts[$0].local == p.to }) {
            if hosts[i].up { deliver(p.bytes, to: i, from: p.from) }
            return
        }
        guard let n = nats.indices.first(where: { nats[$0].publicIP == p.to.address }),
              let inside = translateIn(n, from: p.from, port: p.to.port),
              let i = hosts.indices.first(where: { hosts[$0].nat == n && hosts[$0].local == inside }), hosts[i].up else { return }
        // One more hop inside: deliver a millisecond later.
        var q = p
        q.deliverAt = now + hopDelay
        q.to = inside
        enqueue(q, lan: n)
    }

    // MARK: Driving

    func nextWake() -> Instant? {
        var best = inFlight.first?.deliverAt
        for h in hosts where h.up {
            if let w = h.wake, best.map({ w < $0 }) ?? true { best = w }
        }
        return best
    }

    func step(limit: Instant) -> Bool {
        guard let wake = nextWake(), wake <= limit else { return false }
        now = max(now, wake)
        steps += 1
        while let p = inFlight.first, p.deliverAt <= now {
            inFlight.removeFirst()
            arrive(p)
        }
        for i in hosts.indices where hosts[i].up {
            if let w = hosts[i].wake, w <= now { fire(i) }
        }
        return true
    }

    /// Runs until `limit`; fails on livelock (more than `maxSteps`, or 2000 steps without the clock moving).
    func drive(until limit: Instant, maxSteps: Int = 2_000_000, file: StaticString = #filePath, line: UInt = #line) {
        var count = 0, stuck = 0
        var last = now
        while step(limit: limit) {
            count += 1
            if now == last { stuck += 1 } else { stuck = 0; last = now }
            if count > maxSteps || stuck > 2000 {
                let why = hosts.map { "\($0.name): \($0.core.pollTimeout().map { "\($0.reason) at \($0.deadline)" } ?? "-")" }
                XCTFail("livelock at \(now): \(count) steps, \(stuck) without time moving; \(why)", file: file, line: line)
                return
            }
        }
        now = max(now, limit)
    }

    func drive(for span: Span, file: StaticString = #filePath, line: UInt = #line) {
        drive(until: now + span, file: file, line: line)
    }

    /// Drives in small slices until `condition` holds; returns the time it took, or fails.
    @discardableResult
    func drive(until condition: () -> Bool, within span: Span, slice: Span = .milliseconds(50),
               file: StaticString = #filePath, line: UInt = #line) -> Span? {
        let start = now
        let limit = now + span
        while now < limit {
            if condition() { return now - start }
            drive(until: min(now + slice, limit), file: file, line: line)
        }
        if condition() { return now - start }
        XCTFail("condition not met within \(span)", file: file, line: line)
        return nil
    }

    // MARK: Queries

    /// NodeCore's status with the shards' counters added, as the daemon's status adds its lanes'
    /// (drops by reason; on an anchor what each lane forwarded, and per lane).
    func status(_ i: Int) -> NodeStatus {
        var st = hosts[i].core.status(now: now)
        for (k, shard) in hosts[i].shards.enumerated() {
            for (r, n) in shard.drops { st.counters[r.name, default: 0] &+= n }
            guard hosts[i].core.isAnchor else { continue }
            let r = shard.relayCounters
            st.counters["relay_forwarded_packets", default: 0] &+= r.packets
            st.counters["relay_forwarded_bytes", default: 0] &+= r.bytes
            st.counters["relay_forwarded_packets_lane\(k)", default: 0] &+= r.packets
        }
        return st
    }

    func activePath(_ i: Int, _ j: Int) -> NodeStatus.Path? {
        status(i).peers.first { $0.id == pid(j) }?.paths.first { $0.active }
    }

    func delivered(_ i: Int, from j: Int, number n: Int) -> Bool {
        hosts[i].received.contains { $0.from == j && Self.packetNumber($0.payload) == n }
    }

    func events(_ i: Int) -> [NodeEvent] { hosts[i].events.map(\.event) }
}
