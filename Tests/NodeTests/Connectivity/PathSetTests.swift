import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Paths as sets (PathSet.swift): a PathID with a local and a remote side, one
/// PathSet per member in the path manager, and the session layer holding no
/// endpoint of its own (its destination is the path manager's).
final class PathSetTests: XCTestCase {
    private func t(_ ms: UInt64) -> Instant { Instant(ns: ms * 1_000_000) }
    private let a = PeerID(rawValue: 1), m = PeerID(rawValue: 2)
    private let epA = Endpoint("192.0.2.1:51820")!, epM = Endpoint("198.51.100.7:40001")!

    /// A path whose delay changes shows it at the next sample, not after
    /// dozens (a path out of the spread is pinged only every few seconds), and
    /// its smallest RTT rises once the old minimum is older than the window.
    func testRTTFollowsAPathWhoseDelayChanged() {
        var p = PathState(kind: .direct, remote: epA, via: nil)
        p.recordRTT(.milliseconds(200), now: t(0))
        p.recordRTT(.milliseconds(204), now: t(3_000))
        XCTAssertEqual(p.rtt?.ns ?? 0, Span.milliseconds(200).ns, accuracy: 1_000_000, "smoothed within 2x")
        // The route changed to a 20 ms one: the next sample restarts the estimate.
        p.recordRTT(.milliseconds(20), now: t(6_000))
        XCTAssertEqual(p.rtt, .milliseconds(20))
        XCTAssertEqual(p.rttvar, .milliseconds(10))
        XCTAssertEqual(p.minRTT, .milliseconds(20))
        // And back to 200 ms: srtt at once; the 20 ms minimum stands for its window, then goes.
        p.recordRTT(.milliseconds(200), now: t(9_000))
        XCTAssertEqual(p.rtt, .milliseconds(200))
        XCTAssertEqual(p.minRTT, .milliseconds(20))
        p.recordRTT(.milliseconds(201), now: t(6_000) + PathState.minRTTWindow)
        XCTAssertEqual(p.minRTT, .milliseconds(201))
        // Queueing of less than 2x is smoothed as before.
        p.recordRTT(.milliseconds(300), now: t(20_000))
        XCTAssertLessThan(p.rtt!.ns, Span.milliseconds(220).ns)
        XCTAssertEqual(p.minRTT, .milliseconds(201))
    }

    func testPathIDSidesAndRelayFollowsItsAnchor() {
        var pm = PathManager(members: 4, timings: .default)
        // The anchor's address reached straight and the same address as a relay are two paths.
        let (d, _) = pm.addPath(m, kind: .direct, remote: epA, via: nil)
        let (r, _) = pm.addPath(m, kind: .relay, remote: epA, via: a)
        XCTAssertNotEqual(d, r)
        XCTAssertEqual(pm[m].paths[d].id, PathID(local: .primary, remote: .endpoint(epA)))
        XCTAssertEqual(pm[m].paths[r].id, PathID(local: .primary, remote: .relay(anchor: a, at: epA)))
        XCTAssertEqual(pm[m].paths[r].id.local.description, "udp0", "one socket per family today: local index 0")
        XCTAssertEqual(pm[m].pathIndex(PathID(remote: .relay(anchor: a, at: epA))), r)
        XCTAssertNil(pm[m].pathIndex(PathID(local: LocalPathEnd(socket: 1), remote: .endpoint(epA))),
                     "another uplink to the same remote is another path")
        XCTAssertEqual(pm[m].paths[r].overhead, pm[m].paths[d].overhead + RelayMessage.headerSize)
        XCTAssertNil(pm[m].paths[d].mtu, "not measured")

        XCTAssertNil(pm.destination(m))
        _ = pm.activate(m, r)
        XCTAssertEqual(pm.destination(m), epA, "the session sends where the active path goes")
        let moved = Endpoint("192.0.2.99:51820")!
        XCTAssertEqual(pm.anchorMoved(a, from: epA, to: moved), [m])
        XCTAssertEqual(pm[m].paths[r].id.remote, .relay(anchor: a, at: moved))
        XCTAssertEqual(pm[m].paths[d].remote, epA, "a direct path to that address stays")
        XCTAssertEqual(pm.destination(m), moved, "and the destination followed the active relay")
        pm.deactivate(m)
        XCTAssertEqual(pm.destination(m), moved, "with no active path the session keeps its last destination")
    }

    func testFirstContactAndWireGuardRoaming() {
        var pm = PathManager(members: 4, timings: .default)
        XCTAssertTrue(pm.firstContact(m, at: epA))
        XCTAssertEqual(pm.destination(m), epA)
        XCTAssertTrue(pm[m].paths.isEmpty, "a first contact makes no path: the caller knows its kind")
        XCTAssertFalse(pm.firstContact(m, at: epM), "only the first")
        XCTAssertTrue(pm.roamDirect(m, to: epM))
        XCTAssertEqual(pm.destination(m), epM)
        XCTAssertEqual(pm[m].activePath?.id, PathID(remote: .endpoint(epM)))
        XCTAssertEqual(pm[m].activeKind, .direct)
        XCTAssertFalse(pm.roamDirect(m, to: epM), "already there")
        XCTAssertEqual(pm.directOwner[epM], m)
    }

    /// The session layer alone roams as WireGuard does, and the path it roams
    /// to is a path in the member's set (PeerSession has no endpoint).
    func testTunnelsRoamingIsThePathManagers() {
        let sim = SessionSim(count: 2)
        sim.send(from: 0, to: 1, .tagged(0))
        sim.drive(for: .milliseconds(100))
        XCTAssertEqual(sim.status(1, 0)?.state, .established)
        let p = sim.pid(1, 0)
        XCTAssertEqual(sim.nodes[1].tunnels.paths[p].activePath?.remote, sim.nodes[0].address,
                       "the responder's first contact with roaming on became its active direct path")
        var buf = [UInt8](repeating: 0, count: 16 + 24 + 16)
        buf.replaceSubrange(16..<40, with: [UInt8].tagged(5))
        let now = sim.now
        let q = sim.pid(0, 1)
        guard case .send(_, let off, let len) = buf.withUnsafeMutableBytes({
            sim.nodes[0].tunnels.send(to: q, $0, payloadOffset: 16, payloadLength: 24, now: now)
        }) else { return XCTFail("no keys") }
        var bytes = Array(buf[off..<(off + len)])
        let roamed = Endpoint.v4(100, 64, 9, 9, port: 4000)
        _ = bytes.withUnsafeMutableBytes {
            sim.nodes[1].tunnels.receive($0, length: $0.count, from: roamed, now: now)
        }
        XCTAssertEqual(sim.nodes[1].tunnels.pollEvent(), .endpointChanged(p, roamed))
        let set = sim.nodes[1].tunnels.paths[p]
        XCTAssertEqual(set.paths.count, 2, "the old path stays in the set")
        XCTAssertEqual(set.activePath?.remote, roamed)
        XCTAssertEqual(sim.nodes[1].tunnels.endpoint(of: p), roamed)
        XCTAssertEqual(sim.nodes[1].tunnels.peerStatus(p, now: now)?.endpoint, roamed)
    }

    /// With no destination in the path manager the session's initiation waits
    /// (nothing is sent to a made-up address); a path opening sends it at once.
    func testNoDestinationMeansNoInitiation() {
        let idA = Identity(secret: SecretKey.generate()), idB = Identity(secret: SecretKey.generate())
        var tun = Tunnels(identity: idA, peers: [PeerSpec(publicKey: idB.publicKey)], seed: 1)
        let p = PeerID(rawValue: 0)
        tun.connect(p, now: t(0))
        tun.handleTimeout(now: t(0), wallClock: HandshakeTimestamp(unixSeconds: 1, nanoseconds: 0))
        XCTAssertNil(tun.pollTransmit(), "no destination: the initiation waits")
        XCTAssertTrue(tun.isHandshaking(p))
        let ep = Endpoint.v4(192, 0, 2, 2, port: 51820)
        tun.setEndpoint(ep, for: p)
        tun.handleTimeout(now: t(1), wallClock: HandshakeTimestamp(unixSeconds: 1, nanoseconds: 1))
        XCTAssertEqual(tun.pollTransmit()?.to, ep, "a path opened: the initiation goes at once, to it")
        XCTAssertEqual(tun.unroutable, 0)
    }

    /// `wsctl status` lists every path of a peer with its state, our end included.
    func testStatusListsEveryPathWithItsState() throws {
        var pm = PathManager(members: 4, timings: .default)
        let (d, _) = pm.addPath(m, kind: .direct, remote: epM, via: nil)
        _ = pm.addPath(m, kind: .relay, remote: epA, via: a)
        _ = pm.activate(m, d)
        pm.validated(m, d, rtt: Span.milliseconds(20), now: t(1000))
        pm.heard(m, d, traffic: true, now: t(1000))
        XCTAssertTrue(pm[m].paths[d].isValid(now: t(2000), timings: .default))

        let path = StatusReport.Path(kind: .direct, local: "udp0", remote: "\(epM)", rttMs: 20, loss: 0, active: true,
                                     validated: true, usable: true, lastRxSecondsAgo: 1)
        let json = String(decoding: try JSONEncoder().encode(path), as: UTF8.self)
        for key in ["\"local\":\"udp0\"", "\"validated\":true", "\"usable\":true", "\"last_rx_s_ago\":1", "\"active\":true"] {
            XCTAssertTrue(json.contains(key), "\(key) in \(json)")
        }
        XCTAssertEqual(try JSONDecoder().decode(StatusReport.Path.self, from: Data(json.utf8)), path)
        // A daemon from before path sets: the new keys are absent and decode as nil.
        let old = #"{"kind":"relay","remote":"192.0.2.1:51820","via":"a1","rtt_ms":null,"loss":null,"active":false}"#
        let back = try JSONDecoder().decode(StatusReport.Path.self, from: Data(old.utf8))
        XCTAssertNil(back.local)
        XCTAssertNil(back.validated)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(back), as: UTF8.self).contains("local"))
    }
}
