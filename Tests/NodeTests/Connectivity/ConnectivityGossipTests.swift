import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// Gossip run by NodeCore in the simulated internet (`NetSim`): a member whose
/// NAT is renumbered publishes a new record, and a member that has no session
/// with it learns the record through the others (docs/gossip.md).
///
///   anchor-1, anchor-2 (public)
///      │  sessions with everyone (the only sessions at first)
///   mover (port-restricted NAT, renumbered)    listener (restricted NAT)
///   public host                                 never any traffic between mover and listener
/// `WS_SIM_SEED` reruns it with other keys and jitter, as for ConnectivitySimTests.
final class ConnectivityGossipTests: XCTestCase {
    func testRenumberedMemberRecordReachesAMemberItDoesNotTalkTo() {
        let sim = NetSim()
        sim.rng = SessionRandom(seed: 91 &+ ConnectivitySimTests.seed)
        let portRestricted = sim.addNAT(.independent, .addressAndPort)
        let restricted = sim.addNAT(.independent, .address)
        sim.build([
            .init(name: "anchor-1", anchor: true),
            .init(name: "anchor-2", anchor: true),
            .init(name: "public"),
            .init(name: "mover", nat: portRestricted),
            .init(name: "listener", nat: restricted),
        ], seed: ConnectivitySimTests.seed)
        let mover = sim.index("mover"), listener = sim.index("listener")
        sim.drive(for: .seconds(15 as UInt64))

        // Everyone holds everyone's first records (sessions with the anchors carried them).
        let before = sim.hosts[listener].core.gossipRecord(of: sim.pid(mover))
        XCTAssertNotNil(before, "the listener holds the mover's first record")
        XCTAssertEqual(sim.hosts[mover].core.gossipOwnSequence, before?.sequence)
        XCTAssertFalse(sim.hosts[listener].core.tunnels.isEstablished(sim.pid(mover), now: sim.now))

        let t0 = sim.now
        let renumbered = IPAddressBytes(v4: (100, 64, 0, 77))
        sim.renumber(sim.hosts[mover].nat!, to: renumbered)
        func learned() -> Bool {
            guard let r = sim.hosts[listener].core.gossipRecord(of: sim.pid(mover)) else { return false }
            return r.sequence > (before?.sequence ?? 0) && r.endpoints.contains { $0.endpoint.address == renumbered && $0.source == .observed }
        }
        // Detection (≤ 7 s address probe) plus a push through the anchors: seconds.
        sim.drive(until: learned, within: .seconds(20 as UInt64))
        XCTAssertTrue(learned(), "the listener learned the mover's new record by gossip")
        let core = sim.hosts[listener].core
        XCTAssertTrue(core.book.gossiped(sim.pid(mover)).contains { $0.endpoint.address == renumbered },
                      "the listener's endpoint book holds the new endpoint: \(core.book.gossiped(sim.pid(mover)))")
        XCTAssertTrue(core.book.punchable(sim.pid(mover)).contains { $0.address == renumbered })
        XCTAssertTrue(core.book.entries(for: sim.pid(mover)).contains {
            if case .gossip(.observed) = $0.source { $0.endpoint.address == renumbered } else { false }
        })
        // It never talked to the mover: the record came through the others.
        XCTAssertFalse(core.tunnels.isEstablished(sim.pid(mover), now: sim.now))
        let status = core.status(now: sim.now)
        XCTAssertGreaterThan(status.counters["gossip_records_accepted"] ?? 0, 0)
        let shown = status.peers.first { $0.id == sim.pid(mover) }?.gossip
        XCTAssertEqual(shown?.sequence, core.gossipRecord(of: sim.pid(mover))?.sequence, "status shows the record")
        XCTAssertTrue(shown?.endpoints.contains { $0.endpoint.address == renumbered && $0.source == .observed } ?? false)
        print("gossip: a renumbered member's record reached a member it does not talk to after \((sim.now - t0).seconds) s (virtual)")
    }

    /// Review M8, flood F8: a member's signed record is its word about the
    /// addresses, like its CANDIDATES. A member that publishes a new set of
    /// addresses every 2 s for 28 s (84 distinct ones) gets at most the
    /// unattested budget's new addresses per 30 s window into another
    /// member's book (two windows: 16), and its first new record is taken.
    func testChurnedRecordsMeetTheUnattestedBudget() {
        let sim = NetSim()
        sim.build([
            .init(name: "anchor-1", anchor: true),
            .init(name: "churner"),
            .init(name: "listener"),
        ], seed: 5 &+ ConnectivitySimTests.seed)
        let churner = sim.index("churner"), listener = sim.index("listener")
        let pc = sim.pid(churner)
        sim.drive(for: .seconds(10 as UInt64))
        let before = Set(sim.hosts[listener].core.book.gossiped(pc).map(\.endpoint))
        XCTAssertFalse(before.isEmpty, "the listener holds the churner's first record")
        let budget = ConnectivityTimings.default.unattestedPunchTargets
        var admitted = Set<Endpoint>(), firstSet: [Endpoint] = []
        for round in 0..<14 {
            let set = (0..<6).map { Endpoint(family: .v4, address: IPAddressBytes(v4: (198, 51, 100, UInt8(round * 6 + $0 + 1))), port: 51820) }
            if round == 0 { firstSet = set }
            sim.hosts[churner].core.setLocalEndpoints(set, now: sim.now)
            sim.drain(churner)
            for _ in 0..<4 {
                sim.drive(for: .milliseconds(500))
                admitted.formUnion(sim.hosts[listener].core.book.gossiped(pc).map(\.endpoint).filter { !before.contains($0) })
            }
        }
        let records = sim.hosts[listener].core.gossipRecord(of: pc)?.sequence ?? 0
        XCTAssertTrue(firstSet.allSatisfy(admitted.contains), "the first new record is within the budget: \(admitted)")
        XCTAssertLessThanOrEqual(admitted.count, 2 * budget, "84 addresses offered in 28 s, \(records) records: \(admitted.count) taken")
        XCTAssertTrue(sim.hosts[listener].core.book.punchable(pc).allSatisfy { before.contains($0) || admitted.contains($0) })
        print("gossip: a churning member offered 84 addresses in 28 s; the listener took \(admitted.count) (budget \(budget) per 30 s)")
    }

    /// Our own record's sequence continues from the snapshot across a restart,
    /// and members' records come back with it.
    func testSnapshotKeepsOurSequenceAcrossARestart() {
        let sim = NetSim()
        sim.build([
            .init(name: "anchor-1", anchor: true),
            .init(name: "public"),
            .init(name: "other"),
        ], seed: 3 &+ ConnectivitySimTests.seed)
        let h = sim.index("public")
        sim.drive(for: .seconds(10 as UInt64))
        let seq = sim.hosts[h].core.gossipOwnSequence
        XCTAssertGreaterThan(seq, 0)
        let snapshot = sim.hosts[h].core.gossipSnapshot()
        XCTAssertNotNil(sim.hosts[h].core.gossipRecord(of: sim.pid(sim.index("other"))))

        // A restart: a new core, and the engine loads the snapshot before anything is sent.
        var fresh = NodeCore(identity: sim.hosts[h].identity, members: sim.hosts[h].core.members, isAnchor: false, seed: 7)
        XCTAssertGreaterThanOrEqual(fresh.loadGossipSnapshot(snapshot, now: sim.now), 2)
        XCTAssertEqual(fresh.gossipOwnSequence, seq)
        fresh.setLocalEndpoints([Endpoint(family: .v4, address: IPAddressBytes(v4: (198, 51, 100, 200)), port: 51820)], now: sim.now)
        XCTAssertEqual(fresh.gossipOwnSequence, seq + 1, "a new record goes on above the last run's")
        XCTAssertNotNil(fresh.gossipRecord(of: sim.pid(sim.index("other"))))
    }
}
