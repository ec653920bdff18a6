import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// LAN discovery: the mDNS/DNS-SD bytes against hand-built messages (names,
/// compression, the TXT keys), malformed and hostile input refused with a
/// reason (pointer loops, truncation at every length, oversized, too many
/// records, long labels); the machine with a virtual clock: start-up and
/// periodic announcements, the one-second rule for answers, and announcements
/// that are spoofed, unsigned, tampered with, from a non-member, replayed from
/// another host or stale, each ignored and counted; NodeCore going to a `lan`
/// path with no anchor and no static endpoint.
final class LanDiscoveryTests: XCTestCase {
    let t0 = Instant(ns: 1_000_000_000_000)
    var rng = SessionRandom(seed: 0x1A4)

    func identity() -> Identity { SessionSim.identity(&rng) }

    // MARK: Wire

    /// The query, byte for byte (RFC 1035 §4.1: header, QNAME labels, QTYPE PTR, QCLASS IN).
    func testQueryBytes() throws {
        let expected: [UInt8] = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                 11] + Array("_whalescale".utf8) + [4] + Array("_udp".utf8) + [5] + Array("local".utf8) + [0,
                                 0, 12, 0, 1]
        XCTAssertEqual(LanAnnouncement.query(), expected)
        let m = try DNSMessage.parse(expected).get()
        XCTAssertFalse(m.isResponse)
        XCTAssertEqual(m.questions, [DNSQuestion(name: DNSName(["_whalescale", "_udp", "local"]), type: 12)])
        XCTAssertTrue(LanAnnouncement.asksForService(m))
        // Case does not matter in DNS names (RFC 6762 §16); another service is not ours.
        let upper = try DNSMessage.parse(DNSMessage(flags: 0, questions: [DNSQuestion(name: DNSName(["_WhaleScale", "_UDP", "LOCAL"]), type: 12)]).serialize()).get()
        XCTAssertTrue(LanAnnouncement.asksForService(upper))
        let other = try DNSMessage.parse(DNSMessage(flags: 0, questions: [DNSQuestion(name: DNSName(["_ipp", "_tcp", "local"]), type: 12)]).serialize()).get()
        XCTAssertFalse(LanAnnouncement.asksForService(other))
    }

    func testAnnouncementRecordsAndRoundTrip() throws {
        let id = identity()
        let a = LanAnnouncement.signed(by: id, port: 51820, sequence: 7, addresses: [.v4(192, 168, 1, 10, port: 0)])
        XCTAssertTrue(a.isValidlySigned)
        let bytes = a.serialize()
        let m = try DNSMessage.parse(bytes).get()
        XCTAssertEqual(m.flags, 0x8400)
        XCTAssertEqual(m.answers.count, 4)
        let label = "ws-" + Hex.encode(id.publicKey.bytes.prefix(8))
        XCTAssertEqual(m.answers[0].name.description, "_whalescale._udp.local")
        XCTAssertEqual(m.answers[0].data, .ptr(DNSName([label, "_whalescale", "_udp", "local"])))
        XCTAssertEqual(m.answers[1].data, .srv(priority: 0, weight: 0, port: 51820, target: DNSName([label, "local"])))
        XCTAssertTrue(m.answers[1].cacheFlush)
        guard case .txt(let txt) = m.answers[2].data else { return XCTFail("no TXT") }
        let strings = txt.map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(strings[0], "txtvers=1")
        XCTAssertEqual(strings[1], "id=" + Hex.encode(id.publicKey.bytes))
        XCTAssertEqual(strings[2], "port=51820")
        XCTAssertEqual(strings[3], "seq=7")
        XCTAssertEqual(strings[4], "sig=" + Hex.encode(a.signature))
        XCTAssertEqual(m.answers[3].data, .a(IPAddressBytes(v4: (192, 168, 1, 10))))
        XCTAssertEqual(m.serialize(), bytes, "parse ↔ serialize")
        let found = try XCTUnwrap(LanAnnouncement.extract(from: m))
        XCTAssertEqual(found.count, 1)
        XCTAssertEqual(try found[0].get(), a)
    }

    /// A response as another responder might pack it: compressed names (pointers back into earlier names).
    func testCompressedNames() throws {
        let id = identity()
        let a = LanAnnouncement.signed(by: id, port: 4000, sequence: 1, addresses: [.v4(10, 0, 0, 2, port: 0)])
        let label = Array(LanAnnouncement.instanceLabel(id.publicKey).utf8)
        var b: [UInt8] = [0, 0, 0x84, 0, 0, 0, 0, 4, 0, 0, 0, 0]
        // 12: _whalescale._udp.local (uncompressed), PTR
        b += [11] + Array("_whalescale".utf8) + [4] + Array("_udp".utf8) + [5] + Array("local".utf8) + [0]
        let local = 12 + 1 + 11 + 1 + 4  // offset of "local"
        b += [0, 12, 0, 1, 0, 0, 0x11, 0x94]
        let instanceAt = b.count + 2
        let rdata: [UInt8] = [UInt8(label.count)] + label + [0xC0, 12]
        b += [0, UInt8(rdata.count)] + rdata
        // SRV: name = pointer to the instance name inside the PTR's RDATA; target = label + pointer to "local".
        b += [0xC0, UInt8(instanceAt), 0, 33, 0x80, 1, 0, 0, 0, 120]
        let hostAt = b.count + 2 + 6
        let srv: [UInt8] = [0, 0, 0, 0, 0x0f, 0xa0, UInt8(label.count)] + label + [0xC0, UInt8(local)]
        b += [0, UInt8(srv.count)] + srv
        // TXT
        let strings = ["txtvers=1", "id=\(Hex.encode(id.publicKey.bytes))", "port=4000", "seq=1", "sig=\(Hex.encode(a.signature))"]
        var txt: [UInt8] = []
        for s in strings { txt += [UInt8(s.utf8.count)] + Array(s.utf8) }
        b += [0xC0, UInt8(instanceAt), 0, 16, 0x80, 1, 0, 0, 0x11, 0x94, UInt8(txt.count >> 8), UInt8(txt.count & 0xff)] + txt
        // A: name = pointer to the SRV target
        b += [0xC0, UInt8(hostAt), 0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 10, 0, 0, 2]
        let m = try DNSMessage.parse(b).get()
        XCTAssertEqual(m.answers[1].name.description, "\(String(decoding: label, as: UTF8.self))._whalescale._udp.local")
        let found = try XCTUnwrap(LanAnnouncement.extract(from: m))
        XCTAssertEqual(try found[0].get(), a)
        XCTAssertTrue(try found[0].get().isValidlySigned)
    }

    func testHostileNamesRefused() {
        let header: [UInt8] = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        // A pointer to itself, forwards, and into the header.
        XCTAssertEqual(parseError(header + [0xC0, 12, 0, 12, 0, 1]), .badPointer)
        XCTAssertEqual(parseError(header + [0xC0, 20, 0, 12, 0, 1, 0, 0, 0, 0]), .badPointer)
        XCTAssertEqual(parseError(header + [0xC0, 2, 0, 12, 0, 1]), .badPointer)
        // Two names pointing at each other: the first points ahead, refused (pointers only go backwards).
        var two = [0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0] as [UInt8]
        two += [1, 0x61, 0xC0, 18, 0, 12, 0, 1]  // name at 12: "a" then pointer to 18 (ahead: refused)
        two += [1, 0x62, 0xC0, 12, 0, 12, 0, 1]
        XCTAssertEqual(parseError(two), .badPointer)
        // Labels: 64 bytes, the reserved 0x40/0x80 types.
        XCTAssertEqual(parseError(header + [64] + [UInt8](repeating: 0x61, count: 64) + [0, 0, 12, 0, 1]), .badLabel)
        XCTAssertEqual(parseError(header + [0x41, 0, 0, 12, 0, 1]), .badLabel)
        XCTAssertEqual(parseError(header + [0x81, 0, 0, 12, 0, 1]), .badLabel)
        // A name longer than 255 bytes (five labels of 63).
        var long = header
        for _ in 0..<5 { long += [63] + [UInt8](repeating: 0x61, count: 63) }
        XCTAssertEqual(parseError(long + [0, 0, 12, 0, 1]), .nameTooLong)
        // A chain of more than 16 pointers, each going back one name.
        var chain: [UInt8] = [0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0]
        chain += [1, 0x61, 0, 0, 12, 0, 1]
        var prev = 12
        for _ in 0..<19 {
            let here = chain.count
            chain += [1, 0x61, 0xC0, UInt8(prev), 0, 12, 0, 1]
            prev = here
        }
        XCTAssertEqual(parseError(chain), .badPointer)
    }

    func testMalformedMessagesRefused() throws {
        let a = LanAnnouncement.signed(by: identity(), port: 51820, sequence: 1, addresses: [.v4(192, 168, 1, 10, port: 0)])
        let b = a.serialize()
        // Every truncation fails cleanly.
        for n in 0..<b.count {
            if case .success = DNSMessage.parse(Array(b[0..<n])) { XCTFail("prefix \(n) parsed") }
        }
        XCTAssertEqual(parseError(b + [0]), .trailingBytes)
        XCTAssertEqual(parseError([UInt8](repeating: 0, count: MDNS.maxMessageSize + 1)), .tooLong)
        XCTAssertEqual(parseError([0, 0, 0x84, 0, 0, 0, 0, 65, 0, 0, 0, 0]), .tooManyRecords)
        XCTAssertEqual(parseError([0, 0, 0x84]), .tooShort)
        // An A record of 5 bytes, an SRV too short for its fixed part.
        XCTAssertEqual(parseError([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 5, 1, 2, 3, 4, 5]), .badRecordData)
        XCTAssertEqual(parseError([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 33, 0, 1, 0, 0, 0, 1, 0, 2, 0, 0]), .badRecordData)
        // A TXT string running past its record.
        XCTAssertEqual(parseError([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 16, 0, 1, 0, 0, 0, 1, 0, 2, 5, 0x61]), .badRecordData)
    }

    /// Names our service but cannot be used: each refused with a reason, none taken.
    func testBadAnnouncementFields() throws {
        let id = identity()
        let good = LanAnnouncement.signed(by: id, port: 51820, sequence: 3, addresses: [.v4(192, 168, 1, 10, port: 0)])
        func withTXT(_ strings: [String]) -> DNSMessage {
            var m = good.message()
            m.answers[2].data = .txt(strings.map { Array($0.utf8) })
            return m
        }
        let idText = "id=" + Hex.encode(id.publicKey.bytes), sig = "sig=" + Hex.encode(good.signature)
        let cases: [([String], String)] = [
            (["txtvers=1", idText, "port=51820", "seq=3"], "sig"),
            (["txtvers=1", idText, "port=51820", "seq=3", "sig=zz"], "sig"),
            (["txtvers=1", idText, "port=51820", "seq=3", "sig=abcd"], "sig"),
            (["txtvers=2", idText, "port=51820", "seq=3", sig], "txtvers"),
            (["txtvers=1", "id=00", "port=51820", "seq=3", sig], "id"),
            (["txtvers=1", idText, "port=0", "seq=3", sig], "port"),
            (["txtvers=1", idText, "port=51821", "seq=3", sig], "srv"),
            (["txtvers=1", idText, "port=51820", "seq=-1", sig], "seq"),
        ]
        for (strings, why) in cases {
            let found = try XCTUnwrap(LanAnnouncement.extract(from: withTXT(strings)))
            XCTAssertEqual(found.first.flatMap(problem), .malformed(why), "\(strings)")
        }
        // RFC 6763 §6.4: a repeated key counts once, the first.
        let repeated = try XCTUnwrap(LanAnnouncement.extract(from: withTXT(["txtvers=1", idText, "port=51820", "seq=3", sig, "port=1"])))
        XCTAssertEqual(try repeated[0].get(), good)
        // No A record, and a query is no announcement; someone else's service is not ours.
        var noA = good.message()
        noA.answers.removeLast()
        XCTAssertEqual(LanAnnouncement.extract(from: noA)?.first.flatMap(problem), .malformed("addresses"))
        XCTAssertNil(LanAnnouncement.extract(from: try DNSMessage.parse(LanAnnouncement.query()).get()))
        var printer = good.message()
        printer.answers = [DNSRecord(name: DNSName(["_ipp", "_tcp", "local"]), ttl: 120, data: .ptr(DNSName(["p", "_ipp", "_tcp", "local"])))]
        XCTAssertNil(LanAnnouncement.extract(from: printer))
    }

    /// Random corruption of a real announcement: the parser answers, never traps.
    func testMutationsNeverTrap() {
        let b = LanAnnouncement.signed(by: identity(), port: 51820, sequence: 1, addresses: [.v4(192, 168, 1, 10, port: 0), .v4(10, 1, 2, 3, port: 0)]).serialize()
        var r = SessionRandom(seed: 99)
        var parsed = 0
        for _ in 0..<5000 {
            var m = b
            for _ in 0..<(1 + Int(r.next() % 4)) { m[Int(r.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: r.next()) }
            if case .success(let msg) = DNSMessage.parse(m) {
                parsed += 1
                _ = LanAnnouncement.extract(from: msg)
            }
        }
        XCTAssertGreaterThan(parsed, 0)
    }

    func problem(_ r: Result<LanAnnouncement, LanAnnouncement.Problem>) -> LanAnnouncement.Problem? {
        if case .failure(let p) = r { return p }
        return nil
    }

    func parseError(_ b: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> MDNSParseError? {
        switch DNSMessage.parse(b) {
        case .success: XCTFail("parsed", file: file, line: line); return nil
        case .failure(let e): return e
        }
    }

    // MARK: The machine

    /// Us (member 0's view: members = [a, b], we are `me`, a member too at index 2).
    func lan(timings: LanTimings = .default) -> (LanDiscovery, Identity, Identity, Identity) {
        let me = identity(), a = identity(), b = identity()
        let m = LanDiscovery(identity: me, members: [a.publicKey, b.publicKey, me.publicKey], port: 51820, firstSequence: 1000,
                             timings: timings, seed: 5)
        return (m, me, a, b)
    }

    func transmits(_ m: inout LanDiscovery) -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let t = m.pollTransmit() { if case .group(let b) = t { out.append(b) } }
        return out
    }

    func events(_ m: inout LanDiscovery) -> [LanEvent] {
        var out: [LanEvent] = []
        while let e = m.pollEvent() { out.append(e) }
        return out
    }

    func testStartQueriesAndAnnouncesTwiceThenPeriodically() throws {
        var (m, me, _, _) = lan()
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: t0)
        let first = transmits(&m)
        XCTAssertEqual(first.count, 2)
        XCTAssertEqual(first[0], LanAnnouncement.query())
        let a = try XCTUnwrap(LanAnnouncement.extract(from: DNSMessage.parse(first[1]).get())?.first?.get())
        XCTAssertEqual(a.key, me.publicKey)
        XCTAssertEqual(a.port, 51820)
        XCTAssertEqual(a.sequence, 1001, "above the first sequence the engine gave")
        XCTAssertTrue(a.isValidlySigned)
        XCTAssertEqual(m.pollTimeout()?.deadline, t0 + .seconds(UInt64(1)))
        m.handleTimeout(now: t0 + .milliseconds(500))
        XCTAssertTrue(transmits(&m).isEmpty, "not due yet")
        m.handleTimeout(now: t0 + .seconds(UInt64(1)))
        XCTAssertEqual(transmits(&m), [first[1]], "the start-up repeat: the same signed announcement")
        var last = t0 + .seconds(UInt64(1))
        for _ in 0..<5 {
            let d = try XCTUnwrap(m.pollTimeout()?.deadline)
            XCTAssertGreaterThanOrEqual(d - last, .seconds(UInt64(54)))
            XCTAssertLessThanOrEqual(d - last, .seconds(UInt64(66)))
            m.handleTimeout(now: d)
            XCTAssertEqual(transmits(&m).count, 1)
            last = d
        }
        XCTAssertEqual(m.counters.announceSent, 7)
        XCTAssertEqual(m.counters.querySent, 1)
    }

    /// RFC 6762 §10.1: stopping multicasts our records with TTL 0; once only, and nothing before start.
    func testStopSendsGoodbye() throws {
        var (idle, _, _, _) = lan()
        idle.stop()
        XCTAssertNil(idle.pollTransmit(), "never started: nothing to withdraw")
        var (m, _, _, _) = lan()
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: t0)
        let announced = transmits(&m)[1]
        m.stop()
        let out = transmits(&m)
        XCTAssertEqual(out.count, 1)
        let bye = try DNSMessage.parse(out[0]).get()
        XCTAssertEqual(bye.answers.count, 4)
        XCTAssertTrue(bye.answers.allSatisfy { $0.ttl == 0 })
        let hello = try DNSMessage.parse(announced).get()
        XCTAssertEqual(bye.answers.map(\.data), hello.answers.map(\.data), "the same records, withdrawn")
        XCTAssertNil(m.pollTimeout())
        m.stop()
        m.handleTimeout(now: t0 + .seconds(UInt64(100)))
        XCTAssertTrue(transmits(&m).isEmpty)
        XCTAssertEqual(m.counters.goodbyeSent, 1)
    }

    func testAddressChangeAnnouncesNewSequence() throws {
        var (m, _, _, _) = lan()
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: t0)
        _ = transmits(&m)
        m.handleTimeout(now: t0 + .seconds(UInt64(1)))
        _ = transmits(&m)
        m.setAddresses([.v4(192, 168, 1, 10, port: 0)], now: t0 + .seconds(UInt64(5)))
        XCTAssertTrue(transmits(&m).isEmpty, "the same addresses: nothing new")
        m.setAddresses([.v4(192, 168, 7, 10, port: 0)], now: t0 + .seconds(UInt64(6)))
        let out = transmits(&m)
        XCTAssertEqual(out.count, 1)
        let a = try XCTUnwrap(LanAnnouncement.extract(from: DNSMessage.parse(out[0]).get())?.first?.get())
        XCTAssertEqual(a.sequence, 1002)
        XCTAssertEqual(a.addresses, [.v4(192, 168, 7, 10, port: 0)])
    }

    /// RFC 6762 §6: at most one multicast of our record a second, however many queries come.
    func testQueriesAnsweredAtMostOnceASecond() {
        var (m, _, _, _) = lan()
        let from = Endpoint.v4(192, 168, 1, 20, port: 5353)
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: t0)
        m.handleTimeout(now: t0 + .seconds(UInt64(1)))
        _ = transmits(&m)
        let q = LanAnnouncement.query()
        let t = t0 + .seconds(UInt64(10))
        m.handle(q, from: from, now: t)
        XCTAssertEqual(transmits(&m).count, 1, "answered at once")
        for k in 1...20 { m.handle(q, from: from, now: t + .milliseconds(UInt64(k * 10))) }
        XCTAssertTrue(transmits(&m).isEmpty, "within the second: no more")
        XCTAssertEqual(m.pollTimeout()?.deadline, t + .seconds(UInt64(1)))
        m.handleTimeout(now: t + .seconds(UInt64(1)))
        XCTAssertEqual(transmits(&m).count, 1, "one answer for all of them")
        XCTAssertEqual(m.counters.queryAnswered, 21)
    }

    func testSignedMemberAnnouncementTaken() {
        var (m, _, a, b) = lan()
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: t0)
        _ = transmits(&m)
        let fromA = Endpoint.v4(192, 168, 1, 20, port: 5353)
        let ann = LanAnnouncement.signed(by: a, port: 40000, sequence: 50, addresses: [.v4(192, 168, 1, 20, port: 0)])
        m.handle(ann.serialize(), from: fromA, now: t0)
        XCTAssertEqual(events(&m), [.discovered(PeerID(rawValue: 0), .v4(192, 168, 1, 20, port: 40000), sequence: 50)])
        // The same again (a repeat): nothing new; an older one: stale; a newer one: taken.
        m.handle(ann.serialize(), from: fromA, now: t0 + .seconds(UInt64(1)))
        m.handle(LanAnnouncement.signed(by: a, port: 40000, sequence: 49, addresses: [.v4(192, 168, 1, 20, port: 0)]).serialize(), from: fromA, now: t0)
        XCTAssertTrue(events(&m).isEmpty)
        XCTAssertEqual(m.counters.duplicate, 1)
        XCTAssertEqual(m.counters.stale, 1)
        m.handle(LanAnnouncement.signed(by: a, port: 40001, sequence: 51, addresses: [.v4(192, 168, 1, 20, port: 0)]).serialize(), from: fromA, now: t0)
        XCTAssertEqual(events(&m), [.discovered(PeerID(rawValue: 0), .v4(192, 168, 1, 20, port: 40001), sequence: 51)])
        // b independently, from its second address.
        m.handle(LanAnnouncement.signed(by: b, port: 51820, sequence: 1, addresses: [.v4(10, 0, 0, 5, port: 0), .v4(192, 168, 1, 30, port: 0)]).serialize(),
                 from: .v4(192, 168, 1, 30, port: 5353), now: t0)
        XCTAssertEqual(events(&m), [.discovered(PeerID(rawValue: 1), .v4(192, 168, 1, 30, port: 51820), sequence: 1)])
        XCTAssertEqual(m.counters.announceAccepted, 3)
        XCTAssertEqual(m.sequence(of: PeerID(rawValue: 0)), 51)
    }

    func testSpoofedUnsignedForeignAndReplayedIgnoredAndCounted() {
        var (m, me, a, _) = lan()
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: t0)
        _ = transmits(&m)
        let src = Endpoint.v4(192, 168, 1, 66, port: 5353)
        let here = [Endpoint.v4(192, 168, 1, 66, port: 0)]
        let attacker = identity()
        // a's key, the attacker's signature.
        var spoofed = LanAnnouncement.signed(by: attacker, port: 1, sequence: 99, addresses: here)
        spoofed = LanAnnouncement(key: a.publicKey, port: 1, sequence: 99, addresses: here, signature: spoofed.signature)
        m.handle(spoofed.serialize(), from: src, now: t0)
        XCTAssertEqual(m.counters.badSignature, 1)
        // a's genuine announcement with the port changed after signing.
        let genuine = LanAnnouncement.signed(by: a, port: 51820, sequence: 100, addresses: here)
        var tampered = genuine
        tampered.port = 22
        m.handle(tampered.serialize(), from: src, now: t0)
        XCTAssertEqual(m.counters.badSignature, 2)
        // Unsigned: no sig key at all.
        var unsigned = genuine.message()
        unsigned.answers[2].data = .txt(["txtvers=1", "id=\(Hex.encode(a.publicKey.bytes))", "port=51820", "seq=101"].map { Array($0.utf8) })
        m.handle(unsigned.serialize(), from: src, now: t0)
        XCTAssertEqual(m.counters.malformed, 1)
        // Correctly signed, but not a member.
        m.handle(LanAnnouncement.signed(by: attacker, port: 51820, sequence: 1, addresses: here).serialize(), from: src, now: t0)
        XCTAssertEqual(m.counters.notMember, 1)
        // a's genuine announcement, replayed by another host.
        let elsewhere = LanAnnouncement.signed(by: a, port: 51820, sequence: 102, addresses: [.v4(192, 168, 1, 20, port: 0)])
        m.handle(elsewhere.serialize(), from: src, now: t0)
        XCTAssertEqual(m.counters.wrongSource, 1)
        // Garbage on the port.
        m.handle([1, 2, 3], from: src, now: t0)
        XCTAssertEqual(m.counters.malformed, 2)
        // Our own, looped back: ignored, uncounted.
        m.handle(LanAnnouncement.signed(by: me, port: 51820, sequence: 5000, addresses: here).serialize(), from: src, now: t0)
        XCTAssertTrue(events(&m).isEmpty, "nothing taken")
        XCTAssertEqual(m.counters.announceAccepted, 0)
        XCTAssertNil(m.sequence(of: PeerID(rawValue: 0)), "a forged sequence moved nothing")
        // The genuine one still goes through afterwards.
        m.handle(genuine.serialize(), from: src, now: t0)
        XCTAssertEqual(events(&m), [.discovered(PeerID(rawValue: 0), .v4(192, 168, 1, 66, port: 51820), sequence: 100)])
    }

    // MARK: IPv6 (AAAA, ff02::fb)

    func v6(_ text: String, port: UInt16 = 0, scope: UInt32 = 0) -> Endpoint {
        Endpoint(family: .v6, address: IPAddressBytes(v6: text)!, port: port, scopeID: scope)
    }

    /// AAAA records, byte for byte (RFC 3596 §2.2: type 28, RDLENGTH 16, the address
    /// in network order), read back; an AAAA whose RDATA is not exactly 16 bytes is refused.
    func testAAAABytesAndTruncation() throws {
        let host: [UInt8] = [2] + Array("hh".utf8) + [5] + Array("local".utf8) + [0]
        let addr: [UInt8] = [0xfd, 0x55, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
        let record: [UInt8] = host + [0, 28, 0x80, 1, 0, 0, 0, 120, 0, 16] + addr
        let bytes: [UInt8] = [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0] + record
        let m = try DNSMessage.parse(bytes).get()
        XCTAssertEqual(m.answers, [DNSRecord(name: DNSName(["hh", "local"]), cacheFlush: true, ttl: 120,
                                             data: .aaaa(IPAddressBytes(v6: "fd55::10")!))])
        XCTAssertEqual(m.serialize(), bytes, "AAAA serializes to the hand-built bytes")
        // Cut anywhere: refused, never trapped.
        for n in 12..<bytes.count {
            XCTAssertThrowsError(try DNSMessage.parse(Array(bytes.prefix(n))).get(), "cut at \(n)")
        }
        // RDLENGTH 15 and 17 (with the bytes there): bad record data, not an address.
        var short = bytes
        short[12 + host.count + 9] = 15
        short.removeLast()
        XCTAssertEqual(DNSMessage.parse(short), .failure(.badRecordData))
        var long = bytes
        long[12 + host.count + 9] = 17
        long.append(0)
        XCTAssertEqual(DNSMessage.parse(long), .failure(.badRecordData))
        // An A record with 16 bytes is no address either.
        var a16 = bytes
        a16[12 + host.count + 1] = 1
        XCTAssertEqual(DNSMessage.parse(a16), .failure(.badRecordData))
    }

    /// An announcement with IPv4, IPv6 link-local and ULA addresses: A then AAAA records,
    /// all signed (changing an AAAA after signing breaks the signature).
    func testAnnouncementWithAAAASignedAndRoundTrip() throws {
        let id = identity()
        let addrs = [Endpoint.v4(192, 168, 1, 10, port: 0), v6("fe80::1"), v6("fd55::10")]
        let a = LanAnnouncement.signed(by: id, port: 51820, sequence: 3, addresses: addrs)
        let m = try DNSMessage.parse(a.serialize()).get()
        XCTAssertEqual(m.answers.count, 6)
        XCTAssertEqual(m.answers[3].data, .a(IPAddressBytes(v4: (192, 168, 1, 10))))
        XCTAssertEqual(m.answers[4].data, .aaaa(IPAddressBytes(v6: "fe80::1")!))
        XCTAssertEqual(m.answers[5].data, .aaaa(IPAddressBytes(v6: "fd55::10")!))
        let back = try XCTUnwrap(LanAnnouncement.extract(from: m))[0].get()
        XCTAssertEqual(back, a)
        XCTAssertTrue(back.isValidlySigned)
        var tampered = back
        tampered.addresses[2] = v6("fd55::66")
        XCTAssertFalse(tampered.isValidlySigned)
    }

    /// Over IPv6 the sender is checked as over IPv4: a link-local source must be one of its
    /// signed addresses; the endpoint is then its signed ULA/global address (paths never use
    /// link-local), or the link-local source with the receiving interface as scope if it has none.
    func testV6AnnouncementFromSignedSourceTakenUnsignedSourceRefused() {
        var (m, _, a, b) = lan()
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0), v6("fe80::10"), v6("fd55::10")], now: t0)
        _ = transmits(&m)
        let signed = [v6("fe80::11"), v6("fd55::11")]
        let ann = LanAnnouncement.signed(by: a, port: 51820, sequence: 7, addresses: signed)
        // From a link-local address it did not sign: counted, nothing taken.
        m.handle(ann.serialize(), from: v6("fe80::66", port: 5353, scope: 3), now: t0)
        XCTAssertEqual(m.counters.wrongSource, 1)
        XCTAssertTrue(events(&m).isEmpty)
        XCTAssertNil(m.sequence(of: PeerID(rawValue: 0)))
        // From a ULA it did not sign: likewise.
        m.handle(ann.serialize(), from: v6("fd55::66", port: 5353), now: t0)
        XCTAssertEqual(m.counters.wrongSource, 2)
        // From its signed link-local address: taken, at its signed ULA address.
        m.handle(ann.serialize(), from: v6("fe80::11", port: 5353, scope: 3), now: t0)
        XCTAssertEqual(events(&m), [.discovered(PeerID(rawValue: 0), v6("fd55::11", port: 51820), sequence: 7)])
        XCTAssertEqual(m.counters.announceAccepted, 1)
        // b from its signed ULA source: that address.
        m.handle(LanAnnouncement.signed(by: b, port: 4000, sequence: 1, addresses: [v6("fd55::12")]).serialize(),
                 from: v6("fd55::12", port: 5353), now: t0)
        XCTAssertEqual(events(&m), [.discovered(PeerID(rawValue: 1), v6("fd55::12", port: 4000), sequence: 1)])
        // b with only a link-local address: the source with its scope (NodeCore will not use it).
        m.handle(LanAnnouncement.signed(by: b, port: 4000, sequence: 2, addresses: [v6("fe80::12")]).serialize(),
                 from: v6("fe80::12", port: 5353, scope: 3), now: t0)
        XCTAssertEqual(events(&m), [.discovered(PeerID(rawValue: 1), v6("fe80::12", port: 4000, scope: 3), sequence: 2)])
        XCTAssertEqual(m.counters.wrongSource, 2)
        XCTAssertEqual(m.counters.announceAccepted, 3)
    }

    /// A flood of forged announcements costs at most `verifyRate` signature checks a second.
    func testSignatureChecksRateLimited() {
        var t = LanTimings.default
        t.verifyRate = 2
        t.verifyBurst = 3
        var (m, _, a, _) = lan(timings: t)
        m.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: t0)
        let here = [Endpoint.v4(192, 168, 1, 66, port: 0)]
        let forged = LanAnnouncement(key: a.publicKey, port: 1, sequence: 1, addresses: here, signature: [UInt8](repeating: 7, count: 64))
        for _ in 0..<10 { m.handle(forged.serialize(), from: .v4(192, 168, 1, 66, port: 5353), now: t0) }
        XCTAssertEqual(m.counters.badSignature, 3)
        XCTAssertEqual(m.counters.rateLimited, 7)
        m.handle(forged.serialize(), from: .v4(192, 168, 1, 66, port: 5353), now: t0 + .seconds(UInt64(1)))
        XCTAssertEqual(m.counters.badSignature, 4)
    }

    // MARK: NodeCore

    /// Two members on one LAN, no anchor, no static endpoint: only the LAN
    /// announcements tell them where the other is, and data goes on a `lan` path.
    func testNodeCoreUsesLanEndpointWithoutAnchors() {
        let ia = identity(), ib = identity()
        let aAddr = Endpoint.v4(192, 168, 1, 10, port: 51820), bAddr = Endpoint.v4(192, 168, 1, 11, port: 51820)
        var a = NodeCore(identity: ia, members: [MemberSpec(publicKey: ib.publicKey, name: "b")], isAnchor: false, seed: 1)
        var b = NodeCore(identity: ib, members: [MemberSpec(publicKey: ia.publicKey, name: "a")], isAnchor: false, seed: 2)
        let p = PeerID(rawValue: 0)
        var now = t0
        a.addLanEndpoint(p, bAddr, now: now)
        b.addLanEndpoint(p, aAddr, now: now)
        XCTAssertEqual(a.lanEndpoint(of: p), bAddr)
        XCTAssertEqual(a.status(now: now).peers[0].lan, bAddr)
        let toB = [0x45] + [UInt8](repeating: 1, count: 39)
        var buf = [UInt8](repeating: 0, count: 64) + toB + [UInt8](repeating: 0, count: 32)
        _ = buf.withUnsafeMutableBytes { a.sendPacket(to: p, $0, payloadOffset: 64, payloadLength: toB.count, now: now) }
        var delivered = 0
        for _ in 0..<400 {
            now = now + .milliseconds(10)
            let wall = HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: 0)
            a.handleTimeout(now: now, wallClock: wall)
            b.handleTimeout(now: now, wallClock: wall)
            var moved = true
            while moved {
                moved = false
                while let t = a.pollTransmit() {
                    XCTAssertEqual(t.to, bAddr, "only ever to the LAN endpoint")
                    moved = true
                    var m = t.bytes + [UInt8](repeating: 0, count: 32)
                    if case .packet = m.withUnsafeMutableBytes({ b.receive($0, length: t.bytes.count, from: aAddr, now: now) }) { delivered += 1 }
                }
                while let t = b.pollTransmit() {
                    XCTAssertEqual(t.to, aAddr)
                    moved = true
                    var m = t.bytes + [UInt8](repeating: 0, count: 32)
                    _ = m.withUnsafeMutableBytes { a.receive($0, length: t.bytes.count, from: bAddr, now: now) }
                }
            }
            while a.pollEvent() != nil {}
            while b.pollEvent() != nil {}
        }
        XCTAssertGreaterThanOrEqual(delivered, 1, "the queued packet arrived")
        let st = a.status(now: now)
        XCTAssertEqual(st.peers[0].paths.first?.kind, .lan)
        XCTAssertEqual(st.peers[0].paths.first?.remote, bAddr)
        XCTAssertEqual(st.peers[0].paths.first?.active, true)
    }
}
