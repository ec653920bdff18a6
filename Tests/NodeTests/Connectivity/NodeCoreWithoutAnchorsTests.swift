import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// NodeCore as the engine configures it (the member list is the config's
/// peers, without the node itself) in a network without anchors: two members
/// with a static endpoint on one side, as in `scripts/demo`. It must work as
/// plain WireGuard does, and say that it has no anchor.
final class NodeCoreWithoutAnchorsTests: XCTestCase {
    let aAddr = Endpoint.v4(198, 51, 100, 1, port: 51820)
    let bAddr = Endpoint.v4(203, 0, 113, 2, port: 51820)

    func pair() -> NodeCorePair {
        var rng = SessionRandom(seed: 11)
        let ia = SessionSim.identity(&rng), ib = SessionSim.identity(&rng)
        let a = NodeCore(identity: ia, members: [MemberSpec(publicKey: ib.publicKey, name: "b", endpoint: bAddr)], isAnchor: false, seed: 1)
        let b = NodeCore(identity: ib, members: [MemberSpec(publicKey: ia.publicKey, name: "a")], isAnchor: false, seed: 2)
        return NodeCorePair(a: a, b: b, aAddr: aAddr, bAddr: bAddr)
    }

    func testTwoMembersWithoutAnchorsTalkDirectly() {
        var p = pair()
        let ping = [0x45] + [UInt8](repeating: 1, count: 39)
        XCTAssertEqual(p.send(aToB: true, ping), .queued, "no keys yet: queued, handshake to the static endpoint")
        p.run(for: .seconds(1 as UInt64))
        XCTAssertEqual(p.receivedByB, [ping])
        // B learned A's endpoint from the authenticated first contact and answers directly.
        let pong = [0x45] + [UInt8](repeating: 2, count: 39)
        if case .send = p.send(aToB: false, pong) {} else { XCTFail("B sends at once") }
        p.run(for: .seconds(1 as UInt64))
        XCTAssertEqual(p.receivedByA, [pong])
        XCTAssertTrue(p.eventsB.contains(.pathChanged(PeerID(rawValue: 0), kind: .direct, remote: aAddr, via: nil)))
        // Idle for ten minutes: no recovery mode without anchors, no probes, no chatter beyond the session's own.
        p.run(for: .seconds(600 as UInt64))
        XCTAssertFalse(p.eventsA.contains(.recoveryStarted))
        XCTAssertFalse(p.eventsB.contains(.recoveryStarted))
        let st = p.a.status(now: p.now)
        XCTAssertEqual(st.anchors.count, 0)
        XCTAssertTrue(st.warnings.contains { $0.hasPrefix("no anchor is configured") }, "\(st.warnings)")
        XCTAssertFalse(st.partitioned)
        XCTAssertEqual(st.peers.first?.paths.first?.kind, .direct)
        XCTAssertEqual(st.peers.first?.paths.first?.remote, bAddr)
        XCTAssertEqual(st.peers.first?.paths.first?.local, .primary, "every path carries our end")
        XCTAssertEqual(st.peers.first?.paths.first?.active, true)
        XCTAssertNotNil(st.peers.first?.paths.first?.lastRx, "heard over it")
        // And it still works.
        _ = p.send(aToB: true, ping)
        p.run(for: .seconds(1 as UInt64))
        XCTAssertEqual(p.receivedByB.count, 2)
    }

    /// Site to site (docs/site-to-site.md): B routes A's LAN into the tunnel.
    /// A packet of A's that reaches B from an address in that LAN came through
    /// the tunnel itself; taking it as a path would make B send the tunnel into
    /// the tunnel. With `tunnelledPrefixes` it makes no path and the active one
    /// stays; without them it does make one (so this test can tell).
    func testAPacketFromATunnelledAddressMakesNoPath() {
        let insideTunnel = Endpoint.v4(192, 168, 10, 1, port: 51820)
        for tunnelled in [false, true] {
            var p = pair()
            if tunnelled { p.b.tunnelledPrefixes = [CIDR("10.77.0.0/24")!, CIDR("10.77.0.1/32")!, CIDR("192.168.10.0/24")!] }
            let ping = [0x45] + [UInt8](repeating: 1, count: 39)
            _ = p.send(aToB: true, ping)
            p.run(for: .seconds(1 as UInt64))
            XCTAssertEqual(p.receivedByB, [ping])
            // A seals one more packet; it reaches B from inside the tunnel.
            var buf = [UInt8](repeating: 0, count: 64 + ping.count + 64)
            buf.replaceSubrange(64..<(64 + ping.count), with: ping)
            let now = p.now
            let r = buf.withUnsafeMutableBytes {
                p.a.sendPacket(to: PeerID(rawValue: 0), $0, payloadOffset: 64, payloadLength: ping.count, now: now)
            }
            guard case .send(_, let o, let l) = r else { return XCTFail("A has keys: \(r)") }
            var wire = Array(buf[o..<(o + l)]) + [UInt8](repeating: 0, count: 32)
            let got = wire.withUnsafeMutableBytes { p.b.receive($0, length: l, from: insideTunnel, now: now) }
            if case .packet = got {} else { XCTFail("an authenticated packet is still delivered: \(got)") }
            let paths = p.b.status(now: now).peers.first?.paths ?? []
            if tunnelled {
                XCTAssertFalse(paths.contains { $0.remote == insideTunnel }, "no path into the tunnel: \(paths)")
                XCTAssertEqual(paths.filter(\.active).map(\.remote), [aAddr], "the active path stays on A's real address")
            } else {
                XCTAssertTrue(paths.contains { $0.remote == insideTunnel }, "control: without the prefixes a path is made")
            }
        }
    }
}
