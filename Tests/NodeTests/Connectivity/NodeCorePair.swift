import XCTest
@testable import Support
@testable import Wire
@testable import Protocol

/// Two NodeCores wired back to back on a virtual clock: every datagram one
/// sends reaches the other 5 ms later, each at its own fixed address. Tests
/// that need only a pair (no anchors, no NAT) use it instead of NetSim.
struct NodeCorePair {
    var a: NodeCore
    var b: NodeCore
    let aAddr: Endpoint
    let bAddr: Endpoint
    var now = Instant(ns: 1_000_000_000)
    var inFlight: [(at: Instant, toB: Bool, bytes: [UInt8])] = []
    var receivedByA: [[UInt8]] = []
    var receivedByB: [[UInt8]] = []
    var eventsA: [NodeEvent] = []
    var eventsB: [NodeEvent] = []
    /// Every datagram either node sent: type byte and length.
    var wire: [(type: UInt8, length: Int)] = []

    init(a: NodeCore, b: NodeCore, aAddr: Endpoint, bAddr: Endpoint) {
        self.a = a
        self.b = b
        self.aAddr = aAddr
        self.bAddr = bAddr
    }

    /// Takes what both nodes want to transmit onto the wire, and their events.
    mutating func drain() {
        while let t = a.pollTransmit() {
            XCTAssertEqual(t.to, bAddr)
            inFlight.append((now + .milliseconds(5), true, t.bytes))
            wire.append((t.bytes.first ?? 0, t.bytes.count))
        }
        while let t = b.pollTransmit() {
            XCTAssertEqual(t.to, aAddr)
            inFlight.append((now + .milliseconds(5), false, t.bytes))
            wire.append((t.bytes.first ?? 0, t.bytes.count))
        }
        while let e = a.pollEvent() { eventsA.append(e) }
        while let e = b.pollEvent() { eventsB.append(e) }
    }

    /// Delivers datagrams and fires timers in time order for `span`; a drop fails the test.
    mutating func run(for span: Span) {
        let end = now + span
        var steps = 0
        while steps < 100_000 {
            steps += 1
            var next = end
            for f in inFlight where f.at < next { next = f.at }
            if let d = a.pollTimeout()?.deadline, d < next { next = d }
            if let d = b.pollTimeout()?.deadline, d < next { next = d }
            now = max(now, next)
            let now = self.now
            let due = inFlight.filter { $0.at <= now }
            inFlight.removeAll { $0.at <= now }
            for f in due {
                var buf = f.bytes + [UInt8](repeating: 0, count: 32)
                let r = buf.withUnsafeMutableBytes {
                    f.toB ? b.receive($0, length: f.bytes.count, from: aAddr, now: now)
                          : a.receive($0, length: f.bytes.count, from: bAddr, now: now)
                }
                if case .packet(_, let o, let l) = r {
                    if f.toB { receivedByB.append(Array(buf[o..<(o + l)])) } else { receivedByA.append(Array(buf[o..<(o + l)])) }
                }
                if case .drop(let reason) = r { XCTFail("drop \(reason)") }
            }
            let wall = HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: 0)
            if let d = a.pollTimeout()?.deadline, d <= now { a.handleTimeout(now: now, wallClock: wall) }
            if let d = b.pollTimeout()?.deadline, d <= now { b.handleTimeout(now: now, wallClock: wall) }
            drain()
            if now >= end && inFlight.isEmpty { return }
            if now >= end, inFlight.allSatisfy({ $0.at > end }) { return }
        }
        XCTFail("livelock")
    }

    /// One inner packet from a to b (or b to a) through the sender's NodeCore, onto the wire.
    mutating func send(aToB: Bool, _ payload: [UInt8]) -> Outbound {
        var buf = [UInt8](repeating: 0, count: 64 + payload.count + 32)
        buf.replaceSubrange(64..<(64 + payload.count), with: payload)
        let now = self.now
        let r = buf.withUnsafeMutableBytes {
            aToB ? a.sendPacket(to: PeerID(rawValue: 0), $0, payloadOffset: 64, payloadLength: payload.count, now: now)
                 : b.sendPacket(to: PeerID(rawValue: 0), $0, payloadOffset: 64, payloadLength: payload.count, now: now)
        }
        if case .send(let to, let o, let l) = r {
            XCTAssertEqual(to, aToB ? bAddr : aAddr)
            inFlight.append((now + .milliseconds(5), aToB, Array(buf[o..<(o + l)])))
            wire.append((buf[o], l))
        }
        drain()
        return r
    }
}
