import XCTest
@testable import Support
@testable import Wire
@testable import Protocol

/// PCP MAP (RFC 6887): the byte layout against a hand-written vector, parse ↔
/// serialize, bad sizes; the client machine with a virtual clock: retransmission,
/// giving up, renewal at half the lifetime, the gateway's restart by its epoch,
/// error answers and reserved addresses counted, the delete at shutdown.
final class PCPTests: XCTestCase {
    let gw = Endpoint.v4(192, 168, 1, 1, port: PCP.serverPort)
    let me = Endpoint.v4(192, 168, 1, 10, port: 0)
    let nonce: [UInt8] = Array(1...12)
    let t0 = Instant(ns: 1_000_000_000_000)

    // MARK: Wire

    func testRequestLayout() {
        let r = PCPMapRequest(lifetime: 7200, client: me, nonce: nonce, internalPort: 51820)
        let b = r.serialize()
        XCTAssertEqual(b.count, 60)
        XCTAssertEqual(Array(b[0..<8]), [2, 1, 0, 0, 0, 0, 0x1c, 0x20])
        XCTAssertEqual(Array(b[8..<24]), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 10])
        XCTAssertEqual(Array(b[24..<36]), nonce)
        XCTAssertEqual(Array(b[36..<44]), [17, 0, 0, 0, 0xca, 0x6c, 0, 0])
        // No preference, IPv4: ::ffff:0.0.0.0 (RFC 6887 §5).
        XCTAssertEqual(Array(b[44..<60]), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0])
        XCTAssertEqual(PCPMapRequest.parse(b), r)
        XCTAssertNil(PCPMapRequest.parse(Array(b.dropLast())))
    }

    func testResponseRoundTripAndShortError() {
        let ok = PCPMapResponse(resultCode: 0, lifetime: 3600, epoch: 99, nonce: nonce, internalPort: 51820,
                                external: .v4(11, 0, 0, 1, port: 40000))
        let b = ok.serialize()
        XCTAssertEqual(b.count, 60)
        XCTAssertEqual(b[1], 0x81)
        XCTAssertEqual(try PCPMapResponse.parse(b).get(), ok)
        // Options after the payload are skipped.
        XCTAssertEqual(try PCPMapResponse.parse(b + [0, 0, 0, 0]).get(), ok)
        let err = PCPMapResponse(resultCode: PCP.Result.unsuppVersion.rawValue, lifetime: 0, epoch: 5, nonce: nil)
        XCTAssertEqual(err.serialize().count, 24)
        XCTAssertEqual(try PCPMapResponse.parse(err.serialize()).get(), err)
    }

    func testBadResponsesAreRefused() {
        let good = PCPMapResponse(resultCode: 0, lifetime: 60, epoch: 1, nonce: nonce, internalPort: 1,
                                  external: .v4(11, 0, 0, 1, port: 1)).serialize()
        XCTAssertEqual(PCPMapResponse.parse([]).pcpFailure, .size)
        XCTAssertEqual(PCPMapResponse.parse(Array(good[0..<23])).pcpFailure, .size)
        XCTAssertEqual(PCPMapResponse.parse(Array(good[0..<59])).pcpFailure, .size)
        XCTAssertEqual(PCPMapResponse.parse(Array(good[0..<24])).pcpFailure, .size)  // success without its payload
        XCTAssertEqual(PCPMapResponse.parse(good + [UInt8](repeating: 0, count: 1100)).pcpFailure, .size)
        var v = good; v[0] = 0
        XCTAssertEqual(PCPMapResponse.parse(v).pcpFailure, .version)
        v = good; v[1] = 1
        XCTAssertEqual(PCPMapResponse.parse(v).pcpFailure, .notResponse)
        v = good; v[1] = 0x82
        XCTAssertEqual(PCPMapResponse.parse(v).pcpFailure, .opcode)
    }

    func testReservedExternalAddresses() {
        for bad in ["10.1.2.3:1", "192.168.0.1:1", "172.20.0.1:1", "100.64.0.1:1", "127.0.0.1:1", "169.254.1.1:1",
                    "203.0.113.5:1", "198.18.0.1:1", "224.0.0.1:1", "0.0.0.0:1", "11.0.0.1:0", "[fd00::1]:1", "[fe80::1]:1"] {
            XCTAssertFalse(PortMapRules.isUsableExternal(Endpoint(bad)!), bad)
        }
        for good in ["11.0.0.1:51820", "8.8.8.8:1", "172.32.0.1:1", "100.128.0.1:1", "[2001:db8::1]:1"] {
            XCTAssertTrue(PortMapRules.isUsableExternal(Endpoint(good)!), good)
        }
    }

    func testEpochRules() {
        // Server and client moved alike: no loss.
        XCTAssertFalse(PortMapRules.epochLost(previousServer: 100, previousClient: t0, server: 3700, now: t0 + .seconds(UInt64(3600))))
        // Server epoch went back (restart).
        XCTAssertTrue(PortMapRules.epochLost(previousServer: 100, previousClient: t0, server: 5, now: t0 + .seconds(UInt64(10))))
        // Server moved far less than our clock (restarted and ran a while).
        XCTAssertTrue(PortMapRules.epochLost(previousServer: 100, previousClient: t0, server: 200, now: t0 + .seconds(UInt64(3600))))
        // A second back is tolerated.
        XCTAssertFalse(PortMapRules.epochLost(previousServer: 100, previousClient: t0, server: 99, now: t0))
    }

    // MARK: Client

    private func client() -> PCPClient { PCPClient(gateway: gw, client: me, internalPort: 51820, nonce: nonce) }

    private func answer(_ c: inout PCPClient, lifetime: UInt32 = 120, epoch: UInt32, ext: Endpoint = .v4(11, 0, 0, 1, port: 51820),
                        code: UInt8 = 0, now: Instant) {
        c.handle(PCPMapResponse(resultCode: code, lifetime: lifetime, epoch: epoch, nonce: nonce, internalPort: 51820, external: ext).serialize(), now: now)
    }

    private func drain(_ c: inout PCPClient) -> (sent: [PCPMapRequest], events: [PortMapEvent]) {
        var s: [PCPMapRequest] = [], e: [PortMapEvent] = []
        while let b = c.pollTransmit() { s.append(PCPMapRequest.parse(b)!) }
        while let v = c.pollEvent() { e.append(v) }
        return (s, e)
    }

    func testNoAnswerGivesUpQuickly() {
        var c = client()
        c.start(now: t0)
        var sent = drain(&c).sent.count
        var now = t0
        var events: [PortMapEvent] = []
        while let (d, _) = c.pollTimeout() {
            now = d
            c.handleTimeout(now: now)
            let o = drain(&c)
            sent += o.sent.count
            events += o.events
        }
        XCTAssertEqual(sent, 3)
        XCTAssertEqual(now - t0, .milliseconds(1750))  // 250 + 500 + 1000 ms: start-up never waits for a silent gateway
        XCTAssertEqual(events.count, 1)
        guard case .unavailable = events[0] else { return XCTFail("\(events)") }
        XCTAssertEqual(c.counters["pcp_no_answer"], 1)
        XCTAssertEqual(c.state, .unavailable)
    }

    func testMapRenewAtHalfLifetimeAndDelete() {
        var c = client()
        c.start(now: t0)
        let first = drain(&c).sent
        XCTAssertEqual(first.map(\.lifetime), [7200])
        XCTAssertEqual(first[0].suggestedExternal.port, 51820)
        answer(&c, epoch: 1000, now: t0 + .milliseconds(1))
        XCTAssertEqual(drain(&c).events, [.mapped(external: .v4(11, 0, 0, 1, port: 51820), lifetime: .seconds(UInt64(120)))])
        let (renew, reason) = c.pollTimeout()!
        XCTAssertEqual(reason, .renew)
        XCTAssertEqual(renew, t0 + .milliseconds(1) + .seconds(UInt64(60)))
        c.handleTimeout(now: renew)
        XCTAssertEqual(drain(&c).sent.map(\.nonce), [nonce])  // the same nonce renews the same mapping
        answer(&c, epoch: 1060, now: renew + .milliseconds(1))
        XCTAssertEqual(drain(&c).events, [])  // same address: nothing new to announce
        c.stop(now: renew + .seconds(UInt64(1)))
        let o = drain(&c)
        XCTAssertEqual(o.sent.map(\.lifetime), [0])
        XCTAssertEqual(o.events, [.lost(external: .v4(11, 0, 0, 1, port: 51820))])
        answer(&c, lifetime: 0, epoch: 1061, now: renew + .seconds(UInt64(1)))
        XCTAssertEqual(c.state, .stopped)
        XCTAssertNil(c.pollTimeout())
    }

    func testGatewayRestartSeenByEpochAndNewAddress() {
        var c = client()
        c.start(now: t0)
        _ = drain(&c)
        answer(&c, epoch: 5000, now: t0)
        _ = drain(&c)
        let (renew, _) = c.pollTimeout()!
        c.handleTimeout(now: renew)
        _ = drain(&c)
        // The gateway restarted (epoch 3) and maps us to another port.
        answer(&c, epoch: 3, ext: .v4(11, 0, 0, 1, port: 40001), now: renew)
        XCTAssertEqual(c.counters["pcp_gateway_restarted"], 1)
        XCTAssertEqual(drain(&c).events, [.lost(external: .v4(11, 0, 0, 1, port: 51820)),
                                          .mapped(external: .v4(11, 0, 0, 1, port: 40001), lifetime: .seconds(UInt64(120)))])
    }

    func testRenewalsUnansweredUntilExpiryLoseTheMapping() {
        var c = client()
        c.start(now: t0)
        _ = drain(&c)
        answer(&c, epoch: 1, now: t0)
        _ = drain(&c)
        var now = t0, events: [PortMapEvent] = [], sends = 0
        while let (d, _) = c.pollTimeout() {
            now = d
            c.handleTimeout(now: now)
            let o = drain(&c)
            sends += o.sent.count
            events += o.events
        }
        XCTAssertEqual(now, t0 + .seconds(UInt64(120)))
        XCTAssertGreaterThan(sends, 3)
        XCTAssertEqual(events.first, .lost(external: .v4(11, 0, 0, 1, port: 51820)))
        XCTAssertEqual(c.counters["pcp_expired"], 1)
    }

    func testBadAnswersAreCountedNeverMapped() {
        var c = client()
        c.start(now: t0)
        _ = drain(&c)
        c.handle([1, 2, 3], now: t0)
        c.handle([UInt8](repeating: 0, count: 61), now: t0)
        var foreign = PCPMapResponse(resultCode: 0, lifetime: 60, epoch: 1, nonce: Array(repeating: 9, count: 12), internalPort: 51820,
                                     external: .v4(11, 0, 0, 1, port: 1)).serialize()
        c.handle(foreign, now: t0)
        foreign = PCPMapResponse(resultCode: 0, lifetime: 60, epoch: 1, nonce: nonce, internalPort: 9, external: .v4(11, 0, 0, 1, port: 1)).serialize()
        c.handle(foreign, now: t0)
        XCTAssertEqual(c.counters["pcp_bad_size"], 2)
        XCTAssertEqual(c.counters["pcp_not_ours"], 2)
        XCTAssertEqual(drain(&c).events, [])
        // A double NAT: the gateway's "external" address is private.
        answer(&c, epoch: 1, ext: .v4(10, 0, 0, 7, port: 51820), now: t0)
        XCTAssertEqual(c.counters["pcp_bad_external"], 1)
        XCTAssertEqual(c.state, .unavailable)
        guard case .unavailable? = drain(&c).events.first else { return XCTFail("no unavailable event") }
        // Asked again later: an error code ends it too, counted by name.
        c.start(now: t0 + .seconds(UInt64(300)))
        _ = drain(&c)
        c.handle(PCPMapResponse(resultCode: PCP.Result.unsuppVersion.rawValue, lifetime: 0, epoch: 0, nonce: nil).serialize(), now: t0)
        XCTAssertEqual(c.counters["pcp_error_UNSUPP_VERSION"], 1)
        XCTAssertEqual(c.state, .unavailable)
        c.handle([UInt8](repeating: 7, count: 60), now: t0)  // after the end: counted, ignored
        XCTAssertEqual(c.state, .unavailable)
    }
}

extension Result {
    fileprivate var pcpFailure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
