import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// `Tunnels.adopt` (the drop-in mode's runtime roster, docs/wireguard.md): a
/// session carried over to a new roster keeps working without a handshake,
/// under its new PeerID, in both directions.
/// (An extension of SessionWireGuardTests: its two-party helpers.)
extension SessionWireGuardTests {
    func testAdoptedSessionNeedsNoHandshake() throws {
        var (a, b, ok, _) = establish(pskA: psk, pskB: psk)
        XCTAssertTrue(ok)
        // A's queued packet confirms the session on B.
        let flushed = transmits(&a)
        _ = deliver(&b, try XCTUnwrap(flushed.first).bytes, from: aAddr, now: t0)
        // A's new roster: a new peer C first, then B (now PeerID 1), same identity, key and psk.
        let keyB = a.roster[PeerID(rawValue: 0)].key
        guard case .wireGuard(let pkB) = keyB else { return XCTFail("B is a WireGuard peer") }
        let other = Identity(secret: .generate())
        var a2 = Tunnels(identity: a.identity, peers: [
            PeerSpec(publicKey: PublicKey(bytes: other.staticPublic)!, suite: .wireGuard),
            PeerSpec(publicKey: pkB, suite: .wireGuard, psk: psk),
        ], seed: 9)
        a2.adopt(PeerID(rawValue: 1), from: a, PeerID(rawValue: 0), keepPaths: true, persistentKeepalive: nil)
        // (Not split here: this Tunnels seals and opens itself; with shards, adopt queues the keys for the owner.)
        // A2 seals for B at once (no handshake), and B opens it.
        let later = t0 + .seconds(1 as UInt64)
        let sealed = try XCTUnwrap(seal(&a2, PeerID(rawValue: 1), [0x45, 5], now: later), "sealed under the carried keys")
        XCTAssertEqual(transmits(&a2).count, 0, "no initiation")
        guard case .data = deliver(&b, sealed, from: aAddr, now: later).0 else { return XCTFail("B refused the carried session's data") }
        // B's answer finds the session at its new PeerID through the carried receiver index.
        let back = try XCTUnwrap(seal(&b, PeerID(rawValue: 0), [0x45, 6], now: later))
        let (r, payload) = deliver(&a2, back, from: bAddr, now: later)
        guard case .data(let p, _, _) = r else { return XCTFail("A2 refused B's data: \(r)") }
        XCTAssertEqual(p, PeerID(rawValue: 1))
        XCTAssertEqual(payload?.prefix(2), [0x45, 6])
        XCTAssertGreaterThan(a2.peerStatus(PeerID(rawValue: 1), now: later)?.counters.rxBytes ?? 0, 0)
    }

    func testAPeerWithAnotherKeyIsNotAdopted() throws {
        var (a, _, ok, _) = establish(pskA: nil, pskB: nil)
        XCTAssertTrue(ok)
        _ = transmits(&a)
        let other = Identity(secret: .generate())
        var a2 = Tunnels(identity: a.identity, peers: [
            PeerSpec(publicKey: PublicKey(bytes: other.staticPublic)!, suite: .wireGuard),
        ], seed: 9)
        a2.adopt(PeerID(rawValue: 0), from: a, PeerID(rawValue: 0), keepPaths: true, persistentKeepalive: nil)
        XCTAssertNil(seal(&a2, PeerID(rawValue: 0), [0x45], now: t0), "no keys: queued for a handshake")
    }
}
