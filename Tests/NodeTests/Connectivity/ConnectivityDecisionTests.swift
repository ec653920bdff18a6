import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// The pure choices, from tables (STYLE 8): NAT classification, path
/// preference and its hysteresis, relay anchor choice, backoff schedules,
/// token buckets, and the endpoint cache format.
final class ConnectivityDecisionTests: XCTestCase {
    let a1 = PeerID(rawValue: 0), a2 = PeerID(rawValue: 1), a3 = PeerID(rawValue: 2)
    let local = Endpoint.v4(192, 168, 1, 2, port: 51820)
    let pub = Endpoint.v4(198, 51, 100, 7, port: 51820)

    func ev(_ a: PeerID, _ e: Endpoint) -> NATEvidence { NATEvidence(anchor: a, observed: e, at: .zero) }

    func testNATClassificationTable() {
        let x1 = Endpoint.v4(198, 51, 100, 10, port: 40001)
        let x2 = Endpoint.v4(198, 51, 100, 10, port: 40002)
        let y1 = Endpoint.v4(198, 51, 100, 11, port: 40001)
        let v6 = Endpoint("[2001:db8::7]:51820")!
        let table: [([NATEvidence], [Endpoint], NATMapping, String)] = [
            ([], [local], .unknown, "no observation"),
            ([ev(a1, x1)], [local], .unknown, "one anchor cannot tell"),
            ([ev(a1, x1), ev(a2, x1)], [local], .endpointIndependent, "same endpoint from two anchors"),
            ([ev(a1, x1), ev(a2, x2)], [local], .endpointDependent, "a port per destination"),
            ([ev(a1, x1), ev(a2, y1)], [local], .endpointDependent, "an address per destination"),
            ([ev(a1, x1), ev(a2, x1), ev(a3, x2)], [local], .endpointDependent, "one disagreeing anchor is enough"),
            ([ev(a1, pub)], [pub], .none, "observed == local: no NAT, even from one anchor"),
            ([ev(a1, pub), ev(a2, pub)], [local, pub], .none, "any local match"),
            ([ev(a1, Endpoint.v4(198, 51, 100, 7, port: 1))], [pub], .unknown, "same address, other port: a NAT keeping the address"),
            ([ev(a1, v6), ev(a2, v6)], [local], .endpointIndependent, "IPv6 when IPv4 says nothing"),
            ([ev(a1, x1), ev(a2, x2), ev(a1, v6), ev(a2, v6)], [local, v6], .endpointDependent, "IPv4 decides when it can"),
            ([ev(a1, x1), ev(a2, v6)], [local], .unknown, "one per family"),
        ]
        for (evidence, locals, expected, why) in table {
            XCTAssertEqual(classifyNAT(evidence, local: locals), expected, why)
        }
    }

    func testPathPreferenceTable() {
        func v(_ k: PathKind, _ usable: Bool = true, _ rttMs: UInt64? = nil) -> PathView {
            PathView(kind: k, usable: usable, rtt: rttMs.map { .milliseconds($0) })
        }
        // (candidate, active, switch?, why)
        let table: [(PathView, PathView?, Bool, String)] = [
            (v(.relay), nil, true, "anything usable beats nothing"),
            (v(.relay, false), nil, false, "never an unusable path"),
            (v(.direct), v(.relay, true, 10), true, "direct beats relay at once, even slower"),
            (v(.lan, true, 5), v(.direct, true, 50), true, "lan beats direct"),
            (v(.lan, true, 6), v(.direct, true, 5), true, "lan beats direct a little faster"),
            (v(.lan), v(.direct, true, 5), true, "lan beats direct without RTTs"),
            (v(.lan, true, 50), v(.direct, true, 5), false, "not a lan path far slower than the direct one"),
            (v(.direct, true, 20), v(.lan, true, 200), true, "a direct path clearly faster than the active lan path"),
            (v(.direct, true, 18), v(.lan, true, 20), false, "...not one only 2 ms faster"),
            (v(.relay, true, 1), v(.lan, true, 200), false, "a relay never, however fast"),
            (v(.relay, true, 1), v(.direct, true, 100), false, "a worse class never wins while the active path works"),
            (v(.relay), v(.direct, false), true, "...but does when it does not"),
            (v(.direct, true, 79), v(.direct, true, 100), true, "same class: below 80% and ≥ 5 ms better"),
            (v(.direct, true, 81), v(.direct, true, 100), false, "same class: not 20% better (hysteresis)"),
            (v(.direct, true, 3), v(.direct, true, 7), false, "same class: 57%, but only 4 ms better"),
            (v(.direct, true, 1), v(.direct, true, 6), true, "same class: 5 ms and 17%"),
            (v(.direct), v(.direct, true, 100), false, "no RTT for the candidate: the active path stays"),
            (v(.direct, true, 1), v(.direct), false, "no RTT for the active path: it stays"),
        ]
        for (c, a, expected, why) in table {
            XCTAssertEqual(prefers(c, over: a), expected, why)
        }
        // The hysteresis band holds in both directions: two paths at 90 and 100 ms never trade places.
        XCTAssertFalse(prefers(v(.direct, true, 90), over: v(.direct, true, 100)))
        XCTAssertFalse(prefers(v(.direct, true, 100), over: v(.direct, true, 90)))
    }

    func testRelayAnchorIsSymmetricAndSpreads() {
        var rng = SessionRandom(seed: 9)
        let anchors = (0..<2).map { (id: MemberID(rawValue: rng.next()), peer: PeerID(rawValue: $0)) }
        var load = [0, 0]
        for _ in 0..<1000 {
            let x = MemberID(rawValue: rng.next()), y = MemberID(rawValue: rng.next())
            let chosen = relayAnchor(for: x, y, among: anchors)
            XCTAssertEqual(chosen, relayAnchor(for: y, x, among: anchors), "both sides pick the same")
            XCTAssertEqual(chosen, relayAnchor(for: x, y, among: anchors.reversed()), "order of the list does not matter")
            load[chosen!.rawValue] += 1
        }
        XCTAssertTrue((400...600).contains(load[0]), "spread: \(load)")
        XCTAssertNil(relayAnchor(for: MemberID(rawValue: 1), MemberID(rawValue: 2), among: []))
        XCTAssertEqual(relayAnchor(for: MemberID(rawValue: 1), MemberID(rawValue: 2), among: [anchors[1]]), anchors[1].peer)
    }

    func testWhichAddressesAreWorthAnnouncingOrPunching() {
        let table: [(String, Bool)] = [
            ("198.51.100.7:51820", true), ("192.168.1.2:51820", true), ("10.0.0.1:1", true),
            ("127.0.0.1:51820", false), ("0.0.0.0:51820", false), ("224.0.0.251:5353", false), ("198.51.100.7:0", false),
            ("[2001:db8::1]:51820", true), ("[fd00::1]:51820", true),
            ("[::1]:51820", false), ("[::]:51820", false), ("[fe80::1]:51820", false), ("[ff02::1]:51820", false),
        ]
        for (text, usable) in table {
            XCTAssertEqual(PathManager.isUsableRemote(Endpoint(text)!), usable, text)
        }
        // lan or direct, by address when the member did not say.
        XCTAssertTrue(PathManager.isPrivate(Endpoint("172.20.1.1:1")!))
        XCTAssertFalse(PathManager.isPrivate(Endpoint("172.32.1.1:1")!))
        XCTAssertFalse(PathManager.isPrivate(Endpoint("100.64.0.1:1")!), "CGNAT space is not a LAN")
    }

    func testBackoffTables() {
        let t = ConnectivityTimings.default
        XCTAssertEqual((0..<9).map { recoveryDelay(attempt: $0, timings: t).seconds }, [1, 2, 4, 8, 16, 32, 60, 60, 60])
        XCTAssertEqual((0..<7).map { directRetryDelay(attempt: $0, timings: t).seconds }, [10, 20, 40, 80, 120, 120, 120])
        XCTAssertEqual(recoveryDelay(attempt: 1000, timings: t).seconds, 60, "no overflow")
        var rng = SessionRandom(seed: 1)
        var seen = Set<UInt64>()
        for _ in 0..<1000 {
            let j = jittered(.seconds(60 as UInt64), percent: 10, using: &rng)
            XCTAssertGreaterThanOrEqual(j, .seconds(54 as UInt64))
            XCTAssertLessThanOrEqual(j, .seconds(66 as UInt64))
            seen.insert(j.ns / 1_000_000_000)
        }
        XCTAssertGreaterThan(seen.count, 5, "actually jittered")
    }

    func testTokenBucket() {
        var b = TokenBucket(rate: 1000, burst: 3000)
        let t = Instant(ns: 10_000_000_000)
        XCTAssertTrue(b.take(3000, now: t))
        XCTAssertFalse(b.take(1, now: t))
        XCTAssertFalse(b.take(600, now: t + .milliseconds(500)))
        XCTAssertTrue(b.take(500, now: t + .milliseconds(500)))
        XCTAssertTrue(b.take(3000, now: t + .seconds(100 as UInt64)), "refills to the burst, not beyond")
        XCTAssertFalse(b.take(1, now: t + .seconds(100 as UInt64)))
        XCTAssertFalse(b.take(.max, now: t + .seconds(200 as UInt64)), "no overflow")
    }

    func testEndpointCacheFormat() {
        let k1 = PublicKey(bytes: [UInt8](repeating: 1, count: 32))!, k2 = PublicKey(bytes: [UInt8](repeating: 2, count: 32))!
        var c = EndpointCache()
        XCTAssertTrue(c.record(pub, for: k1))
        XCTAssertFalse(c.record(pub, for: k1), "unchanged")
        for port in 1...6 { c.record(.v4(203, 0, 113, 1, port: UInt16(port)), for: k2) }
        c.record(.v4(203, 0, 113, 1, port: 3), for: k2)
        XCTAssertEqual(c.endpoints(for: k2).map(\.port), [3, 6, 5, 4], "most recent first, at most 4")
        let text = String(decoding: c.bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("\"version\" : 1"), text)
        XCTAssertTrue(text.contains("\"198.51.100.7:51820\""), text)
        XCTAssertEqual(EndpointCache(bytes: c.bytes), c)
        XCTAssertEqual(c.bytes, EndpointCache(bytes: c.bytes)?.bytes, "stable bytes")
        // Bad files: nil; bad entries in a good file: skipped.
        XCTAssertNil(EndpointCache(bytes: Array("{".utf8)))
        XCTAssertNil(EndpointCache(bytes: Array(#"{"version": 2, "members": []}"#.utf8)))
        let mixed = #"{"version": 1, "extra": true, "members": [{"public_key": "bad", "endpoints": ["1.2.3.4:5"]},"#
            + #"{"public_key": "\#(k1.base64)", "endpoints": ["nope", "1.2.3.4:5"]}]}"#
        XCTAssertEqual(EndpointCache(bytes: Array(mixed.utf8))?.entries, [k1: [.v4(1, 2, 3, 4, port: 5)]])
    }
}
