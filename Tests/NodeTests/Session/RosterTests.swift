import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// The roster: ids, lookups by key, relay label and X25519 static, and the
/// entries no lookup finds (ourselves, a duplicate key).
final class RosterTests: XCTestCase {
    func testLookupsByKeyLabelAndStatic() {
        let me = Identity(secret: SecretKey.generate())
        let a = Identity(secret: SecretKey.generate()), b = Identity(secret: SecretKey.generate())
        let roster = Roster(local: me.publicKey, members: [
            MemberSpec(publicKey: a.publicKey, name: "anchor-1", isAnchor: true),
            MemberSpec(publicKey: me.publicKey, name: "me"),
            MemberSpec(publicKey: b.publicKey, name: "b"),
        ])
        XCTAssertEqual(roster.count, 3)
        guard let pa = roster.peer(for: a.publicKey), let pb = roster.peer(for: .whalescale(b.publicKey)) else {
            return XCTFail("members not found")
        }
        XCTAssertNotEqual(pa, pb)
        XCTAssertEqual(roster[pa].name, "anchor-1")
        XCTAssertTrue(roster[pa].isAnchor)
        XCTAssertFalse(roster[pb].isAnchor)
        XCTAssertEqual(roster[pb].key, .whalescale(b.publicKey))
        XCTAssertEqual(roster[pb].capabilities, .whalescale)
        XCTAssertEqual(roster.peer(relayLabel: MemberID(publicKey: a.publicKey)), pa)
        XCTAssertEqual(roster.peer(relayLabel: roster[pb].memberID), pb)
        XCTAssertEqual(roster.peer(staticKey: b.publicKey.x25519!), pb)
        // We are nobody's peer, by any key, but keep an id (status lists us).
        XCTAssertNil(roster.peer(for: me.publicKey))
        XCTAssertNil(roster.peer(relayLabel: MemberID(publicKey: me.publicKey)))
        XCTAssertNil(roster.peer(staticKey: me.publicKey.x25519!))
        XCTAssertEqual(roster.members.filter(\.isLocal).map(\.name), ["me"])
    }

    func testDuplicateKeyFirstEntryWinsAndStrangersAreNotFound() {
        let me = Identity(secret: SecretKey.generate()), a = Identity(secret: SecretKey.generate())
        let stranger = Identity(secret: SecretKey.generate())
        let roster = Roster(local: me.publicKey, members: [
            MemberSpec(publicKey: a.publicKey, name: "first"),
            MemberSpec(publicKey: a.publicKey, name: "again"),
        ])
        XCTAssertEqual(roster.count, 2)
        XCTAssertEqual(roster.peer(for: a.publicKey).map { roster[$0].name }, "first")
        XCTAssertEqual(roster.peer(relayLabel: MemberID(publicKey: a.publicKey)).map { roster[$0].name }, "first")
        XCTAssertNil(roster.peer(for: stranger.publicKey))
        XCTAssertNil(roster.peer(staticKey: stranger.publicKey.x25519!))
        XCTAssertEqual(Roster().count, 0)
    }

    /// NodeCore, its Tunnels and the shards read one roster.
    func testNodeCoreSharesItsRoster() {
        let me = Identity(secret: SecretKey.generate()), a = Identity(secret: SecretKey.generate())
        let core = NodeCore(identity: me, members: [MemberSpec(publicKey: a.publicKey, name: "a")], isAnchor: false, seed: 1)
        XCTAssertEqual(core.roster.members, core.tunnels.roster.members)
        XCTAssertEqual(core.peerID(for: a.publicKey), core.roster.peer(for: a.publicKey))
        XCTAssertEqual(core.roster[core.roster.peer(for: a.publicKey)!].name, "a")
    }
}
