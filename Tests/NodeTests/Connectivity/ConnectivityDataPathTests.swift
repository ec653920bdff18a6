import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// The data path as the engine runs it (SessionShards, at 1 and 2 reactors) in a loop, in one caller-owned buffer: direct, and
/// relayed through an anchor (sender wraps in place, anchor forwards in place,
/// receiver unwraps in place). Allocations are counted when the test runs
/// with perf/lib/malloccount.so preloaded (STYLE 16):
///
///   gcc -O2 -shared -fPIC -o /tmp/malloccount.so perf/lib/malloccount.c
///   LD_PRELOAD=/tmp/malloccount.so .build/debug/WhalescalePackageTests.xctest NodeTests.ConnectivityDataPathTests
///
/// Without it the loop still checks every packet arrives intact; with
/// WS_REQUIRE_MALLOC_COUNT=1 (scripts/test's preloaded run) a missing counter fails.
final class ConnectivityDataPathTests: XCTestCase {
    typealias Counter = @convention(c) () -> UInt64

    static let mallocCount: Counter? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "ws_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: Counter.self)
    }()

    /// The single-path data path: `multipath` off, so the cone pair's relay path (usable
    /// too) carries nothing (MultipathWireTests has the spread data path).
    static func makeWorld(owners: Int = 1, cipher: CipherSetting? = nil) -> NetSim {
        var timings = ConnectivityTimings.default
        timings.multipath = false
        let sim = NetSim(timings: timings, owners: owners)
        if let cipher { sim.cipher = cipher }
        let cone1 = sim.addNAT(.independent, .independent), cone2 = sim.addNAT(.independent, .independent)
        let sym1 = sim.addNAT(.dependent, .addressAndPort), sym2 = sim.addNAT(.dependent, .addressAndPort)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "anchor-2", anchor: true),
                   .init(name: "cone-1", nat: cone1), .init(name: "cone-2", nat: cone2),
                   .init(name: "sym-1", nat: sym1), .init(name: "sym-2", nat: sym2)])
        sim.drive(for: .seconds(12 as UInt64))
        for k in 0..<8 {
            for (i, j) in [(2, 3), (3, 2), (4, 5), (5, 4)] { sim.sendIP(from: i, to: j, k) }
            sim.drive(for: .seconds(1 as UInt64))
        }
        return sim
    }

    /// The engine's data path with one reactor (N = 1): lane 0's one shard seals
    /// and opens every session, the anchor forwards on its lane's shard, reports go back
    /// to NodeCore every 20 ms. Without allocation.
    /// Sessions under the default cipher setting ("auto": AES-256-GCM where this CPU has it).
    func testDirectAndRelayedSteadyStateInPlace() {
        steadyState(owners: 1)
    }

    /// The same loop with every node set to `cipher = "chacha20poly1305"` (and, where this
    /// CPU has AES-NI, explicitly "auto": both transport ciphers through the engine's data path).
    func testSteadyStateUnderEachCipher() {
        steadyState(owners: 1, cipher: .chacha20poly1305)
        if NoiseCipher.aesGCM.isAvailable { steadyState(owners: 2, cipher: .auto) }
    }

    /// The same loop with sessions split across two reactors (SessionShard.swift):
    /// each peer's owner seals and opens. Also without allocation.
    func testSplitAcrossReactorsSteadyStateInPlace() {
        steadyState(owners: 2)
    }

    private func steadyState(owners: Int, cipher: CipherSetting? = nil) {
        let sim = Self.makeWorld(owners: owners, cipher: cipher)
        let want: NoiseCipher = sim.cipher.allowsAESGCM && NoiseCipher.aesGCM.isAvailable ? .aesGCM : .chachaPoly
        for (i, j) in [(2, 3), (3, 2), (4, 5), (5, 4)] {
            XCTAssertEqual(sim.hosts[i].core.tunnels.peerStatus(PeerID(rawValue: j), now: sim.now)?.cipher, want,
                           "\(sim.hosts[i].name) -> \(sim.hosts[j].name) under \(sim.cipher)")
        }
        XCTAssertEqual(sim.activePath(2, 3)?.kind, .direct)
        guard let relay = sim.activePath(4, 5), relay.kind == .relay, let via = relay.via?.rawValue else {
            return XCTFail("the symmetric pair relays")
        }
        let cone2Peer = PeerID(rawValue: 3), cone1Peer = PeerID(rawValue: 2)
        let sym2Peer = PeerID(rawValue: 5), sym1Peer = PeerID(rawValue: 4)
        // Each peer's owner on each side.
        var cone1 = sim.hosts[2].shards[SessionOwnership.owner(of: cone2Peer, owners: owners)]
        var cone2 = sim.hosts[3].shards[SessionOwnership.owner(of: cone1Peer, owners: owners)]
        var sym1 = sim.hosts[4].shards[SessionOwnership.owner(of: sym2Peer, owners: owners)]
        var sym2 = sim.hosts[5].shards[SessionOwnership.owner(of: sym1Peer, owners: owners)]
        var cone1Core = sim.hosts[2].core
        // The anchor forwards on the lane the steering picks (every lane forwards: RelayTable.swift).
        var anchorLanes = sim.hosts[via].shards
        let cone1Seen = sim.activePath(3, 2)!.remote, sym1Seen = sim.activePath(via, 4)!.remote
        let anchorEndpoint = sim.hosts[via].local
        let start = sim.now
        let headroom = 64, payload = 1380
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: headroom + payload + 64, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        buffer[headroom] = 0x45

        var counted: UInt64?
        var delivered = 0
        var reports = 0
        for i in 0..<10_100 {
            if i == 100 { counted = Self.mallocCount?() }
            let now = start + Span(ns: UInt64(i) * 1_000_000)
            buffer.storeBytes(of: UInt64(i), toByteOffset: headroom + 8, as: UInt64.self)
            guard case .send(_, let off, let len) = cone1.send(to: cone2Peer, buffer, payloadOffset: headroom,
                                                             payloadLength: payload, now: now) else { break }
            var view = UnsafeMutableRawBufferPointer(rebasing: buffer[off..<buffer.count])
            // Steered by the receiver index to the owner on the other side.
            guard SessionOwnership.owner(ofDatagram: UnsafeRawBufferPointer(view), length: len, owners: owners, relayInner: true)
                    == cone2.index,
                  case .packet(cone1Peer, let o, payload) = cone2.receive(view, length: len, from: cone1Seen, now: now),
                  view.loadUnaligned(fromByteOffset: o + 8, as: UInt64.self) == UInt64(i) else { break }
            buffer.storeBytes(of: UInt64(i), toByteOffset: headroom + 8, as: UInt64.self)
            buffer[headroom] = 0x45
            guard case .send(anchorEndpoint, let roff, let rlen) = sym1.send(to: sym2Peer, buffer, payloadOffset: headroom,
                                                                            payloadLength: payload, now: now),
                  rlen == payload + 32 + RelayMessage.headerSize else { break }
            view = UnsafeMutableRawBufferPointer(rebasing: buffer[roff..<buffer.count])
            let k = LaneRouter(lanes: owners, isAnchor: true).steer(UnsafeRawBufferPointer(view), length: rlen)
            guard case .forward(_, 0, rlen) = anchorLanes[k].receive(view, length: rlen, from: sym1Seen, now: now) else { break }
            guard SessionOwnership.owner(ofDatagram: UnsafeRawBufferPointer(view), length: rlen, owners: owners, relayInner: true)
                    == sym2.index,
                  case .packet(sym1Peer, let ro, payload) = sym2.receive(view, length: rlen, from: anchorEndpoint, now: now),
                  view.loadUnaligned(fromByteOffset: ro + 8, as: UInt64.self) == UInt64(i) else { break }
            buffer[headroom] = 0x45
            // What a lane does after each batch: reports, at most one per peer per 20 ms, to NodeCore.
            _ = cone1.flushActivity(now: now)
            while let r = cone1.pollReport() {
                cone1Core.applyShardReport(r, now: now)
                reports += 1
            }
            while cone1Core.pollTransmit() != nil {}
            while cone1Core.pollEvent() != nil {}
            delivered += 1
        }
        let after = Self.mallocCount?()
        XCTAssertEqual(delivered, 10_100)
        XCTAssertTrue((400...600).contains(reports), "one report per 20 ms of traffic: \(reports)")
        XCTAssertEqual(cone1Core.tunnels.peerStatus(cone2Peer, now: start)?.counters.txPackets ?? 0 >= 10_000, true,
                       "the reports carried the counters")
        if let counted, let after {
            XCTAssertEqual(after - counted, 0, "allocations on the data path, \(owners) reactor(s), \(want)")
            print("datapath, \(owners) reactor(s), \(want): \(after - counted) allocations for 10 000 direct + 10 000 relayed packets")
        } else if ProcessInfo.processInfo.environment["WS_REQUIRE_MALLOC_COUNT"] == "1" {
            XCTFail("WS_REQUIRE_MALLOC_COUNT=1 but the malloc counter is not preloaded: allocations not counted")
        }
    }
}
