import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// `Tunnels.adopt` (the drop-in mode's runtime roster, docs/wireguard.md): a
/// session carried over to a new roster keeps working without a handshake,
/// under its new PeerID, in both directions.
final class SessionAdoptTests: XCTestCase {
    let t0 = Instant(ns: 5_000_000_000)
    let aAddr = Endpoint.v4(192, 0, 2, 1, port: 51820)
    let bAddr = Endpoint.v4(192, 0, 2, 2, port: 51820)
    let psk = PresharedKey(bytes: Array(repeating: 7, count: 32))
    let helper = SessionWireGuardTests()

    func testAdoptedSessionNeedsNoHandshake() throws {
        var (a, b, ok, _) = helper.establish(pskA: psk, pskB: psk)
        XCTAssertTrue(ok)
        // A's queued packet confirms the session on B.
        let flushed = helper.transmits(&a)
        _ = helper.deliver(&b, try XCTUnwrap(flushed.first).bytes, from: aAddr, now: t0)
        // A's new roster: a new peer C first, then B (now PeerID 1), same identity, key and psk.
        let keyB = a.roster[PeerID(rawValue: 0)].key
        guard case .wireGuard(let pkB) = keyB else { return XCTFail("B is a WireGuard peer") }
        let other = Identity(secret: .generate())
        var a2 = Tunnels(identity: a.identity, peers: [
            PeerSpec(publicKey: PublicKey(bytes: other.staticPublic)!, suite: .wireGuard),
            PeerSpec(publicKey: pkB, suite: .wireGuard, psk: psk),
        ], seed: 9)
        a2.adopt(PeerID(rawValue: 1), from: a, PeerID(rawValue: 0), keepPaths: true, persistentKeepalive: nil)
        XCTAssertEqual(a2.pollKeyChange(), PeerID(rawValue: 1), "the owning lane is told the carried keys")
        // A2 seals for B at once (no handshake), and B opens it.
        let later = t0 + .seconds(1 as UInt64)
        let sealed = try XCTUnwrap(helper.seal(&a2, PeerID(rawValue: 1), [0x45, 5], now: later), "sealed under the carried keys")
        XCTAssertEqual(helper.transmits(&a2).count, 0, "no initiation")
        guard case .data = helper.deliver(&b, sealed, from: aAddr, now: later).0 else { return XCTFail("B refused the carried session's data") }
        // B's answer finds the session at its new PeerID through the carried receiver index.
        let back = try XCTUnwrap(helper.seal(&b, PeerID(rawValue: 0), [0x45, 6], now: later))
        let (r, payload) = helper.deliver(&a2, back, from: bAddr, now: later)
        guard case .data(let p, _, _) = r else { return XCTFail("A2 refused B's data: \(r)") }
        XCTAssertEqual(p, PeerID(rawValue: 1))
        XCTAssertEqual(payload?.prefix(2), [0x45, 6])
        XCTAssertGreaterThan(a2.peerStatus(PeerID(rawValue: 1), now: later)?.counters.rxBytes ?? 0, 0)
    }

    func testAPeerWithAnotherKeyIsNotAdopted() throws {
        var (a, _, ok, _) = helper.establish(pskA: nil, pskB: nil)
        XCTAssertTrue(ok)
        _ = helper.transmits(&a)
        let other = Identity(secret: .generate())
        var a2 = Tunnels(identity: a.identity, peers: [
            PeerSpec(publicKey: PublicKey(bytes: other.staticPublic)!, suite: .wireGuard),
        ], seed: 9)
        a2.adopt(PeerID(rawValue: 0), from: a, PeerID(rawValue: 0), keepPaths: true, persistentKeepalive: nil)
        XCTAssertNil(a2.pollKeyChange())
        XCTAssertNil(helper.seal(&a2, PeerID(rawValue: 0), [0x45], now: t0), "no keys: queued for a handshake")
    }
}
