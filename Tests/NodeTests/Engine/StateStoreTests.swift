import Foundation
import Logging
import XCTest
@testable import Support
import Wire
@testable import Engine

/// The endpoint cache on disk (security review M5): debounced, written off the
/// reactor, atomic, never following a planted symlink, bounded when read.
final class StateStoreTests: XCTestCase {
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "ws-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func at(_ s: UInt64) -> Instant { Instant(ns: s * 1_000_000_000) }

    /// A path flapping every second for a minute costs three writes, not sixty.
    func testSaveScheduleWritesAtMostOncePerInterval() {
        var s = SaveSchedule(interval: .seconds(30 as UInt64))
        XCTAssertEqual(s.changed(now: at(100)), .writeNow)
        XCTAssertEqual(s.changed(now: at(101)), .writeAt(at(130)))
        XCTAssertEqual(s.changed(now: at(102)), .alreadyScheduled)
        s.fired(now: at(130))
        XCTAssertEqual(s.changed(now: at(131)), .writeAt(at(160)))
        s.fired(now: at(160))
        XCTAssertEqual(s.changed(now: at(500)), .writeNow, "after a quiet spell the change is written at once")

        var flaps = SaveSchedule(interval: .seconds(30 as UInt64))
        var writes = 0
        var due: Instant?
        for t in 0..<60 as Range<UInt64> {
            if let d = due, d <= at(t) { flaps.fired(now: at(t)); writes += 1; due = nil }
            switch flaps.changed(now: at(t)) {
            case .writeNow: writes += 1
            case .writeAt(let d): due = d
            case .alreadyScheduled: break
            }
        }
        XCTAssertLessThanOrEqual(writes, 3)
    }

    func testSaveIsAtomicPrivateAndRoundTrips() throws {
        let store = try XCTUnwrap(StateStore(directory: dir, logger: Logger(label: "test")))
        XCTAssertTrue(store.save(Array("{\"a\":1}".utf8)))
        XCTAssertEqual(store.load(), Array("{\"a\":1}".utf8))
        let attrs = try FileManager.default.attributesOfItem(atPath: store.path)
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path + ".tmp"))
    }

    /// The gossip records have their own file beside the endpoint cache, and
    /// two writers never overwrite each other's file.
    func testRecordsFileLivesBesideTheEndpointCache() throws {
        let endpoints = try XCTUnwrap(StateStore(directory: dir, logger: Logger(label: "test")))
        let records = try XCTUnwrap(StateStore(directory: dir, name: StateStore.recordsFile, logger: Logger(label: "test")))
        XCTAssertEqual(endpoints.path, dir + "/endpoints.json")
        XCTAssertEqual(records.path, dir + "/records.bin")
        let (w1, w2) = (StateWriter(store: endpoints), StateWriter(store: records))
        w1.submit(Array("{}".utf8))
        w2.submit([1, 2, 3])
        w1.finish()
        w2.finish()
        XCTAssertEqual(endpoints.load(), Array("{}".utf8))
        XCTAssertEqual(records.load(), [1, 2, 3])
    }

    /// A symlink planted at the temporary name is replaced, not followed.
    func testAPlantedSymlinkIsNotFollowed() throws {
        let store = try XCTUnwrap(StateStore(directory: dir, logger: Logger(label: "test")))
        let victim = dir + "/victim"
        try "precious".write(toFile: victim, atomically: false, encoding: .utf8)
        XCTAssertEqual(symlink(victim, store.path + ".tmp"), 0)
        XCTAssertTrue(store.save(Array("new".utf8)))
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious")
        XCTAssertEqual(store.load(), Array("new".utf8))
    }

    func testAnOversizedOrSymlinkedCacheIsNotRead() throws {
        let store = try XCTUnwrap(StateStore(directory: dir, logger: Logger(label: "test")))
        let big = [UInt8](repeating: 0x20, count: StateStore.maxFileSize + 1)
        XCTAssertTrue(store.save(big))
        XCTAssertNil(store.load())
        try FileManager.default.removeItem(atPath: store.path)
        XCTAssertEqual(symlink("/etc/hostname", store.path), 0)
        XCTAssertNil(store.load())
    }

    /// The writer thread writes the newest snapshot; `finish` flushes what is pending.
    func testWriterWritesTheNewestSnapshotOffTheCallersThread() throws {
        let store = try XCTUnwrap(StateStore(directory: dir, logger: Logger(label: "test")))
        let w = StateWriter(store: store)
        for i in 0..<100 { w.submit(Array("snapshot \(i)".utf8)) }
        w.finish()
        XCTAssertEqual(store.load(), Array("snapshot 99".utf8))
        XCTAssertGreaterThanOrEqual(w.writes, 1)
        XCTAssertLessThanOrEqual(w.writes, 100)
    }

    /// Another VPN's TUN (point-to-point) with a private address is no candidate and
    /// no LAN announcement: a path to it would carry Whalescale inside that tunnel.
    /// The same address on a broadcast interface (Ethernet, Wi-Fi, a bridge) is,
    /// and so is a public address on a point-to-point link (ppp with a public IP).
    func testPrivateAddressesOnPointToPointInterfacesReachOnlyTheirTunnel() {
        let p2p = UInt32(IFF_UP | IFF_POINTOPOINT | IFF_NOARP), lan = UInt32(IFF_UP | IFF_BROADCAST | IFF_MULTICAST)
        func v4(_ t: String) -> IPAddressBytes { IPAddressBytes(v4: t)! }
        func v6(_ t: String) -> IPAddressBytes { IPAddressBytes(v6: t)! }
        for a in ["10.80.0.1", "172.20.1.1", "192.168.7.1", "169.254.3.3", "100.100.1.1"] {
            XCTAssertTrue(LocalAddresses.reachesOnlyItsTunnel(flags: p2p, family: .v4, address: v4(a)), a)
            XCTAssertFalse(LocalAddresses.reachesOnlyItsTunnel(flags: lan, family: .v4, address: v4(a)), a)
        }
        for a in ["fd80::1", "fe80::1"] {
            XCTAssertTrue(LocalAddresses.reachesOnlyItsTunnel(flags: p2p, family: .v6, address: v6(a)), a)
            XCTAssertFalse(LocalAddresses.reachesOnlyItsTunnel(flags: lan, family: .v6, address: v6(a)), a)
        }
        XCTAssertFalse(LocalAddresses.reachesOnlyItsTunnel(flags: p2p, family: .v4, address: v4("198.51.100.7")))
        XCTAssertFalse(LocalAddresses.reachesOnlyItsTunnel(flags: p2p, family: .v4, address: v4("100.128.0.1")), "outside 100.64/10")
        XCTAssertFalse(LocalAddresses.reachesOnlyItsTunnel(flags: p2p, family: .v6, address: v6("2001:db8::7")))
    }
}
