import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
import Foundation

/// NodeCore with a stock WireGuard peer (issue 16): both ends are NodeCores
/// that see each other as WireGuard peers, so everything one sends is what a
/// WireGuard peer would receive. Only WireGuard's messages may cross: the
/// 148-byte INIT, RESP, COOKIE_REPLY and DATA (no PATH_PROBE, no RELAY), and
/// nothing inside DATA but IP packets and keepalives (a control message would
/// be dropped by the receiver as `control_not_allowed`, which `run` fails on).
final class NodeCoreWireGuardPeerTests: XCTestCase {
    let aAddr = Endpoint.v4(198, 51, 100, 1, port: 51820)
    let bAddr = Endpoint.v4(203, 0, 113, 2, port: 51820)

    func pair() -> NodeCorePair {
        var rng = SessionRandom(seed: 11)
        let ia = SessionSim.identity(&rng), ib = SessionSim.identity(&rng)
        // Each is the other's WireGuard peer: named by its X25519 key, speaking WireGuard's suite.
        let a = NodeCore(identity: ia, members: [MemberSpec(publicKey: PublicKey(bytes: ib.staticPublic)!, name: "b", endpoint: bAddr,
                                                            kind: .wireGuard(psk: nil))], isAnchor: false, seed: 1)
        let b = NodeCore(identity: ib, members: [MemberSpec(publicKey: PublicKey(bytes: ia.staticPublic)!, name: "a",
                                                            kind: .wireGuard(psk: nil))], isAnchor: false, seed: 2)
        return NodeCorePair(a: a, b: b, aAddr: aAddr, bAddr: bAddr)
    }

    func testOnlyWireGuardMessagesCross() {
        var p = pair()
        let ping: [UInt8] = [0x45, 0, 0, 40] + [UInt8](repeating: 1, count: 36)  // IPv4 total length 40
        XCTAssertEqual(p.send(aToB: true, ping), .queued)
        p.run(for: .seconds(1 as UInt64))
        XCTAssertEqual(p.receivedByB, [ping])
        let pong: [UInt8] = [0x45, 0, 0, 40] + [UInt8](repeating: 2, count: 36)
        if case .send = p.send(aToB: false, pong) {} else { XCTFail("B answers at once") }
        // Ten minutes with a packet each way every 20 s: rekeys, keepalives, path checks.
        for _ in 0..<30 {
            _ = p.send(aToB: true, ping)
            _ = p.send(aToB: false, pong)
            p.run(for: .seconds(20 as UInt64))
        }
        XCTAssertEqual(p.receivedByB.count, 31)
        XCTAssertEqual(p.receivedByA.count, 31)
        XCTAssertTrue(p.wire.contains { $0.type == 1 && $0.length == 148 }, "WireGuard INITs")
        for w in p.wire {
            XCTAssertTrue((1...4).contains(w.type), "type \(w.type) sent to a WireGuard peer")
            if w.type == 1 { XCTAssertEqual(w.length, 148) }
        }
        // Every DATA is an IP packet (40 bytes padded to 48, + 32) or a keepalive (32): no control message.
        for w in p.wire where w.type == 4 { XCTAssertTrue(w.length == 80 || w.length == 32, "DATA of \(w.length) bytes") }
        // And the padding is gone on arrival (the IP length says where the packet ends).
        XCTAssertTrue(p.receivedByB.allSatisfy { $0 == ping } && p.receivedByA.allSatisfy { $0 == pong })
        let st = p.a.status(now: p.now)
        XCTAssertEqual(st.peers.first?.isWireGuard, true)
        XCTAssertEqual(st.peers.first?.roam?.newSources, 0)
        XCTAssertEqual(st.peers.first?.paths.count, 1, "one direct path")
    }

    /// An authenticated packet from a new source: counted and shown, and taken
    /// (same class, direct) under PathManager's rule.
    func testRoamingIsReported() {
        var p = pair()
        let ping: [UInt8] = [0x45, 0, 0, 40] + [UInt8](repeating: 1, count: 36)  // IPv4 total length 40
        _ = p.send(aToB: true, ping)
        p.run(for: .seconds(1 as UInt64))
        // B's next packet arrives at A from another address.
        var buf = [UInt8](repeating: 0, count: 64 + 40 + 32)
        buf.replaceSubrange(64..<104, with: ping)
        let now = p.now
        let r = buf.withUnsafeMutableBytes { p.b.sendPacket(to: PeerID(rawValue: 0), $0, payloadOffset: 64, payloadLength: 40, now: now) }
        guard case .send(_, let o, let l) = r else { return XCTFail("B did not send: \(r)") }
        var datagram = Array(buf[o..<(o + l)]) + [UInt8](repeating: 0, count: 32)
        let moved = Endpoint.v4(203, 0, 113, 9, port: 40000)
        let got = datagram.withUnsafeMutableBytes { p.a.receive($0, length: l, from: moved, now: now) }
        guard case .packet = got else { return XCTFail("A did not take it: \(got)") }
        let roam = p.a.status(now: now).peers.first?.roam
        XCTAssertEqual(roam?.newSources, 1)
        XCTAssertEqual(roam?.taken, 1)
        XCTAssertEqual(roam?.lastSource, moved)
        XCTAssertEqual(roam?.lastFrom, bAddr)
    }
}

/// The WireGuard peer's data path allocates nothing either (padding and its
/// trim included). In ConnectivityDataPathTests, which scripts/test runs with
/// the malloc counter preloaded.
extension ConnectivityDataPathTests {
    func testWireGuardPeerSteadyStateInPlace() {
        var rng = SessionRandom(seed: 21)
        let ia = SessionSim.identity(&rng), ib = SessionSim.identity(&rng)
        let aAddr = Endpoint.v4(198, 51, 100, 1, port: 51820), bAddr = Endpoint.v4(203, 0, 113, 2, port: 51820)
        var a = NodeCore(identity: ia, members: [MemberSpec(publicKey: PublicKey(bytes: ib.staticPublic)!, name: "b", endpoint: bAddr,
                                                            kind: .wireGuard(psk: nil))], isAnchor: false, seed: 1)
        var b = NodeCore(identity: ib, members: [MemberSpec(publicKey: PublicKey(bytes: ia.staticPublic)!, name: "a",
                                                            kind: .wireGuard(psk: nil))], isAnchor: false, seed: 2)
        let headroom = 64, payload = 1380
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: headroom + payload + 64, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        func ipHeader() {
            buffer[headroom] = 0x45
            buffer.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: headroom + 2, as: UInt16.self)
        }
        // The handshake, by hand: A's first packet waits for it.
        var now = Instant(ns: 1_000_000_000)
        let wall = HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 0)
        ipHeader()
        _ = a.sendPacket(to: PeerID(rawValue: 0), buffer, payloadOffset: headroom, payloadLength: payload, now: now)
        a.handleTimeout(now: now, wallClock: wall)
        for _ in 0..<4 {
            while let t = a.pollTransmit() {
                var bytes = t.bytes + [UInt8](repeating: 0, count: 32)
                _ = bytes.withUnsafeMutableBytes { b.receive($0, length: t.bytes.count, from: aAddr, now: now) }
            }
            while let t = b.pollTransmit() {
                var bytes = t.bytes + [UInt8](repeating: 0, count: 32)
                _ = bytes.withUnsafeMutableBytes { a.receive($0, length: t.bytes.count, from: bAddr, now: now) }
            }
            while a.pollEvent() != nil {}
            while b.pollEvent() != nil {}
        }
        var counted: UInt64?
        var delivered = 0
        for i in 0..<10_100 {
            if i == 100 { counted = Self.mallocCount?() }
            now = now + Span(ns: 1_000_000)
            ipHeader()
            buffer.storeBytes(of: UInt64(i), toByteOffset: headroom + 8, as: UInt64.self)
            guard case .send(_, let off, let len) = a.sendPacket(to: PeerID(rawValue: 0), buffer, payloadOffset: headroom,
                                                                payloadLength: payload, now: now),
                  len == 1392 + 32 else { break }  // padded to 16
            let view = UnsafeMutableRawBufferPointer(rebasing: buffer[off..<buffer.count])
            guard case .packet(_, let o, payload) = b.receive(view, length: len, from: aAddr, now: now),  // trimmed
                  view.loadUnaligned(fromByteOffset: o + 8, as: UInt64.self) == UInt64(i) else { break }
            delivered += 1
        }
        let after = Self.mallocCount?()
        XCTAssertEqual(delivered, 10_100)
        if let counted, let after {
            XCTAssertEqual(after - counted, 0, "allocations on a WireGuard peer's data path")
            print("datapath wireguard: \(after - counted) allocations for 10 000 packets")
        } else if ProcessInfo.processInfo.environment["WS_REQUIRE_MALLOC_COUNT"] == "1" {
            XCTFail("WS_REQUIRE_MALLOC_COUNT=1 but the malloc counter is not preloaded: allocations not counted")
        }
    }
}
