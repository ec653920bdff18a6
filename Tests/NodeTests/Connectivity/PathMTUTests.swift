import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// The tunnel MTU over the active paths (PathMTU.swift): per path the uplink's
/// MTU minus outer IP, UDP, DATA and (relayed) RELAY; the tunnel the minimum
/// over all members, 1280 ... cap; recalculated as paths come and go.
final class PathMTUTests: XCTestCase {
    private func t(_ s: UInt64) -> Instant { Instant(ns: s * 1_000_000_000) }
    private let v4 = Endpoint("198.51.100.7:51820")!, v6 = Endpoint("[2001:db8::7]:51820")!
    private let anchor = Endpoint("203.0.113.10:51820")!

    private func path(_ peer: Int, _ remote: Endpoint, relayed: Bool = false, kind: PathKind = .direct, uplink: String = "eth0",
                      mtu: Int = 1500) -> TunnelMTU.Path {
        TunnelMTU.Path(peer: PeerID(rawValue: peer), peerName: "p\(peer)", kind: relayed ? .relay : kind, remote: remote,
                       relayed: relayed, uplink: uplink, uplinkMTU: mtu)
    }

    func testPerPathArithmetic() {
        XCTAssertEqual(PathMTU.inner(uplinkMTU: 1500, remote: .v4, relayed: false), 1500 - 20 - 8 - 32)  // 1440
        XCTAssertEqual(PathMTU.inner(uplinkMTU: 1500, remote: .v6, relayed: false), 1500 - 40 - 8 - 32)  // 1420
        XCTAssertEqual(PathMTU.inner(uplinkMTU: 1500, remote: .v4, relayed: true), 1500 - 20 - 8 - 32 - 16)  // 1424
        XCTAssertEqual(PathMTU.inner(uplinkMTU: 1500, remote: .v6, relayed: true), 1404, "the old fixed default is the worst case")
        XCTAssertEqual(path(1, v4, mtu: 1400).mtu, 1340)
        XCTAssertEqual(path(1, v6, mtu: 9000).mtu, 8920)
    }

    func testNoPathsIsTheDefaultOrTheConfiguredValue() {
        var m = TunnelMTU(configured: nil, defaultMTU: 1404, peers: 3)
        XCTAssertEqual(m.current, 1404)
        XCTAssertNil(m.update([], now: t(1)).change)
        XCTAssertEqual(m.peerLimits, [1404, 1404, 1404])
        let c = TunnelMTU(configured: 1300, defaultMTU: 1404, peers: 1)
        XCTAssertEqual(c.current, 1300)
        XCTAssertEqual(c.cap, 1300)
    }

    func testMinimumOverPeersAndPaths() {
        var m = TunnelMTU(configured: nil, defaultMTU: 1404, peers: 4)
        let r = m.update([path(1, v4), path(2, v6, uplink: "wlan0"), path(3, anchor, relayed: true)], now: t(1))
        XCTAssertEqual(r.change, TunnelMTU.Change(old: 1404, new: 1420, smallest: path(2, v6, uplink: "wlan0")))
        XCTAssertTrue(r.peerLimitsChanged)
        XCTAssertEqual(m.current, 1420)
        XCTAssertEqual(m.peerLimits, [1420, 1440, 1420, 1424], "a member without a path gets the tunnel's value")
        XCTAssertEqual(m.smallest?.description, "p2 direct [2001:db8::7]:51820 via wlan0")
        XCTAssertEqual(m.changes, 1)
        XCTAssertEqual(m.changedAt, t(1))
        // The same paths again: nothing changes.
        let again = m.update([path(1, v4), path(2, v6, uplink: "wlan0"), path(3, anchor, relayed: true)], now: t(2))
        XCTAssertNil(again.change)
        XCTAssertFalse(again.peerLimitsChanged)
    }

    func testUplinkMTUChangeAndPathRemovalRecalculate() {
        var m = TunnelMTU(configured: nil, defaultMTU: 1404, peers: 3)
        _ = m.update([path(1, v4), path(2, v4)], now: t(1))
        XCTAssertEqual(m.current, 1440)
        // Peer 2's uplink drops to 1400.
        let low = m.update([path(1, v4), path(2, v4, uplink: "eth1", mtu: 1400)], now: t(2))
        XCTAssertEqual(low.change?.old, 1440)
        XCTAssertEqual(low.change?.new, 1340)
        XCTAssertEqual(low.change?.smallest?.peer, PeerID(rawValue: 2))
        XCTAssertEqual(m.peerLimits[1], 1440, "peer 1's own paths still take 1440")
        XCTAssertEqual(m.peerLimits[2], 1340)
        // Peer 2's path is removed: the tunnel goes back up.
        let up = m.update([path(1, v4)], now: t(3))
        XCTAssertEqual(up.change?.new, 1440)
        XCTAssertEqual(m.peerLimits[2], 1440)
        // Every path removed: the default.
        XCTAssertEqual(m.update([], now: t(4)).change, TunnelMTU.Change(old: 1440, new: 1404, smallest: nil))
        XCTAssertEqual(m.changes, 4, "1404 -> 1440 -> 1340 -> 1440 -> 1404")
    }

    func testAChangeNotAppliedIsTriedAgain() {
        var m = TunnelMTU(configured: nil, defaultMTU: 1404, peers: 2)
        let first = m.update([path(1, v4)], now: t(1)).change!
        m.notApplied(first)
        XCTAssertEqual(m.current, 1404)
        XCTAssertEqual(m.changes, 0)
        XCTAssertEqual(m.update([path(1, v4)], now: t(2)).change?.new, 1440, "the same paths: the change again")
    }

    func testFloorIs1280AndCounted() {
        var m = TunnelMTU(configured: nil, defaultMTU: 1404, peers: 2)
        let r = m.update([path(1, v6, uplink: "wwan0", mtu: 1300)], now: t(1))  // 1300 - 80 = 1220
        XCTAssertEqual(path(1, v6, mtu: 1300).mtu, 1220)
        XCTAssertEqual(r.change?.new, 1280)
        XCTAssertEqual(m.peerLimits[1], 1280)
        XCTAssertEqual(m.belowMinimum, 1)
        // Recalculating the same path set does not count again; a different small one does.
        _ = m.update([path(1, v6, uplink: "wwan0", mtu: 1300)], now: t(2))
        XCTAssertEqual(m.belowMinimum, 1)
        _ = m.update([path(1, v6, uplink: "wwan0", mtu: 1290)], now: t(3))
        XCTAssertEqual(m.belowMinimum, 2)
        XCTAssertEqual(m.current, 1280)
        XCTAssertEqual(m.changes, 1)
    }

    func testConfiguredValueIsACap() {
        var m = TunnelMTU(configured: 1400, defaultMTU: 1404, peers: 2)
        XCTAssertEqual(m.current, 1400)
        XCTAssertNil(m.update([path(1, v4)], now: t(1)).change, "1440 is capped at 1400")
        XCTAssertEqual(m.peerLimits[1], 1400)
        XCTAssertEqual(m.update([path(1, v4, mtu: 1400)], now: t(2)).change?.new, 1340, "below the cap: followed")
        // A jumbo uplink never lifts it above the cap.
        XCTAssertEqual(m.update([path(1, v4, mtu: 9000)], now: t(3)).change?.new, 1400)
        // Out-of-range caps are clamped (the config parser refuses them anyway).
        XCTAssertEqual(TunnelMTU(configured: 100, defaultMTU: 1404, peers: 1).cap, 1280)
    }

    /// NodeCore's data paths are the members' active paths; removing one recalculates.
    func testDataPathsFollowTheActivePaths() {
        var rng = SessionRandom(seed: 5)
        let me = SessionSim.identity(&rng), kb = SessionSim.identity(&rng), kc = SessionSim.identity(&rng)
        var core = NodeCore(identity: me, members: [MemberSpec(publicKey: me.publicKey, name: "me"),
                                                    MemberSpec(publicKey: kb.publicKey, name: "b"),
                                                    MemberSpec(publicKey: kc.publicKey, name: "c")],
                            isAnchor: false, seed: 5)
        XCTAssertTrue(core.dataPaths(now: t(2)).isEmpty)
        let b = core.peerID(for: kb.publicKey)!, c = core.peerID(for: kc.publicKey)!
        core.activate(b, core.addPath(b, kind: .direct, remote: v4, via: nil), now: t(1))
        core.activate(c, core.addPath(c, kind: .direct, remote: v6, via: nil), now: t(1))
        let paths = core.dataPaths(now: t(2))
        XCTAssertEqual(paths.map(\.name).sorted(), ["b", "c"])
        var m = TunnelMTU(configured: nil, defaultMTU: 1404, peers: 3)
        func apply(_ d: [(peer: PeerID, name: String, kind: PathKind, remote: Endpoint, via: PeerID?)]) -> TunnelMTU.Change? {
            m.update(d.map { TunnelMTU.Path(peer: $0.peer, peerName: $0.name, kind: $0.kind, remote: $0.remote, relayed: $0.via != nil,
                                            uplink: "eth0", uplinkMTU: 1500) }, now: t(2)).change
        }
        XCTAssertEqual(apply(paths)?.new, 1420, "the IPv6 path is the smallest")
        core.tunnels.paths.deactivate(c)
        XCTAssertEqual(core.dataPaths(now: t(2)).map(\.name), ["b"])
        XCTAssertEqual(apply(core.dataPaths(now: t(2)))?.new, 1440, "its removal lifts the MTU to the IPv4 path's")
    }
}
