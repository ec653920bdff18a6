import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// WireGuard peers in the session layer (issue 16): two `Tunnels`, each with the
/// other as a WireGuard peer (suite .wireGuard, X25519 keys, a psk), driven by
/// hand on a virtual clock; and one node with a WireGuard peer and a Whalescale
/// peer at once. The live proof against wireguard-go is tests/wgcompat.sh.
final class SessionWireGuardTests: XCTestCase {
    let t0 = Instant(ns: 5_000_000_000)
    let aAddr = Endpoint.v4(192, 0, 2, 1, port: 51820)
    let bAddr = Endpoint.v4(192, 0, 2, 2, port: 51820)
    let cAddr = Endpoint.v4(192, 0, 2, 3, port: 51820)
    let psk = PresharedKey(bytes: Array(repeating: 9, count: 32))

    func wall(_ now: Instant) -> HandshakeTimestamp {
        HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: UInt32(now.ns % 1_000_000_000))
    }

    func wgKey(_ id: Identity) -> PublicKey { PublicKey(bytes: id.staticPublic)! }

    func seal(_ t: inout Tunnels, _ peer: PeerID, _ payload: [UInt8], now: Instant) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 16 + payload.count + 16)
        buf.replaceSubrange(16..<(16 + payload.count), with: payload)
        let r = buf.withUnsafeMutableBytes { t.send(to: peer, $0, payloadOffset: 16, payloadLength: payload.count, now: now) }
        if case .send(_, let off, let len) = r { return Array(buf[off..<(off + len)]) }
        return nil
    }

    func deliver(_ t: inout Tunnels, _ bytes: [UInt8], from: Endpoint, now: Instant) -> (Inbound, [UInt8]?) {
        var buf = bytes
        let r = buf.withUnsafeMutableBytes { t.receive($0, length: bytes.count, from: from, now: now) }
        if case .data(_, let off, let len) = r { return (r, Array(buf[off..<(off + len)])) }
        return (r, nil)
    }

    func transmits(_ t: inout Tunnels) -> [Transmit] {
        var out: [Transmit] = []
        while let x = t.pollTransmit() { out.append(x) }
        return out
    }

    /// A and B, each the other's WireGuard peer; A initiates on its first packet.
    func establish(pskA: PresharedKey?, pskB: PresharedKey?) -> (a: Tunnels, b: Tunnels, ok: Bool, initiation: [UInt8]) {
        let idA = Identity(secret: .generate()), idB = Identity(secret: .generate())
        var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: wgKey(idB), endpoint: bAddr, suite: .wireGuard, psk: pskA)], seed: 1)
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: wgKey(idA), suite: .wireGuard, psk: pskB)], seed: 2)
        let peer = PeerID(rawValue: 0)
        XCTAssertNil(seal(&a, peer, [0x45, 1, 2, 3], now: t0), "no keys yet: queued")
        a.handleTimeout(now: t0, wallClock: wall(t0))
        let init1 = transmits(&a)
        XCTAssertEqual(init1.map(\.bytes.count), [148], "WireGuard's INIT is 148 bytes")
        guard let initiation = init1.first?.bytes else { return (a, b, false, []) }
        XCTAssertEqual(deliver(&b, initiation, from: aAddr, now: t0).0, .control)
        let resp = transmits(&b)
        XCTAssertEqual(resp.map(\.bytes.count), [92])
        guard let response = resp.first?.bytes else { return (a, b, false, initiation) }
        let r = deliver(&a, response, from: bAddr, now: t0).0
        return (a, b, r == .control, initiation)
    }

    func testHandshakeAndDataBothWays() throws {
        var (a, b, ok, _) = establish(pskA: psk, pskB: psk)
        XCTAssertTrue(ok)
        // A flushes its queued packet; B opens it.
        let flushed = transmits(&a)
        XCTAssertEqual(flushed.count, 1)
        let (r, payload) = deliver(&b, try XCTUnwrap(flushed.first).bytes, from: aAddr, now: t0)
        guard case .data = r else { return XCTFail("B did not open A's data: \(r)") }
        // Padded to 16 with zeros (NodeCore trims it to the IP length).
        XCTAssertEqual(payload, [0x45, 1, 2, 3] + [UInt8](repeating: 0, count: 12))
        // B answers under its new keys; A opens it.
        let back = try XCTUnwrap(seal(&b, PeerID(rawValue: 0), [0x45, 9], now: t0))
        XCTAssertEqual(Array(back[0..<4]), [4, 0, 0, 0], "type 4, WireGuard's transport message")
        XCTAssertEqual(deliver(&a, back, from: bAddr, now: t0).1, [0x45, 9])
        // A replay of it is refused.
        XCTAssertEqual(deliver(&a, back, from: bAddr, now: t0).0, .drop(.replay))
    }

    func testWrongPSKNeverCompletes() {
        let (_, _, ok, _) = establish(pskA: psk, pskB: nil)
        XCTAssertFalse(ok, "psk2: the initiator refuses a response made with another psk")
    }

    func testReplayedInitiationIsRefused() {
        var (_, b, ok, initiation) = establish(pskA: psk, pskB: psk)
        XCTAssertTrue(ok)
        XCTAssertEqual(deliver(&b, initiation, from: aAddr, now: t0 + .seconds(1 as UInt64)).0, .drop(.staleTimestamp))
    }

    /// REKEY_AFTER_TIME: the initiator's first packet after 120 s starts a new WireGuard handshake.
    func testRekeyAfterTime() throws {
        var (a, b, ok, _) = establish(pskA: nil, pskB: nil)
        XCTAssertTrue(ok)
        let first = transmits(&a)
        _ = deliver(&b, try XCTUnwrap(first.first).bytes, from: aAddr, now: t0)
        let later = t0 + .seconds(121 as UInt64)
        XCTAssertNotNil(seal(&a, PeerID(rawValue: 0), [0x45, 7], now: later), "still sealed under the old keys")
        a.handleTimeout(now: later, wallClock: wall(later))
        XCTAssertEqual(transmits(&a).map(\.bytes.count), [148], "a new WireGuard initiation")
    }

    /// One node, a WireGuard peer (B) and a Whalescale peer (C) on one port:
    /// each handshake goes to its own suite; a Whalescale member's static in a
    /// WireGuard INIT is no member.
    func testWireGuardAndWhalescalePeersSideBySide() throws {
        let idA = Identity(secret: .generate()), idB = Identity(secret: .generate()), idC = Identity(secret: .generate())
        var a = Tunnels(identity: idA, peers: [
            PeerSpec(publicKey: wgKey(idB), suite: .wireGuard),
            PeerSpec(publicKey: idC.publicKey),
        ], seed: 1)
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: wgKey(idA), endpoint: aAddr, suite: .wireGuard)], seed: 2)
        var c = Tunnels(identity: idC, peers: [PeerSpec(publicKey: idA.publicKey, endpoint: aAddr)], seed: 3)
        for (t, n) in [(0, 148), (1, 180)] {
            if t == 0 {
                _ = seal(&b, PeerID(rawValue: 0), [0x45], now: t0)
                b.handleTimeout(now: t0, wallClock: wall(t0))
                let i = try XCTUnwrap(transmits(&b).first).bytes
                XCTAssertEqual(i.count, n)
                XCTAssertEqual(deliver(&a, i, from: bAddr, now: t0).0, .control)
                XCTAssertEqual(deliver(&b, try XCTUnwrap(transmits(&a).first).bytes, from: aAddr, now: t0).0, .control)
            } else {
                _ = seal(&c, PeerID(rawValue: 0), [0x45], now: t0)
                c.handleTimeout(now: t0, wallClock: wall(t0))
                let i = try XCTUnwrap(transmits(&c).first).bytes
                XCTAssertEqual(i.count, n)
                XCTAssertEqual(deliver(&a, i, from: cAddr, now: t0).0, .control)
                XCTAssertEqual(deliver(&c, try XCTUnwrap(transmits(&a).first).bytes, from: aAddr, now: t0).0, .control)
            }
        }
        // C (a Whalescale member) speaking WireGuard's handshake with its own static: not a WireGuard peer.
        var cAsWG = Tunnels(identity: idC, peers: [PeerSpec(publicKey: wgKey(idA), endpoint: aAddr, suite: .wireGuard)], seed: 4)
        _ = seal(&cAsWG, PeerID(rawValue: 0), [0x45], now: t0)
        let later = t0 + .seconds(1 as UInt64)
        cAsWG.handleTimeout(now: later, wallClock: wall(later))
        let forged = try XCTUnwrap(transmits(&cAsWG).first).bytes
        XCTAssertEqual(forged.count, 148)
        XCTAssertEqual(deliver(&a, forged, from: cAddr, now: later).0, .drop(.notMember))
        // A stranger's WireGuard INIT: mac1 is fine (it knows our key), the static is nobody's.
        var stranger = Tunnels(identity: Identity(secret: .generate()),
                               peers: [PeerSpec(publicKey: wgKey(idA), endpoint: aAddr, suite: .wireGuard)], seed: 5)
        _ = seal(&stranger, PeerID(rawValue: 0), [0x45], now: t0)
        stranger.handleTimeout(now: t0, wallClock: wall(t0))
        XCTAssertEqual(deliver(&a, try XCTUnwrap(transmits(&stranger).first).bytes, from: cAddr, now: later).0, .drop(.notMember))
    }

    /// What we seal for a WireGuard peer is padded to 16 bytes when the buffer has room.
    func testSendPadsToSixteen() throws {
        var (a, b, ok, _) = establish(pskA: nil, pskB: nil)
        XCTAssertTrue(ok)
        _ = deliver(&b, try XCTUnwrap(transmits(&a).first).bytes, from: aAddr, now: t0)
        var buf = [UInt8](repeating: 0xEE, count: 16 + 64 + 16)
        buf[16] = 0x45
        let r = buf.withUnsafeMutableBytes { a.send(to: PeerID(rawValue: 0), $0, payloadOffset: 16, payloadLength: 21, now: t0) }
        guard case .send(_, let off, let len) = r else { return XCTFail("\(r)") }
        XCTAssertEqual(len, 32 + 32, "21 bytes padded to 32")
        let (got, payload) = deliver(&b, Array(buf[off..<(off + len)]), from: aAddr, now: t0)
        guard case .data = got else { return XCTFail("\(got)") }
        XCTAssertEqual(payload?.count, 32)
        XCTAssertEqual(Array(payload?[21...] ?? []), [UInt8](repeating: 0, count: 11), "zero padding")
        // Without room, it goes unpadded.
        XCTAssertEqual(seal(&a, PeerID(rawValue: 0), [0x45] + [UInt8](repeating: 1, count: 20), now: t0)?.count, 21 + 32)
    }

    func testPaddingIsTrimmedByTheIPLength() {
        var v4 = [UInt8](repeating: 0, count: 32)
        v4[0] = 0x45; v4[3] = 28
        XCTAssertEqual(v4.withUnsafeBytes { WireGuardPadding.ipLength($0, length: 32) }, 28)
        var v6 = [UInt8](repeating: 0, count: 64)
        v6[0] = 0x60; v6[5] = 8
        XCTAssertEqual(v6.withUnsafeBytes { WireGuardPadding.ipLength($0, length: 64) }, 48)
        // A claimed length beyond the packet, or nonsense, leaves it alone.
        v4[2] = 0xff
        XCTAssertEqual(v4.withUnsafeBytes { WireGuardPadding.ipLength($0, length: 32) }, 32)
        XCTAssertEqual([UInt8]([0x12]).withUnsafeBytes { WireGuardPadding.ipLength($0, length: 1) }, 1)
    }
}
