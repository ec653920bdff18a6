import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// A deterministic network of `Tunnels` on a virtual clock (quinn-proto's
/// `tests/util.rs` pattern): datagrams carry a delivery time, `step()` jumps to
/// the next delivery or timer, `drive(until:)` runs steps with a bound and fails
/// the test on livelock (too many steps, or too many steps without time moving).
///
///   node 0 10.0.0.1:51820  <── latency ──>  node 1 10.0.0.2:51820  (...)
///
/// Every node has every other node as a peer (node i's PeerID for node j is
/// `pid(i, j)`). After every call into a node, its outputs are drained in the
/// documented order: transmits, then events.
final class SessionSim {
    struct Packet {
        var deliverAt: Instant
        var seq: Int
        var from: Endpoint
        var to: Endpoint
        var bytes: [UInt8]
        var type: UInt8 { bytes.first ?? 0 }
    }

    struct Node {
        var tunnels: Tunnels
        var address: Endpoint
        let identity: Identity
        var underLoad = false
        /// Non-empty payloads delivered, in order.
        var received: [(peer: PeerID, payload: [UInt8])] = []
        var keepalivesReceived = 0
        var events: [TunnelEvent] = []
        var drops: [DropReason] = []
        var dropLog: [String] = []
        /// Drops of DATA messages only.
        var dataDrops: [DropReason] = []
        /// (receiver index, counter) of every DATA this node sealed, in sealing order.
        var sealed: [(index: UInt32, counter: UInt64)] = []
    }

    var nodes: [Node] = []
    var now = Instant(ns: 1_000_000_000)
    var inFlight: [Packet] = []
    var seq = 0
    var rng = SessionRandom(seed: 5)
    /// One-way delay of a datagram; default 5 ms.
    var latency: (inout SessionRandom) -> Span = { _ in .milliseconds(5) }
    /// Return false to drop a datagram at the moment it is sent.
    var filter: (Packet) -> Bool = { _ in true }
    /// Every datagram sent (after the filter said yes or no), for inspection.
    var wire: [Packet] = []
    var steps = 0

    init(count: Int, timings: SessionTimings = .default, knowEndpoints: Bool = true,
         persistentKeepalive: Span? = nil, seed: UInt64 = 1) {
        // Keys from the seed too, so a run (including who wins a handshake tie) repeats exactly.
        var keyRNG = SessionRandom(seed: seed ^ 0x5EED)
        let ids = (0..<count).map { _ in Self.identity(&keyRNG) }
        let addrs = (0..<count).map { Endpoint.v4(10, 0, 0, UInt8($0 + 1), port: 51820) }
        for i in 0..<count {
            let specs = (0..<count).filter { $0 != i }.map {
                PeerSpec(publicKey: ids[$0].publicKey, endpoint: knowEndpoints ? addrs[$0] : nil,
                         persistentKeepalive: persistentKeepalive)
            }
            nodes.append(Node(tunnels: Tunnels(identity: ids[i], peers: specs, timings: timings, seed: seed &+ UInt64(i)),
                              address: addrs[i], identity: ids[i]))
        }
    }

    static func identity(_ rng: inout SessionRandom) -> Identity {
        let bytes = (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        guard let secret = SecretKey(bytes: bytes) else { return Identity(secret: SecretKey.generate()) }
        return Identity(secret: secret)
    }

    /// Node i's PeerID for node j.
    func pid(_ i: Int, _ j: Int) -> PeerID { PeerID(rawValue: j < i ? j : j - 1) }

    var wallClock: HandshakeTimestamp {
        HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: UInt32(now.ns % 1_000_000_000))
    }

    // MARK: Inputs

    /// Node i sends `payload` to node j through its tunnel (header and tail room as the engine lays it out).
    @discardableResult
    func send(from i: Int, to j: Int, _ payload: [UInt8]) -> Outbound {
        var buffer = [UInt8](repeating: 0, count: 16 + payload.count + 16 + 8)
        buffer.replaceSubrange(16..<(16 + payload.count), with: payload)
        let now = self.now
        let peer = pid(i, j)
        let result = buffer.withUnsafeMutableBytes {
            nodes[i].tunnels.send(to: peer, $0, payloadOffset: 16, payloadLength: payload.count, now: now)
        }
        if case .send(let to, let offset, let length) = result {
            emit(from: i, to: to, Array(buffer[offset..<(offset + length)]))
        }
        drain(i)
        return result
    }

    /// Delivers `bytes` to node i as if from `source`, now.
    @discardableResult
    func inject(_ bytes: [UInt8], to i: Int, from source: Endpoint) -> Inbound {
        var buffer = bytes + [UInt8](repeating: 0, count: 8)
        let now = self.now
        let underLoad = nodes[i].underLoad
        let result = buffer.withUnsafeMutableBytes {
            nodes[i].tunnels.receive($0, length: bytes.count, from: source, now: now, underLoad: underLoad)
        }
        switch result {
        case .data(let peer, let offset, let length):
            if length > 0 { nodes[i].received.append((peer, Array(buffer[offset..<(offset + length)]))) }
            else { nodes[i].keepalivesReceived += 1 }
        case .drop(let reason):
            nodes[i].drops.append(reason)
            if bytes.first == DataMessage.type { nodes[i].dataDrops.append(reason) }
            nodes[i].dropLog.append("\(now) \(reason) type \(bytes.first ?? 0) len \(bytes.count)")
        case .control: break
        }
        drain(i)
        return result
    }

    func fireTimers(_ i: Int) {
        nodes[i].tunnels.handleTimeout(now: now, wallClock: wallClock)
        drain(i)
    }

    // MARK: Plumbing

    func emit(from i: Int, to: Endpoint, _ bytes: [UInt8]) {
        if bytes.first == DataMessage.type {
            let h = bytes.withUnsafeBytes { DataMessage.parseHeader($0, length: bytes.count) }
            if let h { nodes[i].sealed.append((h.receiverIndex, h.counter)) }
        }
        seq += 1
        let p = Packet(deliverAt: now + latency(&rng), seq: seq, from: nodes[i].address, to: to, bytes: bytes)
        wire.append(p)
        if filter(p) { inFlight.append(p) }
    }

    func drain(_ i: Int) {
        while let t = nodes[i].tunnels.pollTransmit() { emit(from: i, to: t.to, t.bytes) }
        while let e = nodes[i].tunnels.pollEvent() { nodes[i].events.append(e) }
    }

    func nextWake() -> Instant? {
        var best = inFlight.map(\.deliverAt).min()
        for n in nodes {
            if let d = n.tunnels.pollTimeout()?.deadline, best == nil || d < best! { best = d }
        }
        return best
    }

    /// Advances to the next delivery or timer not after `limit`; false if there is none.
    func step(limit: Instant) -> Bool {
        guard let wake = nextWake(), wake <= limit else { return false }
        now = max(now, wake)
        steps += 1
        let due = inFlight.filter { $0.deliverAt <= now }.sorted { ($0.deliverAt, $0.seq) < ($1.deliverAt, $1.seq) }
        inFlight.removeAll { $0.deliverAt <= now }
        for p in due {
            if let i = nodes.firstIndex(where: { $0.address == p.to }) { inject(p.bytes, to: i, from: p.from) }
        }
        for i in nodes.indices {
            if let d = nodes[i].tunnels.pollTimeout()?.deadline, d <= now { fireTimers(i) }
        }
        return true
    }

    /// Runs until `limit` (virtual time). Fails on livelock: more than `maxSteps`
    /// steps, or 1000 steps in a row without the clock moving.
    func drive(until limit: Instant, maxSteps: Int = 200_000, file: StaticString = #filePath, line: UInt = #line) {
        var count = 0
        var stuck = 0
        var last = now
        while step(limit: limit) {
            count += 1
            if now == last { stuck += 1 } else { stuck = 0; last = now }
            if count > maxSteps || stuck > 1000 {
                XCTFail("livelock at \(now): \(count) steps, \(stuck) without time moving", file: file, line: line)
                return
            }
        }
        now = max(now, limit)
    }

    func drive(for span: Span, file: StaticString = #filePath, line: UInt = #line) {
        drive(until: now + span, file: file, line: line)
    }

    func status(_ i: Int, _ j: Int) -> PeerStatus? { nodes[i].tunnels.peerStatus(pid(i, j), now: now) }
}

extension Array where Element == UInt8 {
    static func tagged(_ n: Int, size: Int = 24) -> [UInt8] {
        var p = [UInt8](repeating: 0x45, count: Swift.max(size, 8))
        Swift.withUnsafeBytes(of: UInt64(n).littleEndian) { p.replaceSubrange(0..<8, with: $0) }
        return p
    }
    var tag: Int { Int(self.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }) }
}
